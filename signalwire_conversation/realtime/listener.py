"""The listener: the public face of the realtime client, and its lifecycle.

:class:`Listener` puts the parts together (each in its own module, all over the shared state of
:class:`~.core.ListenerCore`):

``reader`` (``reader.py``)
    Owns the websocket: connects, reconnects with backoff, authenticates, acks, reads, queues.
``dispatcher`` (``dispatcher.py``)
    Delivers in order, fills gaps over REST, tells the state hook.
``token-refresh`` (``refresher.py``, only with a callable token)
    Refreshes the token on the live socket before it expires.
``watchdog`` (``watchdog.py``)
    Closes a socket whose reader is stuck inside a frame or a handshake.

The threads are daemon threads named ``signalwire-*``, started by the first ``subscribe()`` or
``run_forever()``, never by the constructor. Pure delivery decisions (positions, cursors, gap-fill
planning) are in ``delivery.py``. See docs/realtime.md for the guarantees.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import weakref
from typing import Callable, Iterable, List, Optional, Tuple, Union

from .._logging import get_logger
from ..config import TokenProvider
from ..errors import AuthenticationError, RealtimeError, SignalWireError, ValidationError
from ..models import ConversationMessageEvent
from .backoff import Backoff
from .connection import AGENT, DEFAULT_MAX_MESSAGE_BYTES, shutdown_socket
from .core import Begin, FetchLatest, FetchMissed, Item, NameFiller, StateHook, count, positive, wait_arg
from .delivery import Position, decode_cursor, position_of_newest
from .dispatcher import DispatcherPart
from .names import KnownNames
from .reader import ReaderPart
from .refresher import RefresherPart
from .state import ConnectionState
from .subscription import BoundedQueue, Callback, ErrorHook, Subscription
from .watchdog import WatchdogPart

__all__ = ["Listener", "FetchMissed", "FetchLatest", "NameFiller", "StateHook"]

logger = get_logger("signalwire_conversation.realtime")

#: The share of close()'s timeout spent delivering what was received (the rest: joining).
_DRAIN_SHARE = 0.8
#: How many of the newest messages ``subscribe()`` reads to learn the server's "now".
LATEST_PROBE = 5

_STAT_NAMES = (
    "connects",
    "resumes",
    "resumes_refused",
    "connect_failures",
    "disconnects",
    "dead_links",
    "events_received",
    "events_skipped",
    "malformed",
    "delivered",
    "duplicates",
    "recovered",
    "gap_fills",
    "gap_fill_failures",
    "dropped_on_overflow",
    "callback_errors",
    "token_refreshes",
)


class Listener(ReaderPart, DispatcherPart, RefresherPart, WatchdogPart):
    """Receives new messages over the websocket and hands them to subscriptions.

    Built by the ``Client`` on the first ``subscribe()``; may also be used on its own::

        listener = Listener(tokens=TokenProvider(token), relay_url=url, fetch_missed=fetch)
        with listener.subscribe(print):
            listener.run_forever()

    Args:
        tokens: the token source (a callable source enables refresh).
        relay_url: the websocket URL (``wss://...``; ``ws://`` for loopback).
        fetch_missed: gap fill, ``fetch_missed(since)`` returns every message with server
            ``ts >= since`` (seconds since the epoch), newest first as the REST lists give
            them; it may raise (an ``AuthenticationError`` is fatal, anything else is retried).
        fetch_latest: the newest few stored messages, newest first (how ``subscribe()`` learns
            the server's "now"); default: the first ``LATEST_PROBE`` of ``fetch_missed(0)``.
        fill_names: called with each recovered event after the names learned from live events
            were filled in; returns the event with what else it can fill (a directory lookup).
        on_error: ``on_error(exc, event)`` is called with what a callback raised and the event
            it was handling; also with ``event=None`` for each failed gap fill and for the
            fatal error that closes the listener.
        on_state_change: called with each new :class:`ConnectionState`, always from the
            dispatcher thread, in order, ``CLOSED`` last.
        verify: TLS verification, as in ``requests``: ``True``, ``False`` or a CA bundle path.
        ping_timeout: the dead-link bound: when no frame at all (not even a server ping) came
            for this many seconds, the link is closed and replaced. Default 20 s.
        connect_timeout: bound on opening the socket and on the ``signalwire.connect`` answer.
        backoff_initial, backoff_max: reconnect (and gap-fill retry) waits,
            ``uniform(0, min(max, initial * 2**n))`` after the n-th consecutive failure; the
            first reconnect after a drop waits ``uniform(0, initial)``.
        queue_size: capacity of the event queue between the reader and the dispatcher; when
            full, live events are dropped and recovered by a gap fill (docs/realtime.md).
        subscription_queue_size: capacity of each iterator subscription's queue.
        gap_overlap: server seconds fetched before a subscription's last delivered message
            when filling a gap (for messages the server stamped slightly out of order).
        dedup_size: how many recent message ids each subscription remembers at least (more
            while they are within ``gap_overlap`` of the newest: a gap fill's re-read overlap
            is always recognised, whatever the rate).
        refresh_margin: with a callable token, refresh this long before expiry (at most half
            of the token's remaining lifetime).
        max_message_bytes: the largest websocket message accepted (8 MiB); a bigger one
            closes and replaces the link.
        agent: the ``agent`` string sent in ``signalwire.connect``.
    """

    def __init__(
        self,
        *,
        tokens: TokenProvider,
        relay_url: str,
        fetch_missed: FetchMissed,
        fetch_latest: Optional[FetchLatest] = None,
        fill_names: Optional[NameFiller] = None,
        on_error: Optional[ErrorHook] = None,
        on_state_change: Optional[StateHook] = None,
        verify: Union[bool, str] = True,
        ping_timeout: float = 20.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 15.0,
        queue_size: int = 10_000,
        subscription_queue_size: int = 10_000,
        gap_overlap: float = 2.0,
        dedup_size: int = 10_000,
        refresh_margin: float = 60.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        agent: str = AGENT,
    ) -> None:
        if not callable(fetch_missed):
            raise ValidationError("fetch_missed", "must be a callable taking `since` (seconds)")
        if fetch_latest is not None and not callable(fetch_latest):
            raise ValidationError("fetch_latest", "must be a callable taking no argument, or None")
        if fill_names is not None and not callable(fill_names):
            raise ValidationError("fill_names", "must be a callable taking an event, or None")
        if not isinstance(relay_url, str) or not relay_url.lower().startswith(("ws://", "wss://")):
            raise ValidationError("relay_url", f"must be a ws:// or wss:// URL, got {relay_url!r}")
        self._tokens = tokens
        self.relay_url = relay_url
        self._fetch_missed = fetch_missed
        self._fetch_latest = fetch_latest if fetch_latest is not None else self._latest_of_missed
        self._fill_names = fill_names
        self._on_error = on_error
        self._on_state_change = on_state_change
        self._verify = verify
        self.ping_timeout = positive("ping_timeout", ping_timeout)
        self.connect_timeout = positive("connect_timeout", connect_timeout)
        self._backoff = Backoff(
            positive("backoff_initial", backoff_initial),
            max(positive("backoff_max", backoff_max), float(backoff_initial)),
        )
        self._queue_size = count("queue_size", queue_size)
        self._subscription_queue_size = count("subscription_queue_size", subscription_queue_size)
        if isinstance(gap_overlap, bool) or not isinstance(gap_overlap, (int, float)) or gap_overlap < 0:
            raise ValidationError("gap_overlap", f"must be a number of seconds >= 0, got {gap_overlap!r}")
        self.gap_overlap = float(gap_overlap)
        self._dedup_size = count("dedup_size", dedup_size)
        self._refresh_margin = positive("refresh_margin", refresh_margin)
        self._max_message_bytes = count("max_message_bytes", max_message_bytes)
        self._agent = agent
        self._init_runtime()
        _LIVE.add(self)

    def _init_runtime(self) -> None:
        """The state of one run (made again in a forked child: no lock or thread is shared)."""
        self._lock = threading.Lock()
        self._state = ConnectionState.IDLE
        self._threads: List[threading.Thread] = []
        self._subs: Tuple[Subscription, ...] = ()
        self._queue: BoundedQueue[Item] = BoundedQueue(self._queue_size)
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._connected_once = False
        self._stopped = threading.Event()
        self._refresh_kick = threading.Event()
        self._watch_kick = threading.Event()
        self._opening = None
        self._closed_notified = False
        self._fatal = None
        self._last_error = None
        self._run_forever_callers = 0
        self._subscribe_waiters = 0
        self._pending_fills = 0
        self._untold = 0
        self._drain_deadline = math.inf
        self._known = KnownNames()
        self._server_clock = None
        # reader-thread state
        self._conn = None
        self._protocol = None
        self._authorization_state = None
        self._project_id = None
        self._expires_at = None
        self._token_lifetime = None
        self._refreshed_since_success = False
        self._handshake_buffer = None
        self._overflowed = False
        self._low_water = max(1, self._queue_size // 2)
        self._last_refresh_at = 0.0
        # dispatcher-thread state
        self._malformed_logged = False
        self._draining_stopped = False
        #: Counters (read them for monitoring; they only grow).
        self.stats = dict.fromkeys(_STAT_NAMES, 0)

    def _latest_of_missed(self) -> Iterable[ConversationMessageEvent]:
        return itertools.islice(self._fetch_missed(0.0), LATEST_PROBE)

    # ------------------------------------------------------------------------------------------
    # public API


    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def last_error(self) -> Optional[BaseException]:
        """The last connection error seen (for diagnostics; ``None`` when there was none)."""
        return self._last_error

    @property
    def error(self) -> Optional[SignalWireError]:
        """The fatal error that stopped the listener for good (a refused token that cannot be
        refreshed, or a bug of ours); ``None`` while it runs and after a plain :meth:`close`.

        Set before the state becomes ``CLOSED``, so an ``on_state_change`` hook (or a poll of
        :attr:`state`) seeing ``CLOSED`` can tell "died" (``error`` is set) from "closed"
        (``None``). :meth:`run_forever` re-raises it.
        """
        return self._fatal

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the listener has stopped (closed, or died: see :attr:`error`), at most
        ``timeout`` seconds (``None``: no limit); ``True`` when it has stopped."""
        return self._stopped.wait(wait_arg(timeout))

    def subscribe(
        self,
        callback: Optional[Callback] = None,
        *,
        group_id: Optional[str] = None,
        timeout: float = 15.0,
        after: Optional[str] = None,
    ) -> Subscription:
        """Start receiving new messages; blocks until connected and authenticated.

        With ``callback``, it is called once per message on the dispatcher thread; without
        one, the returned :class:`Subscription` is a blocking iterator / queue. ``group_id``
        keeps only one conversation's messages. The threads start on the first call.

        Without ``after``, the subscription delivers the messages stored after this call
        (it asks the server for its newest message to know where that is: one REST call);
        with ``after=cursor`` (an event's :attr:`~ConversationMessageEvent.cursor`), first
        every message stored after that one, in order, then the live ones (``RECOVERING``
        while the backlog is read).

        Once the listener has been connected, later calls return without waiting for the link
        (during a reconnect too: missed messages are filled in when the link is back).

        Raises:
            ValidationError: a bad argument (``after`` that is not a cursor, say).
            AuthenticationError: the token was refused (bad, expired or revoked).
            RealtimeError: not connected within ``timeout`` seconds (the listener keeps
                trying in the background), or the listener is closed.
            AuthenticationError: also when the REST call that finds the server's newest message
                is refused. When that call fails otherwise, the subscription starts at the
                first live message it receives (logged, and passed to ``on_error``).
        """
        if callback is not None and not callable(callback):
            raise ValidationError("callback", f"must be callable or None, got {type(callback).__name__}")
        if group_id is not None and (not isinstance(group_id, str) or not group_id):
            raise ValidationError("group_id", f"must be a non-empty string or None, got {group_id!r}")
        start: Optional[Position] = None
        anchor: Optional[str] = None
        if after is not None:
            try:
                ts, anchor = decode_cursor(after)
            except ValueError as exc:
                raise ValidationError("after", str(exc)) from None
            start = Position(ts, (anchor,))
        wait = positive("timeout", timeout)
        sub = Subscription(
            self,
            callback,
            group_id=group_id,
            maxsize=self._subscription_queue_size,
            start=start if start is not None else Position(),
            after=after,
            anchor=anchor,
            dedup_size=self._dedup_size,
            dedup_window=self.gap_overlap + 1.0,  # a fill re-reads gap_overlap before the position
            pending=True,
        )
        # Registered before anything else, so that no message stored from now on can pass it
        # by: live ones wait in it until its start is known (the Begin marker below). Whether
        # the websocket may have missed some since the start is read is decided by the
        # dispatcher from the connection count taken here.
        with self._lock:
            self._raise_if_stopped()
            self._subs = self._subs + (sub,)
            self._start_locked()
            self._subscribe_waiters += 1
            epoch = self.stats["connects"]
            connected = self._state in (ConnectionState.CONNECTED, ConnectionState.RECOVERING)
        refused: Optional[AuthenticationError] = None
        try:
            known = start
            if after is None:
                try:
                    # the server's "now": what is stored before it is not this subscription's
                    known = position_of_newest(self._fetch_latest())
                except AuthenticationError as exc:
                    refused = exc  # raised below, unless the websocket refuses the token first
                except Exception as exc:
                    logger.warning(
                        "subscribe(): could not read the server's newest message (%s: %s); this "
                        "subscription starts at the first live message it receives instead",
                        type(exc).__name__,
                        exc,
                    )
                    self._report_error(exc, None)
            if refused is None:
                self._queue.force(Begin(sub, known, epoch=epoch, connected=connected, backlog=after is not None))
            deadline = time.monotonic() + wait
            self._wait_ready(wait)
            if refused is not None:
                raise refused
            if after is None and not self._on_dispatcher():
                # until it delivers from its start (a short fill when the link was not up
                # while the start was read); an after= backlog is not waited for
                if not sub._begun.wait(wait_arg(max(0.0, deadline - time.monotonic()))):
                    raise RealtimeError(
                        f"the subscription could not start within {wait:g}s (the messages since "
                        f"its start could not be fetched over REST; last error: {self._last_error})"
                    )
                self._raise_if_stopped()
        except BaseException:
            sub.unsubscribe()
            raise
        finally:
            with self._lock:
                self._subscribe_waiters -= 1
        return sub

    def start(self, timeout: Optional[float] = None) -> None:
        """Start the threads without subscribing; with ``timeout``, wait for the connection as
        :meth:`subscribe` does."""
        with self._lock:
            self._raise_if_stopped()
            self._start_locked()
        if timeout is not None:
            self._wait_ready(positive("timeout", timeout))

    def run_forever(self) -> None:
        """Block until :meth:`close` (from another thread or a callback) or Ctrl+C.

        Ctrl+C closes the listener cleanly and returns. A fatal error (a token refused with
        no way to refresh it) is re-raised here (and then logged only at WARNING, since the
        caller gets it: see :attr:`error`).
        """
        with self._lock:
            self._run_forever_callers += 1
            if not self._closing.is_set():
                self._start_locked()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            logger.info("interrupted: closing the listener")
            self.close()
            return
        finally:
            with self._lock:
                self._run_forever_callers -= 1
        if self._fatal is not None:
            raise self._fatal


    def close(self, timeout: float = 5.0) -> None:
        """Stop everything: idempotent, safe from any thread (a callback included).

        Sets the stop flag first and closes the socket (nothing more is received or acked),
        then lets the dispatcher deliver what was already received, for at most ``timeout``
        seconds in all, ends every subscription (an iterator still yields what it was handed,
        then stops) and joins every thread. What could not be delivered is after the last
        delivered event's ``cursor``: ``subscribe(after=cursor)`` gets it.
        """
        limit = wait_arg(timeout)
        with self._lock:
            self._closing.set()
            self._state = ConnectionState.CLOSED
            conn = self._conn
            threads = list(self._threads)
            if limit is not None:
                # delivery stops a little before the bound, so that a callback running at that
                # moment can still return before the threads are joined
                self._drain_deadline = min(self._drain_deadline, time.monotonic() + limit * _DRAIN_SHARE)
            if not threads:
                subs, self._subs = self._subs, ()
            else:
                subs = ()
        self._refresh_kick.set()
        self._watch_kick.set()
        self._ready.set()
        opening = self._opening
        if opening is not None:
            shutdown_socket(opening[0])
        if conn is not None:
            conn.abort()
        self._queue.close(discard=False)  # the dispatcher delivers what it may, then exits
        for sub in subs:
            sub._close(discard=False)
        deadline = None if limit is None else time.monotonic() + limit
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive() and t is not me]
        if alive:
            logger.warning(
                "close(): %s still running after %ss (a callback that does not return?)",
                ", ".join(alive),
                timeout,
            )
        self._stopped.set()
        if not threads:
            self._notify_closed()  # no dispatcher ever ran to tell it

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Listener(relay_url={self.relay_url!r}, state={self._state.value})"

    # ------------------------------------------------------------------------------------------
    # lifecycle helpers

    def _raise_if_stopped(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing.is_set():
            raise RealtimeError("the listener is closed")

    def _start_locked(self) -> None:
        if self._threads:
            return
        targets: List[Tuple[str, Callable[[], None]]] = [
            ("signalwire-reader", self._run_reader),
            ("signalwire-dispatcher", self._run_dispatcher),
            ("signalwire-watchdog", self._run_watchdog),
        ]
        if self._tokens.refreshable:
            targets.append(("signalwire-token-refresh", self._run_refresher))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def _on_dispatcher(self) -> bool:
        return bool(self._threads) and threading.current_thread() is self._threads[1]

    def _wait_ready(self, timeout: float) -> None:
        if self._on_dispatcher():
            return  # a callback during the first connection's fill: the dispatcher cannot wait
        if not self._ready.wait(wait_arg(timeout)):
            last = f": last error: {self._last_error}" if self._last_error is not None else ""
            if self._connected_once:
                raise RealtimeError(
                    f"connected to {self.relay_url}, but the messages stored since the "
                    f"subscription started could not be fetched over REST within {timeout:g}s"
                    f"{last} (the listener keeps retrying in the background)"
                )
            raise RealtimeError(
                f"could not connect to {self.relay_url} within {timeout:g}s{last} "
                "(the listener keeps retrying in the background)"
            )
        if self._fatal is not None:
            raise self._fatal
        if not self._connected_once:
            raise RealtimeError("the listener is closed")


    # ------------------------------------------------------------------------------------------
    # fork

    def _forget_parent(self) -> bool:
        """In a forked child: this process has none of the parent's threads, so start afresh
        (``IDLE``, no subscription, fresh locks; the parent's socket is left alone). A closed
        listener stays closed. Returns whether the parent had subscriptions here."""
        if self._closing.is_set():
            self._lock = threading.Lock()
            return False
        had_subs = bool(self._subs)
        for sub in self._subs:
            sub._forget_parent()
        self._init_runtime()
        return had_subs


#: every listener of this process, for the at-fork hook (weak: it keeps none alive)
_LIVE: "weakref.WeakSet[Listener]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    forgotten = 0
    for listener in list(_LIVE):
        if listener._forget_parent():
            forgotten += 1
    if forgotten:
        logger.warning(
            "this process was forked from one with %d subscribed realtime listener(s): the "
            "subscriptions stay in the parent (N forked workers each receiving every message "
            "would be N-fold duplicates); a client here reconnects on its first subscribe(). "
            "To share one stream among processes, use the Redis relay (docs/fanout.md)",
            forgotten,
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
