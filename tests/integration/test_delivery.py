"""Delivery you can bet on: the realtime guarantees against the emulator, whatever its clock says.

Server clock offsets (``Emulator.clock_offset``) up to an hour either way, a server that ignores
``since``, abrupt drops, a worker process killed and restarted with ``after=``, ``close()`` under
load, REST failures during gap fill, abandoned clients, ``fork()``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

import pytest

from signalwire_conversation import AuthenticationError, Client, ConnectionState, ConversationMessageEvent
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import FAST_LISTENER, WAIT, ClientFactory

from waiting import wait_until  # noqa: E402  (tests/ is on sys.path)


class Recorder:
    """A callback recording events (and an optional pause per event)."""

    def __init__(self, pause: float = 0.0) -> None:
        self.events: List[ConversationMessageEvent] = []
        self.pause = pause
        self._cond = threading.Condition()

    def __call__(self, event: ConversationMessageEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if self.pause:
            time.sleep(self.pause)

    def wait_for(self, count: int, timeout: float = WAIT) -> List[ConversationMessageEvent]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f"got {len(self.events)} of {count} events within {timeout} s")
            return list(self.events)

    @property
    def texts(self) -> List[Optional[str]]:
        with self._cond:
            return [e.text for e in self.events]


def _live(emu: Emulator, who: Subscriber) -> int:
    return sum(1 for c in emu.connections if c.authenticated and c.subscriber is not None and c.subscriber.name == who.name)


def _run_drops(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory,
    *, offset: float, honour_since: bool, drops: int, messages: int,
) -> None:
    emu.clock_offset = offset
    emu.honour_time_filters = honour_since
    # history: stored before subscribe(), some of it inside the gap-fill overlap
    for i in range(30):
        emu.send_message(bob if i % 2 else carol, alice.address_id, f"old-{i}")
    got = Recorder()
    token = emu.issue_token(alice)  # valid by the server's (moved) clock
    client = make_client(token, listener_options=FAST_LISTENER)
    client.conversation.subscribe(got)
    per_round = messages // drops
    texts = [f"m-{i:05d}" for i in range(messages)]
    for k in range(drops):
        wait_until(
            lambda: client.stats["connects"] == k + 1 and _live(emu, alice) == 1, WAIT, f"connection {k + 1} up"
        )
        chunk = texts[k * per_round:(k + 1) * per_round]
        half = len(chunk) // 2
        for i, text in enumerate(chunk):  # two senders, interleaved
            if i == half:
                emu.drop_connections(alice)
            emu.send_message(bob if i % 2 else carol, alice.address_id, text)
    got.wait_for(len(texts), timeout=60)
    wait_until(lambda: client.connection_state is ConnectionState.CONNECTED, WAIT, "connected at the end")
    wait_until(lambda: client._listener is not None and client._listener._pending_fills == 0, WAIT, "the last gap fill")
    assert got.texts == texts  # every one stored after subscribe(), once, in order; none before
    cursors = [e.cursor for e in got.events]
    assert all(cursors) and len(set(cursors)) == len(cursors)
    stats = client.stats
    assert stats["disconnects"] == drops and stats["recovered"] > 0, stats


@pytest.mark.parametrize("honour_since", [True, False], ids=["since", "ignores-since"])
@pytest.mark.parametrize("offset", [-3600.0, 3600.0], ids=["server-1h-behind", "server-1h-ahead"])
def test_drops_with_a_skewed_server_clock_exactly_once_in_order(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory,
    offset: float, honour_since: bool,
) -> None:
    _run_drops(emu, alice, bob, carol, make_client, offset=offset, honour_since=honour_since, drops=5, messages=300)


@pytest.mark.slow
@pytest.mark.parametrize("honour_since", [True, False], ids=["since", "ignores-since"])
@pytest.mark.parametrize("offset", [-3600.0, -60.0, 60.0, 3600.0])
def test_20_drops_during_2000_messages_with_a_skewed_server_clock(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory,
    offset: float, honour_since: bool,
) -> None:
    _run_drops(emu, alice, bob, carol, make_client, offset=offset, honour_since=honour_since, drops=20, messages=2000)


def test_a_worker_killed_mid_stream_resumes_with_after_exactly_once(
    emu: Emulator, alice: Subscriber, bob: Subscriber, tmp_path: Path
) -> None:
    emu.clock_offset = -1800.0
    token = emu.issue_token(alice)
    emu.send_message(bob, alice.address_id, "before the worker")
    log = tmp_path / "handled.log"
    worker = [sys.executable, str(Path(__file__).with_name("delivery_worker.py")), emu.base_url, token, str(log)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def start() -> "subprocess.Popen[str]":
        proc = subprocess.Popen(worker, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def handled() -> List[str]:
        return [line.split(" ", 1)[0] for line in log.read_text().split("\n") if line] if log.exists() else []

    sent: List[str] = []
    first = start()
    try:
        for i in range(200):
            sent.append(emu.send_message(bob, alice.address_id, f"a-{i}")["id"])
        wait_until(lambda: len(handled()) >= 50, WAIT, "the worker handling messages")
        first.send_signal(signal.SIGKILL)  # mid-stream: no chance to clean up
        first.wait(WAIT)
    finally:
        if first.poll() is None:
            first.kill()
    for i in range(500):  # while no worker runs
        sent.append(emu.send_message(bob, alice.address_id, f"b-{i}")["id"])
    second = start()
    try:
        for i in range(50):
            sent.append(emu.send_message(bob, alice.address_id, f"c-{i}")["id"])
        wait_until(lambda: len(handled()) >= len(sent), 30, "every message handled")
    finally:
        second.kill()
        second.wait(WAIT)
    ids = handled()
    assert len(ids) == len(set(ids)), "a message was handled twice across the restart"
    assert ids == sent  # each exactly once, in order, nothing from before the first start


def test_close_under_load_loses_nothing_after_can_recover(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    got = Recorder(pause=0.01)
    client = make_client(alice, listener_options=FAST_LISTENER)
    sub = client.conversation.subscribe(got)
    texts = [f"load-{i}" for i in range(200)]
    emu.send_messages(bob, alice.address_id, texts)
    got.wait_for(10)
    client.close(timeout=0.3)  # as a SIGTERM handler would, mid-stream
    first = got.texts
    assert 10 <= len(first) < len(texts)
    assert sub.cursor == got.events[-1].cursor
    rest = Recorder()
    again = make_client(alice, listener_options=FAST_LISTENER)
    again.conversation.subscribe(rest, after=sub.cursor)
    rest.wait_for(len(texts) - len(first))
    assert first + rest.texts == texts
    assert all(e.recovered for e in rest.events)


def test_gap_fill_with_an_expired_static_token_is_fatal(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    token = emu.issue_token(alice, ttl=1.0)
    states: List[ConnectionState] = []
    client = make_client(token, on_state_change=states.append, listener_options=FAST_LISTENER)
    client.conversation.subscribe(Recorder())
    wait_until(lambda: emu.subscriber(alice) and not emu._store.authenticate(token), WAIT, "the token expired")
    emu.drop_connections(alice)  # the websocket resumes (an expired token may), the REST fill cannot
    emu.send_message(bob, alice.address_id, "missed")
    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        client.run_forever()
    assert time.monotonic() - started < WAIT
    assert isinstance(client.listener_error, AuthenticationError)
    assert client.connection_state is ConnectionState.CLOSED
    wait_until(lambda: states and states[-1] is ConnectionState.CLOSED, WAIT, "CLOSED told")
    assert states.count(ConnectionState.CLOSED) == 1


def test_a_callable_token_is_refreshed_and_the_fill_goes_on(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    tokens = [emu.issue_token(alice, ttl=1.0)]

    def source() -> str:
        if not emu._store.authenticate(tokens[-1]):
            tokens.append(emu.issue_token(alice))
        return tokens[-1]

    got = Recorder()
    client = make_client(source, listener_options=dict(FAST_LISTENER, refresh_margin=0.01))
    client.conversation.subscribe(got)
    wait_until(lambda: not emu._store.authenticate(tokens[0]), WAIT, "the first token expired")
    emu.drop_connections(alice)
    emu.send_message(bob, alice.address_id, "missed")
    got.wait_for(1)
    assert got.texts == ["missed"] and got.events[0].recovered
    assert client.listener_error is None and len(tokens) >= 2


def test_recovering_while_rest_fails_then_the_backlog_in_order(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    states: List[ConnectionState] = []
    errors: List[BaseException] = []
    got = Recorder()
    client = make_client(
        alice,
        max_retries=0,
        on_state_change=states.append,
        on_error=lambda exc, event: errors.append(exc),
        listener_options=FAST_LISTENER,
    )
    client.conversation.subscribe(got)
    emu.send_message(bob, alice.address_id, "first")
    got.wait_for(1)
    emu.fail_next(503, times=3, method="GET", path="^/api/fabric/messages$")
    emu.drop_connections(alice)
    emu.send_message(bob, alice.address_id, "while down")
    wait_until(lambda: client.connection_state is ConnectionState.RECOVERING, WAIT, "RECOVERING")
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "live after")  # waits behind the gap
    got.wait_for(3)
    assert got.texts == ["first", "while down", "live after"]
    assert len(errors) == 3 and client.stats["gap_fill_failures"] == 3
    wait_until(lambda: client.connection_state is ConnectionState.CONNECTED, WAIT, "CONNECTED again")
    assert ConnectionState.RECOVERING in states


def test_recovered_events_say_who_wrote_them_and_keep_learned_names(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    got = Recorder()
    client = make_client(alice, listener_options=FAST_LISTENER)
    client.conversation.subscribe(got)
    emu.send_message(bob, alice.address_id, "live from bob")
    got.wait_for(1)
    emu.stop_pinging(alice)  # a half-open link: what is sent now is only stored
    emu.send_message(alice, bob.address_id, "mine")
    emu.send_message(bob, alice.address_id, "theirs")
    emu.drop_connections(alice)
    events = got.wait_for(3)
    mine, theirs = events[1], events[2]
    assert (mine.text, mine.recovered, mine.is_author) == ("mine", True, True)
    assert (theirs.text, theirs.recovered, theirs.is_author) == ("theirs", True, False)
    # the live event taught the listener bob's name and the conversation's
    assert theirs.user_name == events[0].user_name and theirs.user_name
    assert theirs.conversation_name == events[0].conversation_name and theirs.conversation_name


def test_a_slow_iterator_never_holds_up_a_callback_and_gets_its_overflow(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    fast = Recorder()
    client = make_client(alice, listener_options=dict(FAST_LISTENER, subscription_queue_size=20))
    slow = client.conversation.subscribe()  # nobody reads it for now
    client.conversation.subscribe(fast)
    texts = [f"iso-{i}" for i in range(200)]
    emu.send_messages(bob, alice.address_id, texts)
    fast.wait_for(200)  # not held up by the unread iterator (its queue holds 20)
    assert fast.texts == texts
    read = [slow.get(timeout=WAIT).text for _ in range(200)]
    assert read == texts  # its overflow recovered for it alone, in order
    assert slow.cursor == fast.events[-1].cursor


def test_an_overflow_burst_larger_than_dedup_size_is_delivered_once(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    # a slow callback lets a 20-slot queue overflow during a 300-message burst stamped within the
    # gap fill's overlap; the ids remembered (dedup_size 5) are far fewer than the burst, so only
    # the overlap window of the de-duplication keeps the fill from delivering any again
    got = Recorder(pause=0.002)
    client = make_client(alice, listener_options=dict(FAST_LISTENER, queue_size=20, dedup_size=5))
    client.conversation.subscribe(got)
    texts = [f"burst-{i}" for i in range(300)]
    emu.send_messages(bob, alice.address_id, texts)
    got.wait_for(300)
    # a marker sent last arrives last: anything delivered twice would stand before it
    emu.send_message(bob, alice.address_id, "burst-marker")
    got.wait_for(301)
    assert got.texts == texts + ["burst-marker"]
    assert client.stats["gap_fills"] >= 1  # the queue did overflow


def test_state_hook_one_thread_in_order_nothing_after_closed(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    seen: List[Any] = []
    client = make_client(
        alice,
        on_state_change=lambda s: seen.append((s, threading.current_thread().name)),
        listener_options=FAST_LISTENER,
    )
    client.conversation.subscribe(Recorder())
    for _ in range(3):
        emu.drop_connections(alice)
        wait_until(lambda: client.connection_state is ConnectionState.CONNECTED and _live(emu, alice) == 1, WAIT, "up")
    client.close()
    states = [s for s, _ in seen]
    assert states[-1] is ConnectionState.CLOSED and states.count(ConnectionState.CLOSED) == 1
    assert {name for _, name in seen} == {"signalwire-dispatcher"}
    time.sleep(0.2)  # nothing may come later (a short, bounded look)
    assert [s for s, _ in seen][-1] is ConnectionState.CLOSED and len(seen) == len(states)


def test_subscribe_with_a_bad_token_raises_and_reports_once(
    emu: Emulator, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bad = emu.issue_token(emu.add_subscriber("dora"), ttl=-1.0)
    client = make_client(bad)
    caplog.set_level(logging.DEBUG, logger="signalwire_conversation")
    with pytest.raises(AuthenticationError):
        client.conversation.subscribe(timeout=WAIT)
    stopped = [r for r in caplog.records if "stopped for good" in r.getMessage()]
    # reported once: by the exception subscribe() raised, logged at DEBUG only
    assert [(r.levelno, "(raised from subscribe())" in r.getMessage()) for r in stopped] == [(logging.DEBUG, True)]


def test_stats_are_reachable_from_the_client(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)
    assert client.stats["delivered"] == 0 and client.stats["connects"] == 0
    got = Recorder()
    client.conversation.subscribe(got)
    emu.send_message(bob, alice.address_id, "count me")
    got.wait_for(1)
    stats = client.stats
    assert stats["connects"] == 1 and stats["delivered"] == 1
    stats["delivered"] = 99  # a copy
    assert client.stats["delivered"] == 1


def _listener_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("signalwire-") and t.is_alive()]


def test_a_cell_run_three_times_leaves_one_live_listener(
    emu: Emulator, alice: Subscriber, bob: Subscriber
) -> None:
    got = Recorder()
    namespace: dict = {}
    cell = (
        "client = Client(token, base_url=base_url, listener_options=opts)\n"
        "client.conversation.subscribe(got)\n"
    )
    for _ in range(3):  # a notebook cell, run again and again
        exec(cell, {"Client": Client, "token": alice.token, "base_url": emu.base_url,
                    "opts": FAST_LISTENER, "got": got}, namespace)
    try:
        gc.collect()
        wait_until(lambda: len(_listener_threads()) == 3, WAIT, "one listener's threads left")
        wait_until(lambda: _live(emu, alice) == 1, WAIT, "one live connection left")
        emu.send_message(bob, alice.address_id, "once")
        # a surviving listener would deliver "once" again beside the marker
        emu.send_message(bob, alice.address_id, "marker")
        got.wait_for(2)
        assert got.texts == ["once", "marker"]
    finally:
        namespace["client"].close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_afresh_and_the_parent_keeps_receiving(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    parent_got = Recorder()
    client = make_client(alice, listener_options=FAST_LISTENER)
    client.conversation.subscribe(parent_got)
    to_parent_r, to_parent_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(to_parent_r)
            os.close(go_w)
            state = client.connection_state
            child_got = Recorder()
            client.conversation.subscribe(child_got, timeout=WAIT)
            os.write(to_parent_w, f"{state.value}\n".encode())
            os.read(go_r, 1)  # the parent has sent the message
            event = child_got.wait_for(1)[0]
            os.write(to_parent_w, f"{event.text}\n".encode())
            client.close()
            code = 0
        except BaseException as exc:  # pragma: no cover - reported to the parent
            os.write(to_parent_w, f"error {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    os.close(to_parent_w)
    os.close(go_r)
    reader = os.fdopen(to_parent_r)
    try:
        first = reader.readline().strip()
        assert first in ("idle", "closed", "connecting"), first  # not "connected"
        emu.wait_connected(alice, count=2)  # the parent's link and the child's own
        emu.send_message(bob, alice.address_id, "to both")
        os.write(go_w, b"x")
        assert reader.readline().strip() == "to both"
        parent_got.wait_for(1)
        assert parent_got.texts == ["to both"]
        assert client.connection_state is ConnectionState.CONNECTED
    finally:
        os.close(go_w)
        reader.close()
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_a_subscription_whose_start_cannot_be_read_starts_at_its_first_live_message(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    errors: List[BaseException] = []
    got = Recorder()
    client = make_client(alice, max_retries=0, on_error=lambda exc, event: errors.append(exc),
                         listener_options=FAST_LISTENER)
    emu.send_message(bob, alice.address_id, "history")
    emu.fail_next(503, times=1, method="GET", path="^/api/fabric/messages$")
    client.conversation.subscribe(got)  # does not fail: reported instead
    assert len(errors) == 1
    emu.send_message(bob, alice.address_id, "first live")
    got.wait_for(1)
    assert got.texts == ["first live"]


def test_after_must_be_a_cursor(make_client: ClientFactory, alice: Subscriber) -> None:
    from signalwire_conversation import ValidationError

    client = make_client(alice)
    with pytest.raises(ValidationError, match="after"):
        client.conversation.subscribe(after="not a cursor")
    assert client.stats["connects"] == 0  # refused before anything was sent


@pytest.mark.parametrize("offset", [-3600.0, 3600.0], ids=["server-1h-behind", "server-1h-ahead"])
def test_token_refresh_is_timed_by_the_server_clock(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, offset: float
) -> None:
    emu.clock_offset = offset
    emu.ping_interval = 0.1
    issued: List[str] = []

    def source() -> str:
        issued.append(emu.issue_token(alice, ttl=4.0))
        return issued[-1]

    client = make_client(source, listener_options=dict(FAST_LISTENER, refresh_margin=1.0))
    client.conversation.subscribe(Recorder())
    started = time.monotonic()
    listener = client._listener
    assert listener is not None
    wait_until(lambda: listener._server_clock is not None, WAIT, "a server ping")
    # before the first ping the local clock decides (documented), so a refresh may have run in
    # that window on a loaded machine; from the first ping on, the server's clock decides: by
    # the local clock the token looks an hour expired (or an hour away), neither is true
    learned = client.stats["token_refreshes"]
    time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    assert client.stats["token_refreshes"] == learned
    wait_until(lambda: client.stats["token_refreshes"] >= learned + 1, WAIT, "a refresh before the token expires")
    assert client.listener_error is None


def test_a_slow_start_read_misses_nothing_stored_after_subscribe_returns(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    emu.send_message(bob, alice.address_id, "before")
    emu.latency = 0.3  # every REST answer late: the websocket is up before the start is read
    got = Recorder()
    client = make_client(alice, listener_options=FAST_LISTENER)
    done = threading.Event()
    threading.Thread(target=lambda: (client.conversation.subscribe(got), done.set()), daemon=True).start()
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "during")  # stored during subscribe(): either way
    assert done.wait(WAIT)
    assert client.connection_state is ConnectionState.CONNECTED
    emu.latency = 0.0
    emu.send_message(bob, alice.address_id, "after")
    got.wait_for(1)
    wait_until(lambda: "after" in got.texts, WAIT, "the message stored after subscribe() returned")
    assert "before" not in got.texts and got.texts[-1] == "after"
    assert len(got.texts) == len(set(got.texts))


def test_a_slow_iterators_recovery_is_retried_when_rest_fails(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    errors: List[BaseException] = []
    client = make_client(alice, max_retries=0, on_error=lambda exc, event: errors.append(exc),
                         listener_options=dict(FAST_LISTENER, subscription_queue_size=10))
    slow = client.conversation.subscribe()
    texts = [f"r-{i}" for i in range(40)]
    emu.send_messages(bob, alice.address_id, texts)
    wait_until(lambda: slow.dropped > 0, WAIT, "the iterator's queue overflowed")
    emu.wait_for(lambda: not emu.unacked_events(alice), timeout=WAIT)  # all 40 arrived live
    emu.fail_next(503, times=1, method="GET", path="^/api/fabric/messages$")
    read = [slow.get(timeout=WAIT).text for _ in range(40)]
    assert read == texts
    assert len(errors) == 1  # the failed recovery was reported, then tried again
