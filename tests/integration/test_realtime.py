"""Client-level realtime wiring: ``client.conversation.subscribe`` against the emulator's relay."""

from __future__ import annotations

import queue
import threading
from typing import Any, List, Optional, Set, Tuple

import pytest

from signalwire_conversation import (
    AuthenticationError,
    Client,
    ConnectionState,
    ConversationMessageEvent,
)
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import FAST_LISTENER, WAIT, ClientFactory


class Collector:
    """A subscription callback that records events and wakes a waiter at a given count."""

    def __init__(self) -> None:
        self.events: List[ConversationMessageEvent] = []
        self.threads: Set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, event: ConversationMessageEvent) -> None:
        with self._cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> List[ConversationMessageEvent]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f"got {len(self.events)} of {count} events within {timeout} s")
            return list(self.events)

    @property
    def texts(self) -> List[Optional[str]]:
        with self._cond:
            return [e.text for e in self.events]


def _state(client: Client) -> ConnectionState:
    """``client.connection_state``, read afresh (a helper, so type checkers do not narrow it)."""
    return client.connection_state


def _error(client: Client) -> Optional[BaseException]:
    return client.listener_error


def _sdk_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("signalwire-"))


def test_a_callback_gets_another_subscribers_messages_in_order(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice, listener_options=FAST_LISTENER)
    bob_client = make_client(bob)
    got = Collector()

    sub = client.conversation.subscribe(got)
    emu.wait_connected(alice)
    sent = [bob_client.conversation.send_message(alice.address_id, f"n{i}") for i in range(30)]

    events = got.wait_for(30)

    group = emu.group_id(alice, bob.address_id)
    assert [e.text for e in events] == [f"n{i}" for i in range(30)]
    assert [e.id for e in events] == [s.id for s in sent]
    assert all(isinstance(e, ConversationMessageEvent) for e in events)
    assert {e.conversation_id for e in events} == {group}
    assert {e.user_id for e in events} == {bob.address_id}
    assert {e.is_author for e in events} == {False}
    assert {e.recovered for e in events} == {False}
    assert got.threads == {"signalwire-dispatcher"}
    # the user's own message comes back too, marked as authored
    mine = client.conversation.send_message(bob.address_id, "mine")
    own = got.wait_for(31)[-1]
    assert (own.id, own.text, own.is_author, own.user_id) == (mine.id, "mine", True, alice.address_id)
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent


def test_subscribe_with_address_id_keeps_that_conversation_only(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice, listener_options=FAST_LISTENER)
    everything = client.conversation.subscribe()  # iterator mode, unfiltered
    with_bob = client.conversation.subscribe(address_id=bob.address_id)  # iterator mode, filtered
    emu.wait_connected(alice)

    emu.send_message(carol, alice.address_id, "carol 1")
    emu.send_message(bob, alice.address_id, "bob 1")
    client.conversation.send_message(carol.address_id, "alice to carol")
    client.conversation.send_message(bob.address_id, "alice to bob")
    emu.send_message(carol, alice.address_id, "carol 2")
    emu.send_message(bob, alice.address_id, "bob last")

    # the dispatcher delivers in order to every subscription: once "bob last" is out of the
    # filtered queue, anything carol's that leaked through would already be in front of it
    filtered: List[Any] = []
    for _ in range(10):
        event = with_bob.get(timeout=WAIT)
        filtered.append(event)
        if event.text == "bob last":
            break
    assert [e.text for e in filtered] == ["bob 1", "alice to bob", "bob last"]
    assert {e.conversation_id for e in filtered} == {emu.group_id(alice, bob.address_id)}
    assert [e.is_author for e in filtered] == [False, True, False]
    with pytest.raises(queue.Empty):
        with_bob.get(timeout=0.05)

    unfiltered = [everything.get(timeout=WAIT).text for _ in range(6)]
    assert unfiltered == ["carol 1", "bob 1", "alice to carol", "alice to bob", "carol 2", "bob last"]


def test_iterator_mode_ends_on_close(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice, listener_options=FAST_LISTENER)
    sub = client.conversation.subscribe()
    emu.wait_connected(alice)
    emu.send_messages(bob, alice.address_id, ["x", "y", "z"])
    seen: List[Optional[str]] = []
    done = threading.Event()

    def consume() -> None:
        for event in sub:  # ends when the client closes
            seen.append(event.text)
            if len(seen) == 3:
                client.close()  # from the consuming thread, not the dispatcher
        done.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    assert done.wait(WAIT), "iteration did not end after client.close()"
    worker.join(WAIT)
    assert seen == ["x", "y", "z"]
    assert _state(client) is ConnectionState.CLOSED


def test_connection_state_and_the_state_hook(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory
) -> None:
    states: List[ConnectionState] = []
    closed = threading.Event()

    def on_state(state: ConnectionState) -> None:
        states.append(state)
        if state is ConnectionState.CLOSED:
            closed.set()

    client = make_client(alice, on_state_change=on_state, listener_options=FAST_LISTENER)
    assert _state(client) is ConnectionState.IDLE
    assert _sdk_threads() == []  # nothing started by the constructor or by REST calls
    list(client.conversation.get_messages())
    assert _sdk_threads() == [] and emu.all_connections == []

    client.conversation.subscribe(lambda e: None)
    assert _state(client) is ConnectionState.CONNECTED
    assert _error(client) is None
    client.close()

    assert _state(client) is ConnectionState.CLOSED
    assert closed.wait(WAIT)
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]
    assert _error(client) is None  # closed, not died


def test_a_drop_is_survived_and_the_hook_sees_the_reconnect(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    states: List[ConnectionState] = []
    cond = threading.Condition()

    def on_state(state: ConnectionState) -> None:
        with cond:
            states.append(state)
            cond.notify_all()

    client = make_client(alice, on_state_change=on_state, listener_options=FAST_LISTENER)
    got = Collector()
    client.conversation.subscribe(got)
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "before")
    got.wait_for(1)

    emu.drop_connections(alice)
    with cond:
        assert cond.wait_for(lambda: states.count(ConnectionState.CONNECTED) >= 2, WAIT), states
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "after")

    assert [e.text for e in got.wait_for(2)] == ["before", "after"]
    assert states[:5] == [
        ConnectionState.CONNECTING, ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING, ConnectionState.RECOVERING, ConnectionState.CONNECTED,
    ]
    assert _error(client) is None


def test_messages_missed_on_a_dead_link_are_filled_in_over_rest(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    emu.ping_interval = 0.2  # restored by the fixture's reset
    client = make_client(alice, listener_options=dict(FAST_LISTENER, ping_timeout=0.5))
    got = Collector()
    client.conversation.subscribe(got)
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "live 1")
    got.wait_for(1)

    emu.stop_pinging(alice)  # half-open: nothing reaches the client, messages are still stored
    for i in range(5):
        emu.send_message(bob, alice.address_id, f"missed {i}")
    events = got.wait_for(6)  # after the watchdog noticed, the client reconnected and filled in
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "live 2")
    events = got.wait_for(7)

    assert [e.text for e in events] == ["live 1"] + [f"missed {i}" for i in range(5)] + ["live 2"]
    assert [e.recovered for e in events] == [False] + [True] * 5 + [False]
    assert len({e.id for e in events}) == 7
    # (the first read is subscribe() learning the server's newest message)
    gap_queries = [q for m, p, q in emu.requests if m == "GET" and p == "/api/fabric/messages"][1:]
    assert gap_queries and all("since" in q for q in gap_queries)


def test_on_error_gets_what_a_callback_raised_and_delivery_goes_on(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    errors: List[Tuple[BaseException, Optional[ConversationMessageEvent]]] = []
    got = Collector()

    def callback(event: ConversationMessageEvent) -> None:
        if event.text == "boom":
            raise ValueError("callback failed on purpose")
        got(event)

    client = make_client(alice, on_error=lambda exc, ev: errors.append((exc, ev)), listener_options=FAST_LISTENER)
    client.conversation.subscribe(callback)
    emu.wait_connected(alice)
    emu.send_messages(bob, alice.address_id, ["one", "boom", "two"])

    assert [e.text for e in got.wait_for(2)] == ["one", "two"]
    assert len(errors) == 1  # reported before "two" was delivered (same dispatcher thread)
    exc, event = errors[0]
    assert isinstance(exc, ValueError) and str(exc) == "callback failed on purpose"
    assert event is not None and event.text == "boom"
    assert _state(client) is ConnectionState.CONNECTED


def test_a_callback_may_call_the_client(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice, listener_options=FAST_LISTENER)
    replies = Collector()

    def echo(event: ConversationMessageEvent) -> None:
        if event.is_author:
            replies(event)
        else:  # REST from the dispatcher thread: no deadlock
            client.conversation.send_message(bob.address_id, f"re: {event.text}")

    client.conversation.subscribe(echo)
    emu.wait_connected(alice)
    emu.send_messages(bob, alice.address_id, ["a", "b"])

    assert [e.text for e in replies.wait_for(2)] == ["re: a", "re: b"]


def test_listener_error_after_the_token_is_revoked_and_run_forever_raises_it(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory
) -> None:
    closed = threading.Event()

    def on_state(state: ConnectionState) -> None:
        if state is ConnectionState.CLOSED:
            closed.set()

    client = make_client(alice, on_state_change=on_state, listener_options=FAST_LISTENER)
    client.conversation.subscribe(lambda e: None)
    assert _error(client) is None

    emu.revoke_token(alice.token)
    emu.refuse_resume()
    emu.drop_connections(alice)

    assert closed.wait(WAIT), "the listener did not stop after the token was revoked"
    error = _error(client)
    assert isinstance(error, AuthenticationError)
    assert _state(client) is ConnectionState.CLOSED

    outcome: List[BaseException] = []

    def run() -> None:
        try:
            client.run_forever()
        except BaseException as exc:  # noqa: B902 - recorded for the assertion
            outcome.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(WAIT)
    assert not runner.is_alive(), "run_forever() did not return after a fatal listener error"
    assert len(outcome) == 1 and outcome[0] is error
    # a new subscribe is refused with the same error
    with pytest.raises(AuthenticationError):
        client.conversation.subscribe(lambda e: None)


def test_a_bad_token_is_refused_by_subscribe(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory
) -> None:
    expired = emu.issue_token(alice, ttl=-10)
    client = make_client(expired, listener_options=FAST_LISTENER)

    with pytest.raises(AuthenticationError):
        client.conversation.subscribe(lambda e: None, timeout=WAIT)
    assert isinstance(_error(client), AuthenticationError)


def test_close_from_another_thread_ends_run_forever_and_leaves_no_thread(
    emu: Emulator, alice: Subscriber, bob: Subscriber
) -> None:
    baseline = set(threading.enumerate())
    client = Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, listener_options=FAST_LISTENER)
    got = Collector()
    client.conversation.subscribe(got)
    assert len(_sdk_threads()) >= 3  # reader, dispatcher, watchdog
    outcome: List[BaseException] = []
    returned = threading.Event()

    def run() -> None:
        try:
            client.run_forever()
        except BaseException as exc:  # noqa: B902
            outcome.append(exc)
        returned.set()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "while running")
    got.wait_for(1)
    assert not returned.is_set()

    client.close()

    assert returned.wait(WAIT), "run_forever() did not return after close()"
    runner.join(WAIT)
    assert outcome == []
    assert client.closed and _state(client) is ConnectionState.CLOSED
    assert _error(client) is None
    assert _sdk_threads() == []  # joined by close(), not later
    client.close()  # idempotent
    # the emulator's per-connection threads end once it sees the socket closed
    emu.wait_for(lambda: set(threading.enumerate()) <= baseline, WAIT,
                 message=f"threads left: {set(threading.enumerate()) - baseline}")
