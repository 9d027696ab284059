"""A relay fleet as real processes (``python -m signalwire_conversation.fanout relay
--tokens-file``) on the emulator and a real redis-server: 3 relays share 60 subscribers, one is
SIGKILLed mid-stream, a fourth joins, one is SIGSTOPped past its lease, Redis restarts under a
fleet (down past the lease TTL); every message lands exactly once per stream, in order per
conversation."""

from __future__ import annotations

import json
import math
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from .conftest import wait_until as _wait_until
from .procs import Proc

testing = pytest.importorskip("signalwire_conversation.testing")
pytestmark = pytest.mark.redis

TTL = 2.0
ID_RE = re.compile(r"fleet relay (\S+) starting")


def wait_until(predicate: Callable[[], object], timeout: float, message: Any) -> None:
    """As the shared one, polling every 0.1 s; ``message`` may be a callable (evaluated on failure)."""
    try:
        _wait_until(predicate, timeout, "a condition", interval=0.1)
    except AssertionError:
        raise AssertionError(f"timed out after {timeout:.1f} s: {message() if callable(message) else message}") from None


class World:
    def __init__(self, emu: Any, r: Any, url: str, tokens_file: Path, subscribers: List[Any], senders: Tuple[Any, Any]) -> None:
        self.emu, self.r, self.url, self.tokens_file = emu, r, url, tokens_file
        self.subscribers, self.senders = subscribers, senders
        self.streams = [f"signalwire:conversation:{{{s.address_id}}}" for s in subscribers]
        self.sent: Dict[str, List[Dict[str, Any]]] = {s.address_id: [] for s in subscribers}
        self.procs: List[Proc] = []

    def start(self, fleet: str = "t") -> Tuple[Proc, str]:
        proc = Proc(["relay", "--redis", self.url, "--tokens-file", str(self.tokens_file), "--fleet", fleet,
                     "--lease-ttl", str(TTL), "--base-url", self.emu.base_url, "--log-level", "info"])
        self.procs.append(proc)
        line = proc.stderr[proc.wait_for_line("fleet relay", 20)]
        match = ID_RE.search(line)
        assert match, line
        return proc, match.group(1)

    def holders(self) -> Dict[str, Optional[str]]:
        pipe = self.r.pipeline(transaction=False)
        for stream in self.streams:
            pipe.get(f"{stream}:lease")
        return dict(zip(self.streams, pipe.execute()))

    def counts(self) -> Counter:
        return Counter(h for h in self.holders().values() if h is not None)

    def inject(self, per_subscriber: int) -> int:
        """``per_subscriber`` messages to every subscriber, alternating between its two senders."""
        for i, sub in enumerate(self.subscribers):
            for sender_index, sender in enumerate(self.senders):
                texts = [f"m{k}" for k in range(per_subscriber) if k % 2 == sender_index]
                self.sent[sub.address_id] += self.emu.send_messages(sender, sub.address_id, texts)
        return per_subscriber * len(self.subscribers)

    def wait_all_appended(self, timeout: float) -> None:
        def done() -> bool:
            pipe = self.r.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xlen(stream)
            return all(n >= len(self.sent[s.address_id]) for n, s in zip(pipe.execute(), self.subscribers))

        wait_until(done, timeout, "not every message reached its stream")

    def check_exactly_once_in_order(self) -> None:
        for sub, stream in zip(self.subscribers, self.streams):
            got = self.r.xrange(stream)
            ids = [f["id"] for _, f in got]
            repeats = [i for i, n in Counter(ids).items() if n > 1]
            assert not repeats, f"{stream}: {len(repeats)} message(s) appended twice"
            sent = self.sent[sub.address_id]
            assert set(ids) == {m["id"] for m in sent}, f"{stream}: stream and sent messages differ"
            for group in {m["group_id"] for m in sent}:
                order = [m["id"] for m in sent if m["group_id"] == group]
                assert [f["id"] for _, f in got if f["conversation_id"] == group] == order, (
                    f"{stream}: conversation {group} out of order"
                )

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.process.send_signal(signal.SIGCONT)
            proc.kill()


@pytest.fixture
def world(redis_server: Any, r: Any, tmp_path: Path) -> Iterator[World]:
    with testing.Emulator() as emu:
        senders = (emu.add_subscriber("bob"), emu.add_subscriber("carol"))
        subscribers = [emu.add_subscriber(f"agent{i:03d}") for i in range(60)]
        tokens_file = tmp_path / "tokens.txt"
        tokens_file.write_text("# one SAT a line\n" + "\n".join(s.token for s in subscribers) + "\n")
        w = World(emu, r, redis_server.url, tokens_file, subscribers, senders)
        try:
            yield w
        finally:
            w.kill_all()


def settled(world: World, ids: List[str]) -> bool:
    counts = world.counts()
    share = math.ceil(len(world.streams) / len(ids))
    return sum(counts.values()) == len(world.streams) and all(share - 2 <= counts[i] <= share + 1 for i in ids)


def _threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_three_relays_share_sixty_subscribers_failover_and_a_fourth(world: World) -> None:
    started = [world.start() for _ in range(3)]
    ids = [i for _, i in started]
    t0 = time.monotonic()
    wait_until(lambda: settled(world, ids), 10, lambda: f"shares never settled: {world.counts()}")
    settle = time.monotonic() - t0
    for sub in world.subscribers:  # every live socket ready before the first message
        world.emu.wait_connected(sub, count=1, timeout=10)
    # one RealtimeHub per process: its live subscribers' listeners add no threads of their own
    # (without the hub each would add three: reader, dispatcher, watchdog)
    for proc, _ in started:
        threads = _threads_of(proc.process.pid)
        # measured: 69 threads on the hub, 243 with a listener of its own per client
        assert threads <= len(world.subscribers) + 20, f"{threads} threads for {len(world.subscribers)} subscribers"
    world.inject(4)
    world.wait_all_appended(30)

    # SIGKILL one relay while messages flow
    victim, victim_id = started[0]
    theirs = [s for s, h in world.holders().items() if h == victim_id]
    assert theirs
    flowing = threading.Thread(target=world.inject, args=(6,))
    flowing.start()
    victim.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    flowing.join()
    wait_until(
        lambda: all(world.holders()[s] not in (None, victim_id) for s in theirs),
        TTL + 5, lambda: f"the dead relay's subscribers were not taken over: {world.counts()}",
    )
    # active again: each of them has a live websocket again (the dead relay's closed with it)
    by_stream = dict(zip(world.streams, world.subscribers))
    for stream in theirs:
        world.emu.wait_connected(by_stream[stream], count=1, timeout=max(0.1, TTL + 5 - (time.monotonic() - killed)))
    failover = time.monotonic() - killed
    assert failover < TTL + 5
    world.inject(2)
    world.wait_all_appended(30)
    world.check_exactly_once_in_order()
    survivors = ids[1:]
    assert sum(world.counts()[i] for i in survivors) == len(world.streams)

    # a fourth relay gets its share by hand-over, nothing lost or duplicated
    fourth, fourth_id = world.start()
    joined = time.monotonic()
    flowing = threading.Thread(target=world.inject, args=(4,))
    flowing.start()
    wait_until(lambda: world.counts()[fourth_id] >= math.ceil(60 / 3) - 6, 15,
               lambda: f"the fourth relay never got its share: {world.counts()}")
    wait_until(lambda: settled(world, survivors + [fourth_id]), 15, lambda: f"not settled: {world.counts()}")
    rebalance = time.monotonic() - joined
    flowing.join()
    world.wait_all_appended(30)
    world.check_exactly_once_in_order()
    print(f"\nfleet: settled in {settle:.2f} s, failover {failover:.2f} s (TTL {TTL} s), "
          f"a fourth relay had its share in {rebalance:.2f} s: {dict(world.counts())}")

    # relay-status sees the same (a report taken while a lease is between two relays, released
    # by one and not yet taken by the other, shows it unheld: ask again until none is)
    def status_report() -> Dict[str, Any]:
        status = Proc(["relay-status", "--redis", world.url, "--fleet", "t", "--json"])
        assert status.wait(20) == 0, status.text()
        result: Dict[str, Any] = json.loads("\n".join(status.stdout))
        return result

    report = status_report()
    deadline = time.monotonic() + 15
    while report["unheld"] and time.monotonic() < deadline:  # bounded: a few reports at most
        report = status_report()
    assert report["live_relays"] == 3 and report["subscribers"] == 60 and report["unheld"] == 0
    assert sorted(s["stream"] for s in report["streams"]) == sorted(world.streams)
    assert {r["id"] for r in report["relays"]} == set(survivors + [fourth_id])
    for proc, _ in started[1:]:
        assert "Traceback" not in proc.text()
    assert fourth.terminate() == 0
    wait_until(lambda: world.counts()[fourth_id] == 0, 5, "a clean stop releases every lease")


def test_a_relay_paused_past_its_ttl_appends_nothing_for_leases_it_lost(world: World) -> None:
    (a, a_id), (_, b_id) = world.start(), world.start()
    wait_until(lambda: settled(world, [a_id, b_id]), 10, lambda: f"shares never settled: {world.counts()}")
    for sub in world.subscribers:
        world.emu.wait_connected(sub, count=1, timeout=10)
    lost = [s for s, h in world.holders().items() if h == a_id]
    a.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: all(world.holders()[s] == b_id for s in lost), TTL + 5,
                   lambda: f"the paused relay's leases were not taken: {world.counts()}")
        before = {m["id"] for sent in world.sent.values() for m in sent}
        world.inject(4)  # A's websockets still receive these, into a paused process
        paused = {m["id"] for sent in world.sent.values() for m in sent} - before
        world.wait_all_appended(30)
        # Forget which ids were appended, so that the de-duplication cannot hide an append by A:
        # only the lease check (the fence) stands between A's buffered messages and the streams.
        for key in world.r.scan_iter("signalwire:conversation:*:seen:*", count=1000):
            world.r.delete(key)
    finally:
        a.process.send_signal(signal.SIGCONT)
    a.wait_for_line("the lease expired or was taken over", 10)
    # A may take leases again by hand-over (its share); it then gap-fills from the checkpoint
    wait_until(lambda: settled(world, [a_id, b_id]), 15, lambda: f"shares never settled again: {world.counts()}")
    world.inject(2)
    world.wait_all_appended(30)
    world.check_exactly_once_in_order()
    by_a = [f["id"] for stream in lost for _, f in world.r.xrange(stream) if f["relay"] == a_id and f["id"] in paused]
    assert not by_a, f"the paused relay appended {len(by_a)} message(s) it received before losing the lease"


def test_a_redis_restart_under_a_fleet_loses_and_repeats_nothing(world: World, make_redis_server: Any) -> None:
    server = make_redis_server(persistent=True)
    own = World(world.emu, server.client(), server.url, world.tokens_file, world.subscribers, world.senders)
    own.procs = world.procs  # killed by the fixture
    (a, a_id), (b, b_id) = own.start(), own.start()
    wait_until(lambda: settled(own, [a_id, b_id]), 10, lambda: f"shares never settled: {own.counts()}")
    for sub in own.subscribers:
        own.emu.wait_connected(sub, count=1, timeout=10)
    own.inject(2)
    own.wait_all_appended(30)
    server.stop()
    own.inject(4)  # received live while Redis is down
    for proc in (a, b):  # down past the TTL: every lease lapses, the buffers are dropped
        proc.wait_for_line("the lease expired or was taken over", TTL + 10)
    server.start()  # the same data (append-only file): the relays take their leases again and gap-fill
    own.r = server.client()
    own.wait_all_appended(60)
    wait_until(lambda: settled(own, [a_id, b_id]), 15, lambda: f"shares never settled again: {own.counts()}")
    own.inject(2)
    own.wait_all_appended(30)
    own.check_exactly_once_in_order()


def test_subscribers_file_with_project_credentials(world: World, tmp_path: Path) -> None:
    """``relay --subscribers-file``: tokens minted from the project credentials in the
    environment; a subscriber new to the project is created by its first mint."""
    emu = world.emu
    refs = [s.name for s in world.subscribers[:3]] + ["newcomer"]
    listing = tmp_path / "subscribers.txt"
    listing.write_text("# agents\n" + "\n".join(refs) + "\n\n")
    proc = Proc(["relay", "--redis", world.url, "--subscribers-file", str(listing), "--subscriber", refs[0],
                 "--fleet", "file", "--lease-ttl", str(TTL), "--log-level", "info"], env=emu.environment())
    world.procs.append(proc)
    proc.wait_for_line("fleet relay", 20)

    def created() -> bool:
        try:
            emu.subscriber("newcomer")
            return True
        except KeyError:
            return False

    wait_until(created, 10, "the newcomer created by its first mint")
    newcomer = emu.subscriber("newcomer")
    people = world.subscribers[:3] + [newcomer]
    streams = [f"signalwire:conversation:{{{p.address_id}}}" for p in people]
    wait_until(lambda: all(world.r.get(f"{s}:lease") for s in streams), 10, "every lease held")
    for person in people:
        emu.wait_connected(person, count=1, timeout=10)
        emu.send_message(world.senders[0], person.address_id, f"hello {person.name}")
    wait_until(lambda: all(world.r.xlen(s) == 1 for s in streams), 10, "one entry per stream")
    assert "4 subscriber(s)" in proc.text()  # the repeated reference counted once
    assert proc.terminate() == 0
