"""The hub against the emulator: many clients, drops, a slow callback, closes (issue 15)."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable, List

import pytest

from signalwire_conversation import Client, RealtimeHub, ValidationError
from signalwire_conversation.errors import RealtimeError
from signalwire_conversation.testing import Emulator
from tests.waiting import wait_until

from .conftest import hub_threads, subscribe_all

WAIT = 30.0


def _collector(store: List[str]) -> Callable[[Any], None]:
    return lambda event: store.append(event.text)


def _socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def test_200_clients_with_20_drops_get_every_message_once_in_order(
    emu: Emulator, hub: RealtimeHub, make_clients: Callable[..., List[Client]]
) -> None:
    n, rounds = 200, 5
    subscribers = [emu.add_subscriber(f"user{i}") for i in range(n)]
    sender = emu.add_subscriber("sender")
    clients = make_clients(subscribers)
    got: List[List[str]] = [[] for _ in range(n)]
    subscribe_all(clients, [_collector(store) for store in got])
    rng = random.Random(15)
    victims = rng.sample(range(n), 20)
    for r in range(rounds):
        for i, s in enumerate(subscribers):
            emu.send_message(sender, s.address_id, f"m{r}")
        if r < 4:
            for i in victims[r * 5 : r * 5 + 5]:
                assert emu.drop_connections(subscribers[i]) >= 1  # it was connected
    expected = [f"m{r}" for r in range(rounds)]
    wait_until(lambda: all(len(store) >= rounds for store in got), WAIT, "every message delivered")
    wait_until(lambda: all(c.stats["connects"] >= 2 for c in (clients[i] for i in victims)), WAIT, "the reconnects")
    # a marker sent last arrives last: anything delivered twice would stand before it
    for s in subscribers:
        emu.send_message(sender, s.address_id, "marker")
    wait_until(lambda: all(store and store[-1] == "marker" for store in got), WAIT, "every marker")
    for i, store in enumerate(got):
        assert store == expected + ["marker"], f"client {i}: {store}"
    assert sum(clients[i].stats["disconnects"] for i in victims) >= 20
    assert len(hub_threads()) <= 4 + hub.workers


def test_a_slow_callback_delays_only_its_own_subscriber(
    emu: Emulator, make_clients: Callable[..., List[Client]]
) -> None:
    slow_sub, fast_sub, sender = emu.add_subscriber("slow"), emu.add_subscriber("fast"), emu.add_subscriber("s")
    slow, fast = make_clients([slow_sub, fast_sub])
    sleeping = threading.Event()
    slow_done: List[float] = []
    fast_times: List[float] = []

    def slow_callback(event: Any) -> None:
        sleeping.set()
        time.sleep(1.0)
        slow_done.append(time.monotonic())

    subscribe_all([slow, fast], [slow_callback, lambda event: fast_times.append(time.monotonic())])
    emu.send_message(sender, slow_sub.address_id, "slow 1")
    emu.send_message(sender, slow_sub.address_id, "slow 2")  # queued behind the first
    assert sleeping.wait(WAIT)
    started = time.monotonic()
    for i in range(5):
        emu.send_message(sender, fast_sub.address_id, f"fast {i}")
    wait_until(lambda: len(fast_times) == 5, WAIT, "the fast subscriber's messages")
    wait_until(lambda: len(slow_done) == 2, WAIT, "the slow callbacks")
    # every fast delivery happened while the slow callback was still asleep
    assert max(fast_times) < slow_done[0], (max(fast_times) - started, slow_done[0] - started)


def test_one_subscribers_callbacks_never_overlap_and_keep_order(
    emu: Emulator, make_clients: Callable[..., List[Client]]
) -> None:
    subs = [emu.add_subscriber(f"o{i}") for i in range(6)]
    sender = emu.add_subscriber("s")
    clients = make_clients(subs)
    active = [0] * 6
    overlaps: List[int] = []
    got: List[List[str]] = [[] for _ in range(6)]

    def callback(i: int) -> Callable[[Any], None]:
        def on_event(event: Any) -> None:
            active[i] += 1
            if active[i] > 1:
                overlaps.append(i)
            time.sleep(0.002)
            got[i].append(event.text)
            active[i] -= 1

        return on_event

    subscribe_all(clients, [callback(i) for i in range(6)])
    for k in range(30):
        for s in subs:
            emu.send_message(sender, s.address_id, str(k))
    wait_until(lambda: all(len(g) >= 30 for g in got), WAIT, "every message")
    assert not overlaps
    assert all(g == [str(k) for k in range(30)] for g in got)


def test_closing_one_client_mid_stream_leaves_the_others_exact(
    emu: Emulator, make_clients: Callable[..., List[Client]]
) -> None:
    subs = [emu.add_subscriber(f"c{i}") for i in range(5)]
    sender = emu.add_subscriber("s")
    clients = make_clients(subs)
    got: List[List[str]] = [[] for _ in range(5)]
    subscribe_all(clients, [_collector(g) for g in got])
    for k in range(40):
        for s in subs:
            emu.send_message(sender, s.address_id, str(k))
        if k == 20:
            clients[2].close()
    expected = [str(k) for k in range(40)]
    # a marker sent last arrives last: anything delivered twice would stand before it
    for i in (0, 1, 3, 4):
        emu.send_message(sender, subs[i].address_id, "end")
    wait_until(lambda: all(got[i] and got[i][-1] == "end" for i in (0, 1, 3, 4)), WAIT, "the others' messages")
    for i in (0, 1, 3, 4):
        assert got[i] == expected + ["end"]
    assert got[2] == expected[: len(got[2])] and len(got[2]) <= 21  # what it got: in order, once
    assert clients[0].stats["connects"] == 1


def test_hub_close_leaves_no_thread_and_no_socket(emu: Emulator) -> None:
    wait_until(lambda: not hub_threads(), WAIT, "no thread of an earlier test")
    before = _socket_fds()
    subs = [emu.add_subscriber(f"z{i}") for i in range(20)]
    sender = emu.add_subscriber("s")
    hub = RealtimeHub(workers=2)
    clients = [Client(s.token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub) for s in subs]
    got: List[List[str]] = [[] for _ in subs]
    subscribe_all(clients, [_collector(g) for g in got])
    for s in subs:
        emu.send_message(sender, s.address_id, "hi")
    wait_until(lambda: all(got), WAIT, "delivery")
    assert 2 < len(hub_threads()) <= 4 + 2
    started = time.monotonic()
    hub.close(timeout=5)
    assert time.monotonic() - started < 5.5
    assert hub_threads() == []
    for client in clients:
        assert client.stats["connects"] == 1
        with pytest.raises(RealtimeError):
            client.conversation.subscribe(lambda e: None)
        client.close()
    wait_until(lambda: _socket_fds() <= before, WAIT, f"the sockets closed ({_socket_fds()} > {before})")


def test_client_hub_argument_is_checked(emu: Emulator) -> None:
    with pytest.raises(ValidationError, match="hub"):
        Client("x" * 40, base_url=emu.base_url, relay_url=emu.relay_url, hub=object())  # type: ignore[arg-type]
    hub = RealtimeHub()
    hub.close()
    with pytest.raises(ValidationError, match="closed"):
        Client(emu.add_subscriber("h").token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub)
    with pytest.raises(ValidationError, match="workers"):
        RealtimeHub(workers=0)


def test_a_silent_link_is_found_dead_and_replaced_and_the_gap_filled(
    emu: Emulator, make_clients: Callable[..., List[Client]]
) -> None:
    quiet, other, sender = emu.add_subscriber("quiet"), emu.add_subscriber("other"), emu.add_subscriber("s")
    clients = make_clients([quiet, other], listener_options={"ping_timeout": 1.0, "backoff_initial": 0.05,
                                                             "backoff_max": 0.2})
    got: List[List[str]] = [[], []]
    subscribe_all(clients, [_collector(g) for g in got])
    emu.ping_interval = 0.2
    try:
        assert emu.stop_pinging(quiet, half_open=True) >= 1
        emu.send_message(sender, quiet.address_id, "while deaf")  # not pushed: the link is half open
        wait_until(lambda: clients[0].stats["dead_links"] >= 1, WAIT, "the dead link found")
        emu.start_pinging()
        wait_until(lambda: got[0] == ["while deaf"], WAIT, "the gap filled after the reconnect")
        emu.send_message(sender, other.address_id, "x")
        wait_until(lambda: got[1] == ["x"], WAIT, "the other client untouched")
        assert clients[1].stats["dead_links"] == 0 and clients[1].stats["connects"] == 1
    finally:
        emu.ping_interval = None


def test_handshakes_in_flight_are_bounded(emu: Emulator) -> None:
    subs = [emu.add_subscriber(f"b{i}") for i in range(12)]
    with RealtimeHub(workers=2, max_handshakes=2) as hub:
        peak = [0]
        take = hub._take_slot

        def counting(session: Any) -> bool:
            taken = take(session)
            peak[0] = max(peak[0], hub._in_flight)
            return taken

        hub._take_slot = counting  # type: ignore[method-assign]
        clients = [Client(s.token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub) for s in subs]
        subscribe_all(clients, [lambda event: None] * len(clients))
        assert all(c.stats["connects"] == 1 for c in clients)
        assert peak[0] == 2
        for client in clients:
            client.close()


def test_reconnects_after_a_drop_are_spread_with_the_number_of_clients() -> None:
    from signalwire_conversation.realtime.backoff import Backoff

    class Highest(Backoff):
        def _random(self, upper: float) -> float:
            return upper

    hub = RealtimeHub(reconnect_rate=100.0)
    backoff = Highest(0.25, 15.0)
    assert hub._reconnect_delay(backoff) == 0.25  # few clients: the backoff's first step
    hub._listeners.update(object() for _ in range(1000))  # type: ignore[misc]
    assert hub._reconnect_delay(backoff) == 10.0  # 1,000 clients at 100 per second
    hub._listeners.clear()
    hub.close()


def test_a_callable_token_is_refreshed_on_the_live_link_and_a_failed_refresh_retried(
    emu: Emulator, hub: RealtimeHub
) -> None:
    # the hub's timer schedules the refresh before expiry; a callable that fails once is
    # retried (with backoff) and the link is reauthenticated, never reconnected
    alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
    calls: List[str] = []

    def new_token() -> str:
        calls.append("call")
        if len(calls) == 2:  # the first refresh fails
            raise RuntimeError("the identity provider is down")
        return emu.issue_token(alice, ttl=4)

    client = Client(new_token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub,
                    listener_options={"backoff_initial": 0.05, "backoff_max": 0.2, "refresh_margin": 2.0})
    try:
        got: List[str] = []
        client.conversation.subscribe(_collector(got))
        wait_until(lambda: client.stats["token_refreshes"] >= 1, 8, "a token refresh after a failed one")
        assert len(calls) >= 3  # construction, the failed refresh, the one that worked
        wait_until(
            lambda: any(c.reauthentications >= 1 for c in emu.connections if c.subscriber is alice),
            5, "a signalwire.reauthenticate on the live link",
        )
        assert client.stats["connects"] == 1
        emu.send_message(bob, alice.address_id, "still here")
        wait_until(lambda: got == ["still here"], 5, "a message after the refresh")
    finally:
        client.close(timeout=1)
