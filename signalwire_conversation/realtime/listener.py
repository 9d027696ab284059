"""The listener: threads, the event queue, reconnects with backoff, gap fill, dispatch.

Threads (all daemon, all named ``signalwire-*``; started by the first ``subscribe()`` or
``run_forever()``, never by the constructor):

``reader``
    Owns the websocket. Connects (and reconnects forever, capped exponential backoff with full
    jitter), authenticates (resume, or fresh when a resume is refused), reads frames, acks
    events, answers pings, watches liveness, and puts decoded messages on the bounded event
    queue. It never runs a subscription callback or hook. (It may call the token callable
    while the link is down, to get a fresh token for a fresh connect.)
``dispatcher``
    Takes from the event queue in order: de-duplicates by message id, fills gaps over REST
    after a reconnect, and calls the callbacks (each wrapped) and the hooks. No lock is held
    while user code runs, so a callback may call the client, subscribe or unsubscribe.
``token-refresh`` (only with a callable token)
    Gets a fresh token shortly before the current one expires and sends
    ``signalwire.reauthenticate`` on the live socket.

See docs/realtime.md for the guarantees this gives.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

from .._logging import get_logger
from ..config import TokenProvider
from ..errors import AuthenticationError, RealtimeError, SignalWireError, ValidationError
from ..models import ConversationMessageEvent, decode_event
from .backoff import Backoff
from .connection import (
    AGENT,
    DEFAULT_MAX_MESSAGE_BYTES,
    Connection,
    ConnectFatal,
    ConnectionLost,
    ConnectRefused,
    RawEvent,
    connect_params,
    is_auth_refusal,
    project_id_of,
    shutdown_socket,
    token_expiry,
)
from .delivery import RecentIds, gap_since, plan_gap_fill, ts_seconds
from .state import ConnectionState
from .subscription import BoundedQueue, Callback, ErrorHook, QueueClosed, Subscription

__all__ = ["Listener", "FetchMissed", "StateHook"]

logger = get_logger("signalwire_conversation.realtime")

#: Gap fill: every message with ``ts >= since`` (seconds), in any order; may raise.
FetchMissed = Callable[[float], Iterable[ConversationMessageEvent]]
#: ``on_state_change(state)``.
StateHook = Callable[[ConnectionState], Any]


class _Fill:
    """Queue marker: fill the gap over REST before delivering what follows."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _StateChange:
    """Queue marker: tell ``on_state_change`` (in order with the messages)."""

    __slots__ = ("state",)

    def __init__(self, state: ConnectionState) -> None:
        self.state = state


#: what the reader queues: live messages as read (decoded by the dispatcher), and markers
_Item = Union[RawEvent, _Fill, _StateChange]
#: the most queue items the dispatcher takes at once
_DISPATCH_BATCH = 256


class _Fatal(Exception):
    def __init__(self, error: SignalWireError) -> None:
        super().__init__(str(error))
        self.error = error


class _RetryNow(Exception):
    """Connect again at once (a refused resume, falling back to a fresh connect)."""


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(name, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _wait_arg(timeout: Optional[float]) -> Optional[float]:
    """A timeout ``threading`` accepts: ``inf`` (or anything past TIMEOUT_MAX) waits forever."""
    if timeout is None or timeout >= threading.TIMEOUT_MAX:
        return None
    return max(0.0, timeout)


#: A live ``ts`` older than the first connection by more than this does not move the gap-fill
#: watermark (it is implausible: a server bug or a zero timestamp).
_IMPLAUSIBLY_OLD = 300.0
#: How long past ``ping_timeout`` the watchdog thread waits before it aborts a reader stuck
#: inside one frame (trickled or endless); the reader itself notices silence on time.
_WATCHDOG_GRACE = 1.0


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(name, f"must be a positive integer, got {value!r}")
    return value


class Listener:
    """Receives new messages over the websocket and hands them to subscriptions.

    Built by the ``Client`` on the first ``subscribe()``; may also be used on its own::

        listener = Listener(tokens=TokenProvider(token), relay_url=url, fetch_missed=fetch)
        with listener.subscribe(print):
            listener.run_forever()

    Args:
        tokens: the token source (a callable source enables refresh).
        relay_url: the websocket URL (``wss://...``; ``ws://`` for loopback).
        fetch_missed: gap fill, ``fetch_missed(since)`` returns every message with
            ``ts >= since`` (seconds since the epoch) in any order; it may raise.
        on_error: ``on_error(exc, event)`` is called (on the dispatcher thread) with what a
            callback raised and the event it was handling; also with ``event=None`` for a
            failed gap fill and for the fatal error that closes the listener.
        on_state_change: called with each new :class:`ConnectionState`, on the dispatcher
            thread in order with the messages (``CLOSED`` possibly from ``close()``'s thread).
        verify: TLS verification, as in ``requests``: ``True``, ``False`` or a CA bundle path.
        ping_timeout: the dead-link bound: when no frame at all (not even a server ping) came
            for this many seconds, the link is closed and replaced. Default 20 s.
        connect_timeout: bound on opening the socket and on the ``signalwire.connect`` answer.
        backoff_initial, backoff_max: reconnect waits, ``uniform(0, min(max, initial * 2**n))``
            after the n-th consecutive failure; the first reconnect after a drop waits
            ``uniform(0, initial)``.
        queue_size: capacity of the event queue between the reader and the dispatcher; when
            full, live events are dropped and recovered by a gap fill (docs/realtime.md).
        subscription_queue_size: capacity of each iterator subscription's queue.
        gap_overlap: seconds subtracted from the last delivered ``ts`` when filling a gap.
        dedup_size: how many recent message ids are remembered for de-duplication.
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
        if not isinstance(relay_url, str) or not relay_url.lower().startswith(("ws://", "wss://")):
            raise ValidationError("relay_url", f"must be a ws:// or wss:// URL, got {relay_url!r}")
        self._tokens = tokens
        self.relay_url = relay_url
        self._fetch_missed = fetch_missed
        self._on_error = on_error
        self._on_state_change = on_state_change
        self._verify = verify
        self.ping_timeout = _positive("ping_timeout", ping_timeout)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self._backoff = Backoff(
            _positive("backoff_initial", backoff_initial),
            max(_positive("backoff_max", backoff_max), float(backoff_initial)),
        )
        self._queue_size = _count("queue_size", queue_size)
        self._subscription_queue_size = _count("subscription_queue_size", subscription_queue_size)
        if isinstance(gap_overlap, bool) or not isinstance(gap_overlap, (int, float)) or gap_overlap < 0:
            raise ValidationError("gap_overlap", f"must be a number of seconds >= 0, got {gap_overlap!r}")
        self.gap_overlap = float(gap_overlap)
        self._refresh_margin = _positive("refresh_margin", refresh_margin)
        self._max_message_bytes = _count("max_message_bytes", max_message_bytes)
        self._agent = agent

        self._lock = threading.Lock()
        self._state = ConnectionState.IDLE
        self._threads: List[threading.Thread] = []
        self._subs: Tuple[Subscription, ...] = ()
        self._queue: BoundedQueue[_Item] = BoundedQueue(self._queue_size)
        self._closing = threading.Event()  # the stop flag: set first by close() and on fatal
        self._ready = threading.Event()  # connected once, or stopped: wakes subscribe()
        self._connected_once = False
        self._stopped = threading.Event()  # fully stopped: wakes run_forever()
        self._refresh_kick = threading.Event()
        self._watch_kick = threading.Event()
        self._opening: Optional[Tuple[Any, float]] = None  # (websocket, monotonic start)
        self._closed_notified = False
        self._fatal: Optional[SignalWireError] = None
        self._last_error: Optional[BaseException] = None
        self._run_forever_callers = 0  # threads blocked in run_forever() (they re-raise a fatal)

        # reader-thread state
        self._conn: Optional[Connection] = None
        self._protocol: Optional[str] = None
        self._authorization_state: Optional[str] = None
        self._project_id: Optional[str] = None
        self._expires_at: Optional[float] = None
        self._token_lifetime: Optional[float] = None
        self._refreshed_since_success = False
        self._handshake_buffer: Optional[List[RawEvent]] = None
        self._overflowed = False
        self._low_water = max(1, self._queue_size // 2)
        self._first_connected_at: Optional[float] = None  # wall clock, for the first gap
        self._last_refresh_at = 0.0

        # dispatcher-thread state
        self._recent = RecentIds(_count("dedup_size", dedup_size))
        self._last_ts: Optional[float] = None

        #: Counters (read them for monitoring; they only grow).
        self.stats = {
            "connects": 0,
            "resumes": 0,
            "resumes_refused": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "dead_links": 0,
            "events_received": 0,
            "events_skipped": 0,
            "delivered": 0,
            "duplicates": 0,
            "recovered": 0,
            "gap_fills": 0,
            "gap_fill_failures": 0,
            "dropped_on_overflow": 0,
            "callback_errors": 0,
            "token_refreshes": 0,
        }

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
        return self._stopped.wait(_wait_arg(timeout))

    def subscribe(
        self,
        callback: Optional[Callback] = None,
        *,
        group_id: Optional[str] = None,
        timeout: float = 15.0,
    ) -> Subscription:
        """Start receiving new messages; blocks until connected and authenticated.

        With ``callback``, it is called once per message on the dispatcher thread; without
        one, the returned :class:`Subscription` is a blocking iterator / queue. ``group_id``
        keeps only one conversation's messages. The threads start on the first call.

        Once the listener has been connected, later calls return at once (during a reconnect
        too: missed messages are filled in when the link is back).

        Raises:
            AuthenticationError: the token was refused (bad, expired or revoked).
            RealtimeError: not connected within ``timeout`` seconds (the listener keeps
                trying in the background), or the listener is closed.
        """
        if callback is not None and not callable(callback):
            raise ValidationError("callback", f"must be callable or None, got {type(callback).__name__}")
        if group_id is not None and (not isinstance(group_id, str) or not group_id):
            raise ValidationError("group_id", f"must be a non-empty string or None, got {group_id!r}")
        wait = _positive("timeout", timeout)
        sub = Subscription(self, callback, group_id=group_id, maxsize=self._subscription_queue_size)
        with self._lock:
            self._raise_if_stopped()
            self._subs = self._subs + (sub,)
            self._start_locked()
        try:
            self._wait_ready(wait)
        except BaseException:
            sub.unsubscribe()
            raise
        return sub

    def start(self, timeout: Optional[float] = None) -> None:
        """Start the threads without subscribing; with ``timeout``, wait for the connection as
        :meth:`subscribe` does."""
        with self._lock:
            self._raise_if_stopped()
            self._start_locked()
        if timeout is not None:
            self._wait_ready(_positive("timeout", timeout))

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

        Sets the stop flag first, closes the socket so a blocked read returns, ends every
        subscription (iterators stop), then joins every thread for at most ``timeout``
        seconds in total. Messages still queued are dropped.
        """
        with self._lock:
            self._closing.set()
            self._state = ConnectionState.CLOSED
            conn = self._conn
            subs = self._subs
            self._subs = ()
            threads = list(self._threads)
        self._refresh_kick.set()
        self._watch_kick.set()
        self._ready.set()
        opening = self._opening
        if opening is not None:
            shutdown_socket(opening[0])
        if conn is not None:
            conn.abort()
        # queued messages are dropped; queued state changes are still told (before CLOSED)
        self._queue.close(discard=True, keep=lambda item: isinstance(item, _StateChange))
        for sub in subs:
            sub._close(discard=True)
        limit = _wait_arg(timeout)
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
        self._notify_closed()

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

    def _wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(_wait_arg(timeout)):
            last = f": last error: {self._last_error}" if self._last_error is not None else ""
            raise RealtimeError(
                f"could not connect to {self.relay_url} within {timeout:g}s{last} "
                "(the listener keeps retrying in the background)"
            )
        if self._fatal is not None:
            raise self._fatal
        if not self._connected_once:
            raise RealtimeError("the listener is closed")

    def _set_state(self, state: ConnectionState) -> None:
        with self._lock:
            if self._state is state or self._state is ConnectionState.CLOSED:
                return
            self._state = state
        logger.debug("listener state: %s", state.value)
        self._queue.force(_StateChange(state))

    def _notify_closed(self) -> None:
        with self._lock:
            if self._closed_notified:
                return
            self._closed_notified = True
        self._call_state_hook(ConnectionState.CLOSED)

    def _fail(self, error: SignalWireError, *, logged: bool = False) -> None:
        """A fatal error: stop, let the dispatcher drain, wake the waiters.

        Logged once: at WARNING when a thread is in :meth:`run_forever` (it re-raises the error,
        so the application reports it), at ERROR when nobody is (it must not go unseen);
        ``logged`` when the caller already logged it (a bug of ours, with its traceback).
        """
        with self._lock:
            if self._fatal is None:
                self._fatal = error
            self._closing.set()
            self._state = ConnectionState.CLOSED
            raised = self._run_forever_callers > 0
            conn = self._conn
        if not logged:
            if raised:
                logger.warning("the listener stopped for good (raised from run_forever()): %s", error)
            else:
                logger.error("the listener stopped for good: %s", error)
        if conn is not None:
            conn.abort()  # the reader stops now, not at its next read timeout
        self._refresh_kick.set()
        self._watch_kick.set()
        self._queue.close(discard=False)  # the dispatcher delivers what is queued, then exits
        self._ready.set()

    # ------------------------------------------------------------------------------------------
    # reader thread

    def _run_reader(self) -> None:
        failures = 0
        delay = 0.0
        try:
            while not self._closing.is_set():
                if delay > 0 and self._closing.wait(delay):
                    break
                self._set_state(
                    ConnectionState.RECONNECTING if self._connected_once else ConnectionState.CONNECTING
                )
                try:
                    conn = self._connect()
                except _RetryNow:
                    delay = 0.0
                    continue
                except (_Fatal, ConnectFatal) as fatal:  # ConnectFatal: an untrusted certificate
                    self._fail(fatal.error)
                    return
                except (SignalWireError, OSError) as exc:
                    if self._closing.is_set():
                        break
                    self._last_error = exc
                    self.stats["connect_failures"] += 1
                    delay = self._backoff.delay(failures)
                    failures += 1
                    logger.warning(
                        "websocket connect failed (attempt %d): %s; retrying in %.2fs", failures, exc, delay
                    )
                    continue
                failures = 0
                self._serve(conn)
                delay = self._backoff.delay(0)
        except BaseException as exc:  # a bug of ours: never die silently
            logger.exception("the listener stopped for good: the reader thread failed")
            self._fail(RealtimeError(f"the reader thread failed: {type(exc).__name__}: {exc}"), logged=True)

    def _connect(self) -> Connection:
        """Open, authenticate (resume when possible), announce; returns the live connection."""
        resume = bool(self._protocol and self._authorization_state)
        if (
            not resume
            and self._tokens.refreshable
            and self._expires_at is not None
            and time.time() >= self._expires_at - 1.0
        ):
            self._refresh_token("the token has expired")
        token = self._tokens.get()
        params = connect_params(
            token,
            protocol=self._protocol if resume else None,
            authorization_state=self._authorization_state if resume else None,
            agent=self._agent,
        )
        self._handshake_buffer = []
        try:
            try:
                conn = Connection.open(
                    self.relay_url,
                    timeout=self.connect_timeout,
                    verify=self._verify,
                    on_events=self._on_events,
                    on_authorization_state=self._on_authorization_state,
                    max_message_bytes=self._max_message_bytes,
                    on_socket=self._watch_opening,
                )
            finally:
                self._opening = None
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    raise ConnectionLost("closing")
                self._conn = conn
            self._watch_kick.set()
            try:
                result = conn.authenticate(params, self.connect_timeout)
            except BaseException:
                self._drop_connection(conn)
                raise
        except ConnectRefused as refused:
            self._handshake_buffer = None
            self._on_refused(refused, token=token, resume=resume)
            raise _RetryNow() from None
        buffered, self._handshake_buffer = self._handshake_buffer, None

        protocol = result.get("protocol")
        if isinstance(protocol, str) and protocol:
            self._protocol = protocol
        self._project_id = project_id_of(result) or self._project_id
        expires_at = token_expiry(result)
        if expires_at is not None:
            self._expires_at = expires_at
            self._token_lifetime = max(0.0, expires_at - time.time())
        self._refreshed_since_success = False
        self.stats["connects"] += 1
        if resume:
            self.stats["resumes"] += 1
        was_connected = self._connected_once
        if self._first_connected_at is None:
            self._first_connected_at = time.time()
        logger.info(
            "websocket %s to %s", "resumed" if resume else "connected", self.relay_url
        )
        self._set_state(ConnectionState.CONNECTED)
        if was_connected:
            self._queue.force(_Fill("reconnect"))
        if buffered:
            self._offer(buffered)
        if not was_connected:
            self._connected_once = True
            self._ready.set()
        self._refresh_kick.set()  # reschedule the token refresh
        return conn

    def _on_refused(self, refused: ConnectRefused, *, token: str, resume: bool) -> None:
        """Decide after an authentication refusal: fresh connect, fresh token, or fatal."""
        if resume:
            logger.info("resume refused (%s): connecting fresh", refused)
            self.stats["resumes_refused"] += 1
            self._protocol = None
            self._authorization_state = None
            if self._tokens.refreshable:
                self._refresh_token("the resume was refused")
            return
        if self._tokens.refreshable and not self._refreshed_since_success:
            self._refresh_token("the token was refused")
            return
        raise _Fatal(
            AuthenticationError(
                f"the relay refused the token: {refused.message}",
                status_code=401,
                body=refused.error,
                method="signalwire.connect",
                url=self.relay_url,
            )
        )

    def _refresh_token(self, why: str) -> None:
        stale = self._tokens.get()
        logger.info("getting a fresh token: %s", why)
        try:
            self._tokens.refresh(stale=stale)
        except SignalWireError as exc:
            raise ConnectionLost(f"the token callable failed: {exc}") from exc
        self._refreshed_since_success = True
        self.stats["token_refreshes"] += 1
        self._expires_at = None

    def _serve(self, conn: Connection) -> None:
        """Read until the link is lost, dead or closed."""
        try:
            while not self._closing.is_set():
                if self._overflowed:
                    self._try_end_overflow()
                silent = time.monotonic() - conn.last_frame_at
                remaining = self.ping_timeout - silent
                if remaining <= 0:
                    self.stats["dead_links"] += 1
                    logger.warning(
                        "no frame from the relay for %.1fs (not even a ping): the link is dead; "
                        "reconnecting",
                        silent,
                    )
                    break
                if self._overflowed:
                    timeout = min(remaining, 0.05)  # poll for the moment the queue drains
                else:
                    # rounded down to 0.1 s so that a steady stream of frames keeps the same
                    # socket timeout (setting it costs a system call)
                    timeout = max(0.01, int(remaining * 10) / 10)
                conn.poll(timeout)
        except ConnectionLost as exc:
            if not self._closing.is_set():
                self._last_error = exc
                logger.info("websocket lost: %s", exc)
        finally:
            if not self._closing.is_set():
                self.stats["disconnects"] += 1
            self._drop_connection(conn)

    def _watch_opening(self, ws: Any) -> None:
        self._opening = (ws, time.monotonic())
        self._watch_kick.set()
        if self._closing.is_set():
            shutdown_socket(ws)

    def _drop_connection(self, conn: Connection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    def _on_authorization_state(self, state: str) -> None:
        self._authorization_state = state

    def _on_events(self, events: List[RawEvent]) -> None:
        self.stats["events_received"] += len(events)
        if self._handshake_buffer is not None:
            self._handshake_buffer.extend(events)
            return
        self._offer(events)

    def _offer(self, events: List[RawEvent]) -> None:
        """Queue live events; on overflow drop them and arrange a gap fill (never silently)."""
        if self._overflowed:
            self._try_end_overflow()
        taken = 0
        if not self._overflowed:
            taken = self._queue.offer_many(events)
            if taken == len(events):
                return
            self._overflowed = True
            logger.warning(
                "the event queue is full (%d messages): the callbacks are slower than the "
                "traffic; new live messages are dropped for now and will be fetched over REST "
                "(gap fill) once the queue has drained to %d",
                self._queue_size,
                self._low_water,
            )
        self.stats["dropped_on_overflow"] += len(events) - taken

    def _try_end_overflow(self) -> None:
        if self._queue.qsize() <= self._low_water:
            self._overflowed = False
            self._queue.force(_Fill("overflow"))
            logger.warning(
                "the event queue drained; recovering the %d dropped live messages over REST",
                self.stats["dropped_on_overflow"],
            )

    # ------------------------------------------------------------------------------------------
    # watchdog thread: the reader notices a silent socket itself (its read timeout); this thread
    # catches a reader stuck *inside* one frame (trickled byte by byte, or endless) or inside a
    # handshake that never completes, and shuts that socket down so the reader reconnects.

    def _run_watchdog(self) -> None:
        while not self._closing.is_set():
            wait = self.ping_timeout
            now = time.monotonic()
            conn = self._conn
            opening = self._opening
            if conn is not None:
                limit = self.ping_timeout + _WATCHDOG_GRACE
                silent = now - conn.last_frame_at
                if silent > limit:
                    self.stats["dead_links"] += 1
                    logger.warning(
                        "no complete frame for %.1fs (a trickled or endless frame?): closing the link",
                        silent,
                    )
                    conn.abort()
                else:
                    wait = limit - silent
            elif opening is not None:
                limit = self.connect_timeout + _WATCHDOG_GRACE
                elapsed = now - opening[1]
                if elapsed > limit:
                    logger.warning("the websocket handshake is stuck after %.1fs: closing it", elapsed)
                    shutdown_socket(opening[0])
                else:
                    wait = limit - elapsed
            if self._watch_kick.wait(max(0.05, wait)):
                self._watch_kick.clear()

    # ------------------------------------------------------------------------------------------
    # token refresh thread

    def _refresh_due(self) -> Optional[float]:
        if self._expires_at is None:
            return None
        lifetime = self._token_lifetime or 0.0
        margin = min(self._refresh_margin, lifetime / 2.0)
        return self._expires_at - margin

    def _run_refresher(self) -> None:
        failures = 0
        while not self._closing.is_set():
            due = self._refresh_due()
            # at most one refresh a second, whatever the server says about expiry
            timeout = None if due is None else max(0.0, due - time.time(), self._last_refresh_at + 1.0 - time.time())
            if self._refresh_kick.wait(timeout):
                self._refresh_kick.clear()
                continue
            if self._closing.is_set():
                return
            conn = self._conn
            if conn is None or self._state is not ConnectionState.CONNECTED:
                # not connected: the reader refreshes on its own if the token expires
                if self._refresh_kick.wait(1.0):
                    self._refresh_kick.clear()
                continue
            try:
                self._reauthenticate(conn)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                logger.warning("token refresh failed: %s; retrying in %.2fs", exc, delay)
                if self._closing.wait(delay):
                    return

    def _reauthenticate(self, conn: Connection) -> None:
        stale = self._tokens.get()
        self._last_refresh_at = time.time()
        token = self._tokens.refresh(stale=stale)
        self.stats["token_refreshes"] += 1
        pending = conn.request(
            "signalwire.reauthenticate",
            {"authentication": {"project": self._project_id, "jwt_token": token}},
        )
        if not pending.wait(self.connect_timeout):
            raise RealtimeError(f"no answer to signalwire.reauthenticate within {self.connect_timeout:g}s")
        if pending.error is not None:
            if is_auth_refusal(pending.error):
                # the live session is unaffected; the next connect uses the fresh token
                logger.warning("signalwire.reauthenticate refused: %s", pending.error)
            raise RealtimeError(f"signalwire.reauthenticate failed: {pending.error}")
        expires_at = token_expiry(pending.result)
        lifetime = self._token_lifetime or 0.0
        if expires_at is None:
            # no expiry in the answer: assume the new token lives as long as the last one
            expires_at = time.time() + lifetime if lifetime > 0 else None
            self._expires_at = expires_at
        else:
            self._expires_at = expires_at
            self._token_lifetime = max(0.0, expires_at - time.time())
        logger.info("token refreshed on the live websocket")

    # ------------------------------------------------------------------------------------------
    # dispatcher thread

    def _run_dispatcher(self) -> None:
        try:
            get_many = self._queue.get_many
            while True:
                try:
                    items = get_many(_DISPATCH_BATCH)
                except QueueClosed:
                    break
                for item in items:
                    if type(item) is tuple:
                        if self._closing.is_set() and self._fatal is None:
                            continue  # close(): queued messages are dropped
                        self._deliver_raw(item)
                    elif isinstance(item, _Fill):
                        self._gap_fill(item.reason)
                    elif isinstance(item, _StateChange):
                        self._call_state_hook(item.state)
        except BaseException as exc:  # a bug of ours: never die silently
            logger.exception("the listener stopped for good: the dispatcher thread failed")
            self._fail(RealtimeError(f"the dispatcher thread failed: {type(exc).__name__}: {exc}"), logged=True)
        finally:
            with self._lock:
                subs = self._subs
                self._subs = ()
                self._state = ConnectionState.CLOSED
            for sub in subs:
                sub._close(discard=False)
            if self._fatal is not None:
                self._report_error(self._fatal, None)
            self._stopped.set()
            self._notify_closed()

    def _deliver_raw(self, raw: RawEvent) -> None:
        """Decode a live message (here, not on the reader: decoding never delays an ack)."""
        payload, is_author = raw
        try:
            event = decode_event(payload, is_author=is_author)
        except Exception as exc:  # ResponseValidationError, or anything odd: skip, never die
            self.stats["events_skipped"] += 1
            logger.warning(
                "skipping a conversation.message that does not decode: %s: %s", type(exc).__name__, exc
            )
            return
        self._deliver(event)

    def _deliver(self, event: ConversationMessageEvent) -> None:
        if event.id is not None and not self._recent.add(event.id):
            self.stats["duplicates"] += 1
            return
        ts = ts_seconds(event.ts)
        if ts is not None:
            # the gap-fill watermark: a ts in the future (clock skew, a server bug) counts as
            # "now", so that it cannot hide what comes next; an implausibly old one is ignored
            ts = min(ts, time.time())
            floor = (self._first_connected_at or 0.0) - _IMPLAUSIBLY_OLD
            if ts >= floor and (self._last_ts is None or ts > self._last_ts):
                self._last_ts = ts
        self.stats["delivered"] += 1
        for sub in self._subs:
            if sub._matches(event):
                sub._deliver(event)

    def _gap_fill(self, reason: str) -> None:
        since = gap_since(self._last_ts, self._first_connected_at, self.gap_overlap)
        failures = 0
        started = time.monotonic()
        while True:
            if self._closing.is_set():
                return
            try:
                fetched = list(self._fetch_missed(since))
                break
            except Exception as exc:
                self.stats["gap_fill_failures"] += 1
                delay = self._backoff.delay(failures)
                logger.warning(
                    "gap fill (%s) failed: %s: %s; retrying in %.2fs", reason, type(exc).__name__, exc, delay
                )
                if failures == 0:
                    self._report_error(exc, None)
                failures += 1
                if self._closing.wait(delay):
                    return
        missed = plan_gap_fill(fetched, since=since, last_ts=self._last_ts, seen=self._recent.__contains__)
        self.stats["gap_fills"] += 1
        self.stats["recovered"] += len(missed)
        logger.info(
            "gap fill (%s): %d message(s) since %.3f fetched, %d new, in %.3fs",
            reason,
            len(fetched),
            since,
            len(missed),
            time.monotonic() - started,
        )
        for event in missed:
            if self._closing.is_set() and self._fatal is None:
                return  # close(): stop delivering
            self._deliver(event)

    # ------------------------------------------------------------------------------------------
    # hooks (dispatcher thread, or close()'s thread for CLOSED)

    def _remove_subscription(self, subscription: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not subscription)

    def _report_error(self, exc: BaseException, event: Optional[ConversationMessageEvent]) -> None:
        if event is not None:
            self.stats["callback_errors"] += 1
        hook = self._on_error
        if hook is None:
            return
        try:
            hook(exc, event)
        except BaseException:
            logger.exception("the on_error hook raised")

    def _call_state_hook(self, state: ConnectionState) -> None:
        hook = self._on_state_change
        if hook is None:
            return
        try:
            hook(state)
        except BaseException:
            logger.exception("the on_state_change hook raised")
