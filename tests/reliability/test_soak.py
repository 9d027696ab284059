"""Soak and leaks: connect/close cycles, emulator restarts under a live client, and one Client
shared by 32 threads. Threads (``threading.enumerate``) and open file descriptors
(``/proc/self/fd``) must come back to their baseline.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Callable, Dict, List

import pytest

from signalwire_conversation import Client, ConversationMessageEvent
from signalwire_conversation.testing import Emulator

from .conftest import fd_count, live_threads, open_fds, settle_fds, settle_threads, sizes
from .helpers import run_threads

FAST = {"backoff_initial": 0.02, "backoff_max": 0.2}
FD_SLACK = 2  # a lazily created resource (e.g. an urllib3/ssl cache) may stay; a leak grows with n


def _sdk_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("signalwire"))


@pytest.mark.parametrize("cycles", sizes(ci=20, full=100))
def test_connect_close_cycles_leak_nothing(cycles: int, report: Callable[[str], None]) -> None:
    with Emulator(ping_interval=None) as emu:
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")

        def cycle(i: int) -> None:
            got = threading.Event()
            with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                        listener_options=FAST) as client:
                client.conversation.subscribe(lambda e: got.set() if e.text == f"m{i}" else None, timeout=10)
                emu.send_message(bob, alice.address_id, f"m{i}")
                assert got.wait(10), f"cycle {i}: message not delivered"
                assert client.conversation.get_messages(limit=1).data

        cycle(-1)  # warm-up: imports, pools, caches
        gc.collect()
        threads0, fds0, fdset0 = live_threads(), fd_count(), open_fds()
        started = time.monotonic()
        for i in range(cycles):
            cycle(i)
        took = time.monotonic() - started
        left = settle_threads(threads0)
        fds = settle_fds(fds0, FD_SLACK)
        emu.wait_for(lambda: not emu.connections, timeout=10)
    assert not left, f"threads left after {cycles} cycles: {left}"
    assert fds <= fds0 + FD_SLACK, f"fds {fds0} -> {fds}: new {sorted(open_fds() - fdset0)[:10]}"
    report(f"{cycles} connect/subscribe/receive/close cycles in {took:.1f}s; threads back to baseline "
           f"({len(threads0)}), fds {fds0} -> {fds}")


@pytest.mark.parametrize("restarts", sizes(ci=10, full=100))
def test_emulator_restarts_under_a_live_client(restarts: int, report: Callable[[str], None]) -> None:
    gc.collect()
    threads0, fds0 = live_threads(), fd_count()  # before the emulator: it must go away too
    emu = Emulator(ping_interval=None).start()
    try:
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
        lock = threading.Lock()
        got: List[str] = []

        def on_message(event: ConversationMessageEvent) -> None:
            with lock:
                got.append(event.text or "")

        client = Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                        listener_options=FAST, timeout=(2, 5))
        client.conversation.subscribe(on_message, timeout=10)
        started = time.monotonic()
        for i in range(restarts):
            emu.stop()
            emu.start()  # the same port; the store (subscribers, messages) survives
            emu.send_message(bob, alice.address_id, f"r{i}")
            emu.wait_for(lambda: f"r{i}" in got, timeout=15,
                         message=f"restart {i}: not delivered; state {client.connection_state}")
            # and REST works again through the pooled connections
            assert client.conversation.get_messages(limit=1).data[0].text == f"r{i}"
        took = time.monotonic() - started
        stats = dict(client._listener.stats)
        client.close()
        assert not _sdk_threads(), _sdk_threads()
    finally:
        emu.stop()
    left = settle_threads(threads0)
    fds = settle_fds(fds0, FD_SLACK)
    assert got == [f"r{i}" for i in range(restarts)], "each message exactly once, in order"
    assert not left, f"threads left: {left}"
    assert fds <= fds0 + FD_SLACK, f"fds {fds0} -> {fds} after {restarts} restarts"
    report(f"{restarts} emulator restarts under one client in {took:.1f}s: every message delivered once, "
           f"in order; connects={stats['connects']} resumes={stats['resumes']} "
           f"gap_fills={stats['gap_fills']}; fds {fds0} -> {fds}")


@pytest.mark.parametrize("calls", sizes(ci=25, full=200))
def test_one_client_shared_by_32_threads(calls: int, report: Callable[[str], None]) -> None:
    threads = 32
    with Emulator(ping_interval=None) as emu:
        alice = emu.add_subscriber("alice")
        peers = [emu.add_subscriber(f"peer{i}") for i in range(8)]
        for p in peers:
            emu.send_message(p, alice.address_id, f"hello from {p.name}")
        sent: Dict[int, List[str]] = {i: [] for i in range(threads)}
        with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0,
                    timeout=(5, 30)) as client:
            api = client.conversation

            def work(t: int) -> None:
                for n in range(calls):
                    peer = peers[(t + n) % len(peers)]
                    op = (t + n) % 4
                    if op == 0:
                        text = f"t{t}-{n}"
                        result = api.send_message(peer.address_id, text)
                        assert result.text == text and result.id, result
                        assert result.conversation_id == emu.group_id(alice, peer.address_id)
                        sent[t].append(text)
                    elif op == 1:
                        page = api.get_conversation_messages(peer.address_id, limit=5)
                        group = emu.group_id(alice, peer.address_id)
                        assert page.data and all(m.conversation_id == group for m in page.data)
                    elif op == 2:
                        convs = list(api.get_conversations())
                        assert len(convs) == len(peers)
                    else:
                        joined = api.join(peer.address_id)
                        assert joined.group_id == emu.group_id(alice, peer.address_id)

            started = time.monotonic()
            errors = run_threads(threads, work, timeout=600)
            took = time.monotonic() - started
        stored = [m["text"] for m in emu.messages() if str(m.get("text", "")).startswith("t")]
    assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"
    expected = sorted(t for texts in sent.values() for t in texts)
    assert sorted(stored) == expected, "every send stored exactly once"
    joins = emu.request_count("POST", r"/conversations/join$")
    report(f"one Client, {threads} threads x {calls} calls = {threads * calls} calls in {took:.1f}s "
           f"({threads * calls / took:.0f}/s), 0 errors; {len(stored)} sends stored once each; "
           f"{joins} join requests (cache + explicit joins)")
