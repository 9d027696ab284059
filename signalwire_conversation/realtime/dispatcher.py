"""The dispatcher thread: delivery in order, gap fills, the state hook.

Takes from the event queue in order: decodes each live message (here, not on the reader, so
decoding never delays an ack), gives it its cursor and offers it to every subscription (each
keeps only what is after its own start and not delivered yet); fills gaps over REST where a
:class:`~.core.Fill` marker says so; tells ``on_state_change``. No lock is held while user code
runs, so a callback may call the client, subscribe or unsubscribe.

Gap fills compare server timestamps with server timestamps only (see ``delivery.py``). A fill
that fails is retried with backoff, each failure reported to ``on_error``, the state
``RECOVERING`` meanwhile; a 401 that reaches it (the token cannot be fixed) is fatal.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence, Tuple

import attrs

from .._logging import get_logger
from ..errors import AuthenticationError, RealtimeError
from ..models import ConversationMessageEvent, decode_event
from .connection import RawEvent
from .core import Begin, Fill, Item, ListenerCore, StateChange
from .delivery import (
    CURSOR_VERSION,
    MILLISECONDS_THRESHOLD,
    Position,
    encode_cursor,
    plan_recovery,
    since_for,
    ts_seconds,
)
from .state import ConnectionState
from .subscription import QueueClosed, Subscription

__all__ = ["DispatcherPart"]

logger = get_logger("signalwire_conversation.realtime")

#: the most queue items the dispatcher takes at once
_DISPATCH_BATCH = 256
#: A message stamped this far past the server's own clock (its pings' timestamps) is delivered
#: but does not move a subscription's gap-fill position (a server bug must not hide what follows)
FUTURE_SLACK = 300.0


class DispatcherPart(ListenerCore):
    """The ``signalwire-dispatcher`` thread of a listener."""

    def _run_dispatcher(self) -> None:
        try:
            get_many = self._queue.get_many
            while True:
                try:
                    items = get_many(_DISPATCH_BATCH)
                except QueueClosed:
                    break
                for item in items:
                    self._handle(item)
        except BaseException as exc:  # a bug of ours: never die silently
            logger.exception("the listener stopped for good: the dispatcher thread failed")
            self._fail(RealtimeError(f"the dispatcher thread failed: {type(exc).__name__}: {exc}"), logged=True)
        finally:
            with self._lock:
                subs = self._subs
                self._subs = ()
                self._state = ConnectionState.CLOSED
            for sub in subs:
                sub._close(discard=False)  # iterators still read what they were handed
            if self._fatal is not None:
                self._report_error(self._fatal, None)
            self._stopped.set()
            self._notify_closed()

    def _begin(self, item: Begin) -> None:
        """A subscription's start is known: deliver what waited, or fetch from its start."""
        sub = item.target
        if not sub.active:
            sub._begun.set()
            return
        if self.stats["connects"] == 0:
            sub._begin(item.start)  # the first connection's fill will include it
            sub._begun.set()
            return
        missed = item.backlog or not item.connected or self.stats["connects"] != item.epoch
        if sub._begin(item.start, hold=missed and item.start is not None) or (missed and item.start is not None):
            # an after= backlog, or the websocket was down (or replaced) while the start was
            # read, or more waited than it may hold: fetch from its start over REST (the
            # fill sets _begun when done)
            sub._held = True
            self._request_fill(Fill("after=" if item.backlog else "subscribe", sub))
        else:
            sub._begun.set()

    def _may_drain(self) -> bool:
        """While closing: whether what was received may still be delivered."""
        return not self._draining_stopped and time.monotonic() < self._drain_deadline

    # ------------------------------------------------------------------------------------------
    # live messages

    def _deliver_raw(self, raw: RawEvent) -> None:
        payload, is_author = raw
        if type(payload) is not dict:
            self._malformed("its payload is not an object")
            return
        message_id = payload.get("id")
        if type(message_id) is not str or not message_id:
            self._malformed("it has no id")
            return
        ts = payload.get("ts")
        if type(ts) is float and ts - ts == 0.0 and ts < MILLISECONDS_THRESHOLD:
            pass  # the common case: finite float seconds
        else:
            ts = ts_seconds(ts)
            if ts is None:
                self._malformed("it has no numeric ts")
                return
        try:
            # the cursor as encode_cursor() writes it (inlined: this runs for every event)
            event = decode_event(payload, is_author=is_author, cursor=f"{CURSOR_VERSION}:{ts!r}:{message_id}")
        except Exception as exc:  # ResponseValidationError, or anything odd: skip, never die
            self.stats["events_skipped"] += 1
            logger.warning(
                "skipping a conversation.message that does not decode: %s: %s", type(exc).__name__, exc
            )
            return
        self._known.learn(event)
        self._dispatch(event, ts)

    def _malformed(self, why: str) -> None:
        """A message that cannot be placed or de-duplicated: acked (by the reader), counted,
        logged (at WARNING the first time), never delivered."""
        self.stats["malformed"] += 1
        if not self._malformed_logged:
            self._malformed_logged = True
            logger.warning(
                "skipping a malformed conversation.message (%s); later ones are counted in "
                "stats['malformed'] and logged at DEBUG",
                why,
            )
        else:
            logger.debug("skipping a malformed conversation.message (%s)", why)

    def _plausible(self, ts: float) -> bool:
        """Whether ``ts`` is not far past the server's clock (unknown before its first ping)."""
        clock = self._server_clock
        if clock is None or ts <= clock[0] + FUTURE_SLACK:
            return True
        return ts <= clock[0] + (time.monotonic() - clock[1]) + FUTURE_SLACK

    def _dispatch(self, event: ConversationMessageEvent, ts: float) -> int:
        """Offer ``event`` to every subscription; how many took it."""
        taken = duplicate = 0
        advance = self._plausible(ts)
        conversation_id = event.conversation_id
        for sub in self._subs:
            group_id = sub.group_id
            if group_id is None or group_id == conversation_id:
                verdict = sub._offer(event, ts, advance)
                if verdict == 1:
                    taken += 1
                elif verdict == 2:
                    duplicate += 1
        if taken:
            self.stats["delivered"] += 1
        elif duplicate:
            self.stats["duplicates"] += 1
        return taken

    # ------------------------------------------------------------------------------------------
    # gap fills

    def _run_fill(self, fill: Fill) -> None:
        started = time.monotonic()
        if fill.target is not None:
            targets: List[Subscription] = [fill.target] if fill.target.active else []
        else:
            # a subscription still waiting for its after= backlog gets everything from it
            targets = [
                s for s in self._subs if not s._held and not s._unknown_start and s._pending is None
            ]
        try:
            if not targets:
                return
            since = since_for((s._position for s in targets), self.gap_overlap)
            fetched = self._fetch_until_done(fill, since)
            if fetched is None:
                self._draining_stopped = True  # closed or fatal: nothing after the gap
                return
            if fill.target is not None:
                sub = fill.target
                sub._held = False  # its backlog is here: from now on it takes messages
                plan = plan_recovery(fetched, after=sub._start, anchor=sub._anchor)
            else:
                plan = plan_recovery(fetched, after=Position())
            delivered = 0
            for ts, event in plan:
                advance = self._plausible(ts)
                if self._closing.is_set() and not self._may_drain():
                    self._draining_stopped = True
                    return
                if not any(s._matches(event) for s in targets):
                    continue
                complete = self._complete(event, ts)
                taken = 0
                for sub in targets:
                    if sub._matches(complete) and sub._offer(complete, ts, advance) == 1:
                        taken += 1
                if taken:
                    delivered += 1
            self.stats["gap_fills"] += 1
            self.stats["recovered"] += delivered
            self.stats["delivered"] += delivered
            logger.info(
                "gap fill (%s): %d message(s) since %.3f (server time) fetched, %d delivered, in %.3fs",
                fill.reason,
                len(fetched),
                since,
                delivered,
                time.monotonic() - started,
            )
        finally:
            if fill.target is not None:
                fill.target._held = False
                fill.target._begun.set()
            self._fill_done(fill)

    def _fetch_until_done(self, fill: Fill, since: float) -> "List[Any] | None":
        """``fetch_missed(since)`` until it succeeds (``None`` when closed or fatal meanwhile)."""
        failures = 0
        while True:
            if self._closing.is_set():
                return None
            try:
                return list(self._fetch_missed(since))
            except AuthenticationError as exc:
                # the transport already asked a token callable for a fresh token: nothing can
                # fix this one, and waiting would stall every live message behind the gap
                self._fail(exc)
                return None
            except Exception as exc:
                self.stats["gap_fill_failures"] += 1
                self._last_error = exc
                delay = self._backoff.delay(failures)
                failures += 1
                logger.warning(
                    "gap fill (%s) failed (attempt %d): %s: %s; retrying in %.2fs",
                    fill.reason,
                    failures,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._report_error(exc, None)
                if self._closing.wait(delay):
                    return None

    def _handle(self, item: Item) -> None:
        """One item of the queue: a raw event, a gap fill, a subscription's beginning or a
        state change (the dispatcher thread's loop and a hub worker's drain share it)."""
        if type(item) is tuple:
            if self._closing.is_set() and not self._may_drain():
                return
            self._deliver_raw(item)
        elif isinstance(item, Fill):
            if self._closing.is_set():
                # what follows is after the gap: delivering it would put the delivered cursor
                # past messages never delivered
                self._draining_stopped = True
                if item.target is not None:
                    item.target._begun.set()
                self._fill_done(item)
                return
            self._run_fill(item)
        elif isinstance(item, Begin):
            self._begin(item)
        elif isinstance(item, StateChange):
            with self._lock:
                self._untold -= 1
            self._call_state_hook(item.state)

    def _fill_done(self, fill: Fill) -> None:
        with self._lock:
            self._pending_fills -= 1
            done = self._pending_fills == 0
        self._transition(
            ConnectionState.CONNECTED,
            only_from=(ConnectionState.RECOVERING, ConnectionState.CONNECTING),
            on_dispatcher=True,
            when_filled=True,
        )
        if done and self._connected_once:
            self._ready.set()  # the first connection's fill is done: subscribe() returns

    def _complete(self, event: ConversationMessageEvent, ts: float) -> ConversationMessageEvent:
        """A recovered event as a live one would be: names (what the listener learned, then
        the ``fill_names`` hook), its cursor, ``recovered`` set."""
        event = self._known.fill(event)
        hook = self._fill_names
        if hook is not None:
            try:
                event = hook(event)
            except Exception:
                logger.exception("the fill_names hook raised; the event keeps the names it has")
        assert event.id is not None
        changes: Dict[str, Any] = {"cursor": encode_cursor(ts, event.id)}
        if not event.recovered:
            changes["recovered"] = True
        return attrs.evolve(event, **changes)

    def _recover_subscription(
        self, subscription: Subscription, after: Position
    ) -> Sequence[Tuple[float, ConversationMessageEvent]]:
        """What one overflowed iterator subscription missed after ``after`` (its consumer's
        thread calls this; nobody else waits for it)."""
        since = since_for([after], self.gap_overlap)
        fetched = list(self._fetch_missed(since))
        out = [
            (ts, self._complete(event, ts))
            for ts, event in plan_recovery(fetched, after=after)
            if subscription._matches(event)
        ]
        self.stats["recovered"] += len(out)
        return out

