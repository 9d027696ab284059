"""Relays as real processes (``python -m signalwire_conversation.fanout relay``) against the
emulator and a real redis-server: failover after SIGKILL, fencing of a paused leader, a Redis
restart under an active relay, Redis down at start, a clean stop."""

from __future__ import annotations

import re
import signal
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from .conftest import free_port, wait_until
from .procs import Proc

testing = pytest.importorskip("signalwire_conversation.testing")
pytestmark = pytest.mark.redis

TTL = 2.0
TOKEN_RE = re.compile(r"relay (\S+) is ACTIVE")


@pytest.fixture
def emu() -> Iterator[Any]:
    with testing.Emulator() as emulator:
        yield emulator


@pytest.fixture
def people(emu: Any) -> Tuple[Any, Any, Any]:
    return emu.add_subscriber("alice"), emu.add_subscriber("bob"), emu.add_subscriber("carol")


def start_relay(emu: Any, alice: Any, redis_url: str, *extra: str, token: Optional[str] = None) -> Proc:
    return Proc(
        ["relay", "--redis", redis_url, "--lease-ttl", str(TTL), "--token", token or alice.token,
         "--base-url", emu.base_url, "--log-level", "info", *extra],
    )


def stream_of(alice: Any) -> str:
    return f"signalwire:conversation:{{{alice.address_id}}}"


def inject(emu: Any, people: Tuple[Any, Any, Any], start: int, stop: int, chunk: int = 50) -> None:
    """Messages start..stop-1 to alice, alternating between two conversations (bob, carol)."""
    alice, bob, carol = people
    for first in range(start, stop, chunk):
        numbers = range(first, min(first + chunk, stop))
        emu.send_messages(bob, alice.address_id, [f"n{i}" for i in numbers if i % 2 == 0])
        emu.send_messages(carol, alice.address_id, [f"n{i}" for i in numbers if i % 2 == 1])


def entries(r: Any, stream: str) -> List[Tuple[str, Dict[str, str]]]:
    return r.xrange(stream)


def check_exactly_once_in_order(emu: Any, r: Any, stream: str, expected: int) -> List[Tuple[str, Dict[str, str]]]:
    got = entries(r, stream)
    ids = [f["id"] for _, f in got]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} message(s) appended twice"
    stored = emu.messages()  # newest first
    assert len(stored) == expected
    assert set(ids) == {m["id"] for m in stored}, (
        f"missing from the stream: {len({m['id'] for m in stored} - set(ids))}"
    )
    per_conversation: Dict[str, List[str]] = {}
    for m in reversed(stored):
        per_conversation.setdefault(m["group_id"], []).append(m["id"])
    for group, order in per_conversation.items():
        in_stream = [f["id"] for _, f in got if f["conversation_id"] == group]
        assert in_stream == order, f"conversation {group}: stream order differs from send order"
    return got


def wait_for_len(r: Any, stream: str, n: int, timeout: float) -> None:
    wait_until(lambda: r.xlen(stream) >= n, timeout, f"the stream never reached {n} entries (has {r.xlen(stream)})")


def relay_token(proc: Proc, timeout: float = 20, *, emu: Any = None, subscriber: Any = None) -> str:
    """The lease token of ``proc`` once it logs "is ACTIVE"; with ``emu``, also wait until the
    emulator counts ``subscriber``'s websocket as authenticated (ACTIVE can be logged a moment
    before, and a message sent in between would reach nobody live)."""
    line = proc.stderr[proc.wait_for_line("is ACTIVE", timeout)]
    match = TOKEN_RE.search(line)
    assert match, line
    if emu is not None:
        emu.wait_connected(subscriber, count=1, timeout=10)
    return match.group(1)


def active_and_standby(
    emu: Any, alice: Any, redis_url: str, procs: List[Proc], *extra: str, token_a: Optional[str] = None
) -> Tuple[Proc, str, Proc]:
    """Relay A active (its websocket authenticated), then relay B (alice's token) on standby;
    both are added to ``procs`` for the caller to kill."""
    a = start_relay(emu, alice, redis_url, *extra, token=token_a)
    procs.append(a)
    token_a_ = relay_token(a, emu=emu, subscriber=alice)
    b = start_relay(emu, alice, redis_url, *extra)
    procs.append(b)
    b.wait_for_line("is STANDBY", 20)
    return a, token_a_, b


def kill_all(procs: List[Proc]) -> None:
    for proc in procs:
        proc.process.send_signal(signal.SIGCONT)  # resume a relay left SIGSTOPped (else harmless)
        proc.kill()


def failover(emu: Any, people: Any, redis_server: Any, r: Any, total: int) -> None:
    alice = people[0]
    stream = stream_of(alice)
    procs: List[Proc] = []
    try:
        a, token_a, b = active_and_standby(emu, alice, redis_server.url, procs)
        inject(emu, people, 0, total // 2)
        wait_for_len(r, stream, total // 4, 30)  # A is mid-stream
        a.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        killed_mono = time.monotonic()
        inject(emu, people, total // 2, total)  # the stream goes on without anybody appending
        token_b = relay_token(b, TTL + 10)
        active_after = time.monotonic() - killed_mono
        wait_for_len(r, stream, total, 60)
        got = check_exactly_once_in_order(emu, r, stream, total)
        relays = [f["relay"] for _, f in got]
        first_b = relays.index(token_b)
        assert set(relays[:first_b]) == {token_a} and set(relays[first_b:]) == {token_b}
        first_b_ms = int(got[first_b][0].split("-")[0])
        first_append_after = first_b_ms / 1000.0 - killed_at
        print(f"\nfailover: standby active {active_after:.2f} s after SIGKILL, first append "
              f"{first_append_after:.2f} s after (lease TTL {TTL} s); {total} messages")
        assert active_after < TTL + 1.0
        assert first_append_after < TTL + 5.0  # includes reading the backlog over REST
        assert "Traceback" not in b.text()
        assert b.terminate() == 0
        assert r.get(f"{stream}:lease") is None, "a clean stop releases the lease"
    finally:
        kill_all(procs)


def test_failover_after_sigkill_every_message_once_in_order(emu: Any, people: Any, redis_server: Any, r: Any) -> None:
    failover(emu, people, redis_server, r, 600)


@pytest.mark.slow
def test_failover_after_sigkill_full_size(emu: Any, people: Any, redis_server: Any, r: Any) -> None:
    failover(emu, people, redis_server, r, 2000)


def test_a_paused_leader_appends_nothing_after_losing_the_lease(emu: Any, people: Any, redis_server: Any, r: Any) -> None:
    alice = people[0]
    stream = stream_of(alice)
    procs: List[Proc] = []
    try:
        a, token_a, b = active_and_standby(emu, alice, redis_server.url, procs)
        inject(emu, people, 0, 100)
        wait_for_len(r, stream, 100, 20)
        a.process.send_signal(signal.SIGSTOP)
        token_b = relay_token(b, TTL + 10)  # took over once A's lease expired
        inject(emu, people, 100, 200)  # A's socket gets these too, while it is frozen
        wait_for_len(r, stream, 200, 20)
        a.process.send_signal(signal.SIGCONT)
        a.wait_for_line("STANDBY", 20)
        inject(emu, people, 200, 300)
        wait_for_len(r, stream, 300, 20)
        got = check_exactly_once_in_order(emu, r, stream, 300)
        relays = [f["relay"] for _, f in got]
        first_b = relays.index(token_b)
        assert all(x == token_a for x in relays[:first_b])
        assert token_a not in relays[first_b:], "the paused relay appended after losing its lease"
        assert r.get(f"{stream}:lease") == token_b
        assert "Traceback" not in a.text()
    finally:
        kill_all(procs)


def test_redis_restarted_under_an_active_relay_loses_nothing(emu: Any, people: Any, make_redis_server: Any) -> None:
    alice = people[0]
    stream = stream_of(alice)
    server = make_redis_server(persistent=True)
    r = server.client()
    a = start_relay(emu, alice, server.url)
    try:
        relay_token(a, emu=emu, subscriber=alice)
        inject(emu, people, 0, 100)
        wait_for_len(r, stream, 100, 20)
        server.stop()
        inject(emu, people, 100, 200)  # while Redis is down
        a.wait_for_line("cannot reach Redis", 20)
        server.start()
        r = server.client()
        inject(emu, people, 200, 300)
        wait_for_len(r, stream, 300, 30)
        check_exactly_once_in_order(emu, r, stream, 300)
        assert "Traceback" not in a.text()
        assert a.terminate() == 0
    finally:
        a.kill()


def test_redis_down_at_start_is_retried_with_backoff(emu: Any, people: Any, make_redis_server: Any) -> None:
    alice = people[0]
    port = free_port()
    a = start_relay(emu, alice, f"redis://127.0.0.1:{port}/0")
    try:
        first = a.wait_for_line("cannot reach Redis", 20)
        a.wait_for_line("cannot reach Redis", 20, start=first + 1)
        third = a.wait_for_line("cannot reach Redis", 20, start=first + 1)
        delays = [float(m) for m in re.findall(r"retrying in ([0-9.]+) s", "\n".join(a.stderr))]
        assert len(delays) >= 2 and delays[-1] >= delays[0], delays
        assert "Connection refused" in a.stderr[first] or "connect" in a.stderr[first].lower()
        assert "Traceback" not in a.text()
        server = make_redis_server(port=port)
        relay_token(a, 30, emu=emu, subscriber=alice)
        inject(emu, people, 0, 10)
        wait_for_len(server.client(), stream_of(alice), 10, 20)
        assert third >= first
        assert a.terminate() == 0
        assert server.client().get(f"{stream_of(alice)}:lease") is None
    finally:
        a.kill()


def test_a_clean_stop_hands_over_at_once(emu: Any, people: Any, redis_server: Any, r: Any) -> None:
    alice = people[0]
    procs: List[Proc] = []
    try:
        a, _, b = active_and_standby(emu, alice, redis_server.url, procs, "--lease-ttl", "30")
        a.process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        assert a.wait(20) == 0
        a.wait_for_line("released the lease", 5)
        # A standby asks at least once a second: far less than the 30 s TTL.
        relay_token(b, 15)
        assert time.monotonic() - stopped < 5
    finally:
        kill_all(procs)


def test_a_relay_whose_token_is_revoked_hands_over_and_exits_1(emu: Any, people: Any, redis_server: Any, r: Any) -> None:
    """The listener dies for good under an active relay (its token revoked, resume refused,
    connection dropped): the relay releases the lease at once instead of holding it while
    receiving nothing, exits 1 with one clear line, and a standby with another valid token for
    the same subscriber takes over, gap-filling what was sent meanwhile."""
    alice = people[0]
    stream = stream_of(alice)
    doomed = emu.issue_token(alice)
    procs: List[Proc] = []
    try:
        # A long TTL: only a release, not an expiry, can hand over within the bound below.
        # B has alice's own token: another valid token for the same subscriber.
        a, token_a, b = active_and_standby(emu, alice, redis_server.url, procs, "--lease-ttl", "30", token_a=doomed)
        inject(emu, people, 0, 100)
        wait_for_len(r, stream, 100, 20)
        emu.refuse_resume()
        emu.revoke_token(doomed)  # also drops its connection: it must reconnect, and cannot
        revoked = time.monotonic()
        inject(emu, people, 100, 200)  # nobody receives these live
        assert a.wait(15) == 1
        exited_after = time.monotonic() - revoked
        token_b = relay_token(b, 10, emu=emu, subscriber=alice)
        active_after = time.monotonic() - revoked
        inject(emu, people, 200, 300)
        wait_for_len(r, stream, 300, 30)
        got = check_exactly_once_in_order(emu, r, stream, 300)
        relays = [f["relay"] for _, f in got]
        first_b = relays.index(token_b)
        assert set(relays[:first_b]) == {token_a} and set(relays[first_b:]) == {token_b}
        assert r.get(f"{stream}:lease") == token_b
        print(f"\nrevoked token: relay exited {exited_after:.2f} s after, standby active "
              f"{active_after:.2f} s after (lease TTL 30 s)")
        assert exited_after < 5.0 and active_after < 5.0
        text = a.text()
        assert "Traceback" not in text
        died = [line for line in a.stderr if "cannot continue" in line]
        assert len(died) == 1, text
        assert "releasing the lease" in died[0] and "ERROR" in died[0]
        assert sum(" ERROR " in line for line in a.stderr) == 1, text  # the SDK's own line is not repeated
        assert a.stderr[-1].startswith("error: authentication failed"), text
        assert "released the lease" in text
        assert b.terminate() == 0
    finally:
        kill_all(procs)
