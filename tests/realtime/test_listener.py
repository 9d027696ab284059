"""The realtime listener against the emulator: real sockets, real threads, bounded waits."""

from __future__ import annotations

import json
import queue
import statistics
import threading
import time
from typing import Any, Iterator, List

import pytest

from signalwire_conversation.config import TokenProvider
from signalwire_conversation.errors import AuthenticationError, RealtimeError
from signalwire_conversation.models import ConversationMessageEvent
from signalwire_conversation.realtime import ConnectionState, Listener

from .conftest import fake_sat
from .helpers import Collector, RestFetch, listener_threads, wait_until

testing = pytest.importorskip("signalwire_conversation.testing")
Emulator = testing.Emulator

PING_INTERVAL = 0.5


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    with Emulator(ping_interval=PING_INTERVAL) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Any) -> Iterator[Any]:
    emulator.reset()
    emulator.start_pinging()
    yield emulator


@pytest.fixture
def people(emu: Any) -> Any:
    class People:
        alice = emu.add_subscriber("alice")
        bob = emu.add_subscriber("bob")
        carol = emu.add_subscriber("carol")

    return People


class Factory:
    """Makes listeners for a test and closes them all afterwards."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.listeners: List[Listener] = []
        self.fetchers: List[RestFetch] = []

    def __call__(self, subscriber: Any, token: Any = None, **kwargs: Any) -> Listener:
        token = subscriber.token if token is None else token
        fetch = RestFetch(self.emu.base_url, token if isinstance(token, str) else subscriber.token)
        self.fetchers.append(fetch)
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_max", 0.5)
        listener = Listener(
            tokens=TokenProvider(token),
            relay_url=self.emu.relay_url,
            fetch_missed=kwargs.pop("fetch_missed", fetch),
            **kwargs,
        )
        self.listeners.append(listener)
        return listener

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for fetch in self.fetchers:
            fetch.close()


@pytest.fixture
def make(emu: Any) -> Iterator[Factory]:
    factory = Factory(emu)
    yield factory
    factory.close()
    assert listener_threads() == [], "a listener thread survived close()"


def connections_of(emu: Any, subscriber: Any) -> List[Any]:
    """Every connection of ``subscriber``, refused ones included (matched by name or token)."""

    def mine(c: Any) -> bool:
        if c.subscriber is not None:
            return bool(c.subscriber.name == subscriber.name)
        return any((p.get("authentication") or {}).get("jwt_token") == subscriber.token for p in c.connect_history)

    return [c for c in emu.all_connections if mine(c)]


def live_connections(emu: Any, subscriber: Any) -> List[Any]:
    return [c for c in connections_of(emu, subscriber) if c.authenticated and not c.closed]


# -- handshake, acks, pings --------------------------------------------------------------------


def test_handshake_params_and_states(emu: Any, people: Any, make: Factory) -> None:
    states: List[ConnectionState] = []
    listener = make(people.alice, on_state_change=states.append)
    assert listener.state is ConnectionState.IDLE and listener_threads() == []
    sub = listener.subscribe(Collector())
    assert listener.state is ConnectionState.CONNECTED
    (conn,) = live_connections(emu, people.alice)
    params = conn.connect_params
    assert params["version"] == {"major": 4, "minor": 0, "revision": 0}
    assert params["event_acks"] is True
    assert params["authentication"] == {"jwt_token": people.alice.token}
    assert params["agent"].startswith("signalwire-conversation-python/")
    assert "protocol" not in params and "authorization_state" not in params
    assert set(listener_threads()) == {"signalwire-reader", "signalwire-dispatcher", "signalwire-watchdog"}
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    listener.close()
    wait_until(lambda: ConnectionState.CLOSED in states, 2, "CLOSED notified")
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]


def test_every_event_acked_and_pings_answered(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    emu.send_messages(people.bob, people.alice.address_id, [f"m{i}" for i in range(50)])
    got.wait(50)
    (conn,) = live_connections(emu, people.alice)
    wait_until(lambda: not emu.unacked_events(people.alice), 5, "every event acked")
    wait_until(lambda: live_connections(emu, people.alice)[0].pings_answered >= 2, 5, "two pings answered")
    conn = live_connections(emu, people.alice)[0]
    assert len(conn.acked) >= 50
    assert conn.pings_answered <= conn.pings_sent


# -- order, errors, re-entrancy, iterators, filters --------------------------------------------


def test_callback_order_over_2000_messages(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    make(people.alice).subscribe(got)
    texts = [f"msg-{i:04d}" for i in range(2000)]
    for start in range(0, 2000, 250):
        emu.send_messages(people.bob, people.alice.address_id, texts[start : start + 250])
    got.wait(2000, timeout=30)
    assert got.texts == texts
    assert got.threads == {"signalwire-dispatcher"}


def test_raising_callback_does_not_stop_deliveries(emu: Any, people: Any, make: Factory) -> None:
    errors: List[Any] = []

    def boom(event: ConversationMessageEvent) -> None:
        if int((event.text or "0").split("-")[1]) % 3 == 0:
            raise ValueError(f"bad {event.text}")

    got = Collector(boom)
    listener = make(people.alice, on_error=lambda exc, ev: errors.append((exc, ev)))
    listener.subscribe(got)
    emu.send_messages(people.bob, people.alice.address_id, [f"n-{i}" for i in range(30)])
    got.wait(30)
    wait_until(lambda: len(errors) == 10, 5, "10 errors reported")
    assert all(isinstance(exc, ValueError) and exc.args[0] == f"bad {ev.text}" for exc, ev in errors)
    assert listener.stats["callback_errors"] == 10
    assert listener.state is ConnectionState.CONNECTED


def test_calling_rest_from_a_callback(emu: Any, people: Any, make: Factory) -> None:
    """A callback that sends a message (over REST) and receives its own echo: no deadlock."""
    from signalwire_conversation import Client

    client = Client(token=people.alice.token, base_url=emu.base_url)
    try:
        replies = Collector()

        def reply(event: ConversationMessageEvent) -> None:
            if not event.is_author and (event.text or "").startswith("ping"):
                client.conversation.send_message(people.bob.address_id, "pong " + (event.text or ""))

        got = Collector(reply)
        listener = make(people.alice)
        listener.subscribe(got)
        listener.subscribe(lambda e: replies(e) if (e.text or "").startswith("pong") else None)
        for i in range(5):
            emu.send_message(people.bob, people.alice.address_id, f"ping {i}")
        replies.wait(5)
        assert replies.texts == [f"pong ping {i}" for i in range(5)]
        assert all(e.is_author for e in replies.events)
    finally:
        client.close()


def test_iterator_mode(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    sub = listener.subscribe()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.05)
    emu.send_messages(people.bob, people.alice.address_id, ["a", "b", "c"])
    assert sub.get(timeout=5).text == "a"
    seen = []
    for event in sub:
        seen.append(event.text)
        if event.text == "c":
            sub.unsubscribe()
    assert seen == ["b", "c"]
    assert list(sub) == []  # ends at once after unsubscribe
    with pytest.raises(queue.Empty):
        sub.get(timeout=5)  # closed: at once, not after 5 s

    # iteration ends on close() too, from another thread
    sub2 = listener.subscribe()
    done = threading.Event()
    out: List[Any] = []

    def consume() -> None:
        out.extend(sub2)
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    emu.send_message(people.bob, people.alice.address_id, "last")
    wait_until(lambda: bool(out), 5, "the consumer got the message")
    listener.close()
    assert done.wait(2)
    t.join(2)
    assert [e.text for e in out] == ["last"]
    with pytest.raises(TypeError):
        listener_cb = make(people.alice)
        listener_cb.subscribe(Collector()).get(timeout=0)


def test_group_id_filter_and_context_manager(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    with_bob = emu.group_id(people.alice, people.bob.address_id)
    only_bob, everything = Collector(), Collector()
    with listener.subscribe(only_bob, group_id=with_bob) as sub:
        listener.subscribe(everything)
        emu.send_message(people.bob, people.alice.address_id, "from bob 1")
        emu.send_message(people.carol, people.alice.address_id, "from carol")
        emu.send_message(people.bob, people.alice.address_id, "from bob 2")
        everything.wait(3)
        assert everything.texts == ["from bob 1", "from carol", "from bob 2"]
        only_bob.wait(2)
        assert only_bob.texts == ["from bob 1", "from bob 2"]
    assert not sub.active
    emu.send_message(people.bob, people.alice.address_id, "after")
    everything.wait(4)
    assert only_bob.texts == ["from bob 1", "from bob 2"]


# -- reconnects, gap fill, dead links ----------------------------------------------------------


def test_20_drops_during_2000_messages_exactly_once_in_order(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    texts = [f"d-{i:04d}" for i in range(2000)]
    for k in range(20):
        # each drop hits a link that both sides consider up: the server authenticated it and
        # the client has its answer (connects counts those). Waiting for the server's side
        # alone is not enough: the drop could then hit a session whose connect answer is still
        # in flight, which the client records as a failed connect, not a disconnect.
        wait_until(
            lambda: listener.stats["connects"] == k + 1 and len(live_connections(emu, people.alice)) == 1,
            5,
            f"connection {k + 1} up on both sides",
        )
        emu.send_messages(people.bob, people.alice.address_id, texts[k * 100 : k * 100 + 50])
        emu.drop_connections(people.alice)
        emu.send_messages(people.bob, people.alice.address_id, texts[k * 100 + 50 : (k + 1) * 100])
    got.wait(2000, timeout=40)
    wait_until(lambda: listener.state is ConnectionState.CONNECTED, 5, "connected at the end")
    # every reconnect is followed by one gap fill; once the last is done, nothing else can come
    wait_until(lambda: listener._pending_fills == 0, 20, "the last gap fill")
    assert len(got.texts) == 2000, f"{len(got.texts) - 2000} extra deliveries"
    assert got.texts == texts
    assert listener.stats["disconnects"] == 20 and listener.stats["connect_failures"] == 0
    assert listener.stats["delivered"] == 2000 and listener.stats["recovered"] > 0


def test_half_open_link_detected_and_recovered(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice, ping_timeout=1.0)
    listener.subscribe(got)
    emu.send_message(people.bob, people.alice.address_id, "before")
    got.wait(1)
    emu.stop_pinging()
    started = time.monotonic()
    emu.send_message(people.bob, people.alice.address_id, "during")
    wait_until(lambda: listener.stats["dead_links"] >= 1, 5, "the dead link noticed")
    noticed = time.monotonic() - started
    emu.start_pinging()
    got.wait(2, timeout=5)
    assert got.texts == ["before", "during"]
    assert 0.5 <= noticed < 2.5, f"noticed after {noticed:.2f}s with ping_timeout=1.0"
    wait_until(lambda: listener.state is ConnectionState.CONNECTED, 5, "reconnected")


def test_refused_resume_falls_back_to_a_fresh_connect(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    emu.send_message(people.bob, people.alice.address_id, "one")
    got.wait(1)
    wait_until(lambda: listener._authorization_state is not None, 5, "an authorization state")
    emu.refuse_resume(times=1)
    emu.drop_connections(people.alice)
    emu.send_message(people.bob, people.alice.address_id, "two")
    got.wait(2)
    wait_until(lambda: listener.stats["resumes_refused"] == 1, 5, "the refused resume counted")
    conns = connections_of(emu, people.alice)
    history = [p for c in conns for p in c.connect_history]
    assert "authorization_state" not in history[0]
    assert any("authorization_state" in p for p in history[1:]), "a resume was attempted"
    assert "authorization_state" not in history[-1], "the last connect is a fresh one"
    assert got.texts == ["one", "two"]


def test_resume_sends_protocol_and_state(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    listener.subscribe(Collector())
    wait_until(lambda: listener._authorization_state is not None, 5, "an authorization state")
    first = live_connections(emu, people.alice)[0]
    emu.drop_connections(people.alice)
    wait_until(lambda: listener.stats["resumes"] == 1, 5, "a resume")
    second = live_connections(emu, people.alice)[0]
    assert second.connect_params["protocol"] == first.protocol
    assert second.connect_params["authorization_state"]
    assert second.connect_params["authentication"] == {"jwt_token": people.alice.token}


def test_gap_fill_failure_is_retried(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    errors: List[Any] = []
    listener = make(people.alice, on_error=lambda exc, ev: errors.append((exc, ev)))
    fetch = make.fetchers[-1]
    listener.subscribe(got)
    emu.send_message(people.bob, people.alice.address_id, "one")
    got.wait(1)
    fetch.fail = 2
    emu.drop_connections(people.alice)
    emu.send_message(people.bob, people.alice.address_id, "two")
    got.wait(2)
    assert got.texts == ["one", "two"]
    assert len(fetch.calls) >= 3
    assert listener.stats["gap_fill_failures"] == 2
    # every failure reaches on_error (no silent stall)
    assert len(errors) == 2 and all(ev is None for _, ev in errors)


def test_slow_callback_overflow_recovers_everything_in_order(emu: Any, people: Any, make: Factory) -> None:
    gate = threading.Event()
    got = Collector(lambda e: gate.wait(10) if e.text == "o-000" else None)
    listener = make(people.alice, queue_size=20)
    listener.subscribe(got)
    texts = [f"o-{i:03d}" for i in range(300)]
    emu.send_messages(people.bob, people.alice.address_id, texts)
    wait_until(lambda: listener.stats["dropped_on_overflow"] > 0, 5, "an overflow")
    wait_until(lambda: not emu.unacked_events(people.alice), 5, "acks sent while the callback blocks")
    gate.set()
    got.wait(300, timeout=20)
    # a marker sent last arrives last: anything delivered twice would stand before it
    emu.send_message(people.bob, people.alice.address_id, "o-marker")
    got.wait(301, timeout=20)
    assert got.texts == texts + ["o-marker"]
    assert listener.stats["connects"] == 1, "no reconnect was needed"


# -- authentication, tokens, bad frames --------------------------------------------------------


def test_bad_token_raises_at_subscribe(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice, token=fake_sat())
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        listener.subscribe(Collector(), timeout=5)
    assert time.monotonic() - started < 3
    assert "refused" in str(info.value)
    assert people.alice.token not in str(info.value)
    wait_until(lambda: listener.state is ConnectionState.CLOSED, 2, "CLOSED")
    with pytest.raises(AuthenticationError):
        listener.subscribe(Collector())
    with pytest.raises(AuthenticationError):
        listener.run_forever()


def test_revoked_token_is_fatal_for_run_forever(
    emu: Any, people: Any, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    token = emu.issue_token(people.alice)
    listener = make(people.alice, token=token)
    errors: List[Any] = []
    listener._on_error = lambda exc, ev: errors.append(exc)
    listener.subscribe(Collector())
    raised: List[BaseException] = []

    def run() -> None:
        try:
            listener.run_forever()
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: listener._run_forever_callers == 1, 5, "run_forever() entered")
    caplog.set_level("INFO", logger="signalwire_conversation")
    emu.revoke_token(token)
    emu.refuse_resume(times=1)
    emu.drop_connections(people.alice)
    t.join(10)
    assert not t.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], AuthenticationError)
    assert listener.state is ConnectionState.CLOSED
    assert errors and isinstance(errors[0], AuthenticationError)
    assert listener.error is raised[0]
    # reported once, not as an ERROR: run_forever() raised it, the application reports it
    fatal = [r for r in caplog.records if "stopped for good" in r.getMessage()]
    assert [r.levelname for r in fatal] == ["WARNING"], [r.getMessage() for r in fatal]
    assert "raised from run_forever()" in fatal[0].getMessage()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_fatal_error_is_observable_without_run_forever(
    emu: Any, people: Any, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """No run_forever(): CLOSED through on_state_change, the error on listener.error, wait()
    returns, and the log says it at ERROR (nobody else will)."""
    token = emu.issue_token(people.alice)
    seen: List[Any] = []
    closed = threading.Event()

    def on_state(state: ConnectionState) -> None:
        seen.append((state, listener.error))
        if state is ConnectionState.CLOSED:
            closed.set()

    listener = make(people.alice, token=token, on_state_change=on_state)
    listener.subscribe(Collector())
    assert listener.error is None and not listener.wait(0.01)
    caplog.set_level("INFO", logger="signalwire_conversation")
    emu.revoke_token(token)
    emu.refuse_resume(times=1)
    emu.drop_connections(people.alice)
    assert closed.wait(10), "CLOSED was not notified"
    assert listener.wait(5)
    assert listener.state is ConnectionState.CLOSED
    assert isinstance(listener.error, AuthenticationError)
    # by the time CLOSED is told, the error is readable (a watcher can tell "died" from "closed")
    assert seen[-1] == (ConnectionState.CLOSED, listener.error)
    assert [s for s, _ in seen].count(ConnectionState.CLOSED) == 1
    fatal = [r for r in caplog.records if "stopped for good" in r.getMessage()]
    assert [r.levelname for r in fatal] == ["ERROR"]
    with pytest.raises(AuthenticationError):
        listener.run_forever()  # still raised to a late caller


def test_plain_close_is_not_an_error(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    listener.subscribe(Collector())
    listener.close()
    assert listener.wait(0) and listener.error is None and listener.state is ConnectionState.CLOSED
    listener.run_forever()  # returns at once, raises nothing


def test_callable_token_refreshed_before_expiry(emu: Any, people: Any, make: Factory) -> None:
    issued: List[str] = []

    def new_token() -> str:
        issued.append(emu.issue_token(people.alice, ttl=4))
        return issued[-1]

    got = Collector()
    listener = make(people.alice, token=new_token, refresh_margin=2.0)
    listener.subscribe(got)
    wait_until(lambda: listener.stats["token_refreshes"] >= 1, 6, "a token refresh")
    wait_until(lambda: live_connections(emu, people.alice)[0].reauthentications >= 1, 5, "a reauthenticate")
    assert listener.stats["connects"] == 1
    emu.send_message(people.bob, people.alice.address_id, "still here")
    got.wait(1)


def test_malformed_frames_are_skipped(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    for frame in [
        "not json at all",
        b"\xff\xfe\xfd",
        "[1, 2, 3]",
        '{"jsonrpc": "2.0"}',
        json.dumps({"jsonrpc": "2.0", "id": "x1", "method": "signalwire.event", "params": "junk"}),
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": "x2",
                "method": "signalwire.event",
                "params": {"event_type": "conversation.message", "params": ["not", "an", "object"]},
            }
        ),
        json.dumps({"jsonrpc": "2.0", "id": "x3", "method": "unknown.method", "params": {}}),
    ]:
        emu.send_raw(frame, subscriber=people.alice)
    emu.send_message(people.bob, people.alice.address_id, "still fine")
    got.wait(1)
    assert got.texts == ["still fine"]
    assert listener.stats["connects"] == 1 and listener.stats["disconnects"] == 0


def test_event_without_id_is_acked_counted_and_not_delivered(
    emu: Any, people: Any, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    caplog.set_level("DEBUG", logger="signalwire_conversation")
    payload = {"group_id": "g-x", "ts": time.time(), "text": "no id", "type": "message", "subtype": "chat"}
    for n in range(3):
        emu.send_raw(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": f"raw-{n}",
                    "method": "signalwire.event",
                    "params": {"event_type": "conversation.message", "params": payload},
                }
            ),
            subscriber=people.alice,
        )
    emu.send_message(people.bob, people.alice.address_id, "after")
    got.wait(1)
    assert got.texts == ["after"]
    assert listener.stats["malformed"] == 3
    emu.wait_for(lambda: not emu.unacked_events(people.alice), timeout=5)  # acked all the same
    warned = [r for r in caplog.records if "malformed" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warned) == 1  # logged once


# -- shutdown ----------------------------------------------------------------------------------


def test_close_under_load_is_fast_and_leaves_no_thread(emu: Any, people: Any, make: Factory) -> None:
    got = Collector(lambda e: time.sleep(0.001))
    listener = make(people.alice)
    listener.subscribe(got)
    stop = threading.Event()

    def flood() -> None:
        i = 0
        while not stop.is_set() and i < 20:
            emu.send_messages(people.bob, people.alice.address_id, [f"f{i}-{j}" for j in range(200)])
            i += 1

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        got.wait(100)
        started = time.monotonic()
        listener.close(timeout=0.3)  # drains what was received, within the bound
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sender.join(30)
    assert elapsed < 1.0, f"close() took {elapsed:.3f}s"
    assert listener_threads() == []
    assert listener.state is ConnectionState.CLOSED


def test_run_forever_returns_after_close_from_a_callback(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    listener.subscribe(lambda e: listener.close())
    t = threading.Thread(target=listener.run_forever)
    t.start()
    emu.send_message(people.bob, people.alice.address_id, "bye")
    t.join(5)
    assert not t.is_alive()
    wait_until(lambda: listener_threads() == [], 5, "threads gone")


def test_50_subscribe_close_cycles_leave_no_thread(emu: Any, people: Any, make: Factory) -> None:
    baseline = {t.ident for t in threading.enumerate()}
    for _ in range(50):
        listener = make(people.alice)
        listener.subscribe(Collector())
        listener.close()
        make.fetchers[-1].close()  # its keep-alive HTTP connection holds an emulator thread
        assert listener_threads() == []
    make.listeners.clear()
    wait_until(
        lambda: {t.ident for t in threading.enumerate()} <= baseline,
        5,
        "threading.enumerate() back to its baseline",
    )


def test_subscribe_timeout_when_nothing_listens(make: Factory, people: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    listener = Listener(
        tokens=TokenProvider(people.alice.token),
        relay_url=f"ws://127.0.0.1:{port}",
        fetch_missed=lambda since: [],
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    make.listeners.append(listener)
    started = time.monotonic()
    with pytest.raises(RealtimeError) as info:
        listener.subscribe(Collector(), timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2
    assert "within 0.5s" in str(info.value)
    assert listener.state is ConnectionState.CONNECTING
    listener.close()
    assert listener_threads() == []


# -- measurement -------------------------------------------------------------------------------


def test_recovery_time_after_a_drop(emu: Any, people: Any, make: Factory, capsys: Any) -> None:
    """Time from a dropped link to the delivery of a message sent while it was down (defaults)."""
    got = Collector()
    listener = Listener(
        tokens=TokenProvider(people.alice.token),
        relay_url=emu.relay_url,
        fetch_missed=RestFetch(emu.base_url, people.alice.token),
    )
    make.listeners.append(listener)
    listener.subscribe(got)
    samples: List[float] = []
    for i in range(10):
        wait_until(lambda: listener.state is ConnectionState.CONNECTED, 5, "connected")
        started = time.monotonic()
        emu.drop_connections(people.alice)
        emu.send_message(people.bob, people.alice.address_id, f"r{i}")
        got.wait(i + 1, timeout=10)
        samples.append(time.monotonic() - started)
    assert got.texts == [f"r{i}" for i in range(10)]
    with capsys.disabled():
        print(
            f"\nrecovery after a drop (default backoff, 10 drops): median {statistics.median(samples) * 1000:.0f} ms, "
            f"max {max(samples) * 1000:.0f} ms"
        )
    assert max(samples) < 2.0


def test_drop_before_anything_was_delivered(emu: Any, people: Any, make: Factory) -> None:
    """The first gap starts at the first connection (minus the overlap), not at 'nothing'."""
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    emu.drop_connections(people.alice)
    emu.send_message(people.bob, people.alice.address_id, "while down")
    got.wait(1)
    assert got.texts == ["while down"]
    wait_until(lambda: listener.stats["gap_fills"] >= 1 and listener._pending_fills == 0, 5, "the gap fill")
    assert len(got.texts) == 1


def test_ctrl_c_in_run_forever_closes_cleanly(emu: Any, people: Any, make: Factory) -> None:
    import _thread

    listener = make(people.alice)
    listener.subscribe(Collector())
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    try:
        started = time.monotonic()
        listener.run_forever()  # returns (does not raise) after Ctrl+C
        assert time.monotonic() - started < 3
    finally:
        timer.cancel()
    assert listener.state is ConnectionState.CLOSED
    assert listener_threads() == []


# -- hostile input (reliability defects D8, D9, D10, D12) --------------------------------------


def test_deeply_nested_frame_is_skipped(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    emu.send_raw('{"jsonrpc":"2.0","method":"signalwire.event","params":' + "[" * 5000 + "]" * 5000 + "}", people.alice)
    emu.send_message(people.bob, people.alice.address_id, "after")
    got.wait(1)
    assert listener.stats["disconnects"] == 0 and listener.state is ConnectionState.CONNECTED


def test_oversized_message_replaces_the_link(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice, max_message_bytes=4096)
    listener.subscribe(got)
    emu.send_raw(json.dumps({"jsonrpc": "2.0", "method": "x", "params": {"pad": "a" * 10_000}}), people.alice)
    wait_until(lambda: listener.stats["disconnects"] == 1, 5, "the link replaced")
    emu.send_message(people.bob, people.alice.address_id, "after")
    got.wait(1)
    assert got.texts == ["after"]


def test_future_timestamp_does_not_poison_gap_fill(emu: Any, people: Any, make: Factory) -> None:
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    group = emu.group_id(people.alice, people.bob.address_id)
    frame = {
        "jsonrpc": "2.0",
        "id": "odd",
        "method": "signalwire.event",
        "params": {
            "event_type": "conversation.message",
            "params": {"id": "odd", "group_id": group, "text": "odd", "ts": 4102444800.0},
        },
    }
    # the server's clock is known from its pings: the odd ts is implausible, not a watermark
    wait_until(lambda: listener._server_clock is not None, 5, "a server ping")
    emu.send_raw(json.dumps(frame), people.alice)
    got.wait(1)
    emu.drop_connections(people.alice)
    emu.send_message(people.bob, people.alice.address_id, "while down")
    got.wait(2)
    assert got.texts == ["odd", "while down"]


def test_infinite_timeouts_are_accepted(emu: Any, people: Any, make: Factory) -> None:
    listener = make(people.alice)
    sub = listener.subscribe(timeout=float("inf"))
    emu.send_message(people.bob, people.alice.address_id, "x")
    assert sub.get(timeout=float("inf")).text == "x"
    listener.close(timeout=float("inf"))


# -- the fast paths over TLS and under a burst ---------------------------------------------------


def test_burst_over_tls_every_event_acked_and_delivered_in_order(tmp_path: Any) -> None:
    """The read-ahead buffer and the batched, self-masked acks over an ``SSLSocket``."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Emulator(ssl_context=ctx, ping_interval=PING_INTERVAL) as emu:
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
        assert emu.relay_url.startswith("wss://")
        listener = Listener(
            tokens=TokenProvider(alice.token),
            relay_url=emu.relay_url,
            fetch_missed=lambda since: [],
            verify=str(ca_file),
        )
        try:
            got = Collector()
            listener.subscribe(got)
            texts = [f"tls-{i:04d} " + "x" * (i % 700) for i in range(1500)]
            emu.send_messages(bob, alice.address_id, texts)
            got.wait(1500, timeout=30)
            assert got.texts == texts
            emu.wait_for(lambda: not emu.unacked_events(alice), timeout=10)
            assert listener.stats["connects"] == 1 and listener.stats["disconnects"] == 0
        finally:
            listener.close()
    assert listener_threads() == []


def test_undecodable_message_is_skipped_on_the_dispatcher(
    emu: Any, people: Any, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signalwire_conversation.realtime import dispatcher as listener_module

    real = listener_module.decode_event

    def picky(payload: Any, is_author: Any = None, cursor: str = "") -> Any:
        if payload.get("text") == "bad":
            raise ValueError("injected decode failure")
        return real(payload, is_author=is_author, cursor=cursor)

    monkeypatch.setattr(listener_module, "decode_event", picky)
    got = Collector()
    listener = make(people.alice)
    listener.subscribe(got)
    emu.send_messages(people.bob, people.alice.address_id, ["one", "bad", "two"])
    got.wait(2)
    assert got.texts == ["one", "two"]
    assert listener.stats["events_skipped"] == 1 and listener.stats["events_received"] == 3
    emu.wait_for(lambda: not emu.unacked_events(people.alice), timeout=5)  # acked all the same
    assert listener.state is ConnectionState.CONNECTED


def test_a_bug_in_the_dispatcher_stops_everything_and_is_logged_once(
    emu: Any, people: Any, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    closed = threading.Event()
    listener = make(people.alice, on_state_change=lambda s: closed.set() if s is ConnectionState.CLOSED else None)
    listener.subscribe(Collector())

    def broken(*args: Any) -> None:
        raise ZeroDivisionError("a bug")

    listener._dispatch = broken  # type: ignore[method-assign]
    caplog.set_level("INFO", logger="signalwire_conversation")
    emu.send_message(people.bob, people.alice.address_id, "boom")
    assert closed.wait(5)
    assert isinstance(listener.error, RealtimeError) and "dispatcher" in str(listener.error)
    # the reader is stopped at once (its socket aborted), not at its next read timeout
    wait_until(lambda: "signalwire-reader" not in listener_threads(), 3, "the reader stopped")
    fatal = [r for r in caplog.records if "stopped for good" in r.getMessage()]
    assert len(fatal) == 1 and fatal[0].levelname == "ERROR" and fatal[0].exc_info
