"""What the listener's threads share: its state, the queue markers, the lifecycle rules.

:class:`ListenerCore` declares the state every part of the listener reads or writes and holds
the rules they all follow: state transitions (told to ``on_state_change`` from the dispatcher
thread only, in order, never after ``CLOSED``), the fatal stop, error reporting. The parts are
mixins over it, one file each: ``reader.py`` (the websocket), ``dispatcher.py`` (delivery and
gap fill), ``refresher.py`` (token refresh), ``watchdog.py`` (stuck sockets);
``listener.py`` puts them together behind the public :class:`~.listener.Listener`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from .._logging import get_logger
from ..config import TokenProvider
from ..errors import SignalWireError, ValidationError
from ..models import ConversationMessageEvent
from .backoff import Backoff
from .connection import Connection, RawEvent
from .delivery import Position
from .names import KnownNames
from .state import ConnectionState
from .subscription import BoundedQueue, ErrorHook, Subscription

__all__ = ["ListenerCore", "FetchMissed", "FetchLatest", "NameFiller", "StateHook"]

logger = get_logger("signalwire_conversation.realtime")

#: Gap fill: every message with server ``ts >= since`` (seconds), newest first; may raise.
FetchMissed = Callable[[float], Iterable[ConversationMessageEvent]]
#: The newest few stored messages, newest first (the server's "now"); may raise.
FetchLatest = Callable[[], Iterable[ConversationMessageEvent]]
#: Fills what it can on a recovered event (names), returns the event (or a new one).
NameFiller = Callable[[ConversationMessageEvent], ConversationMessageEvent]
#: ``on_state_change(state)``.
StateHook = Callable[[ConnectionState], Any]


class Fill:
    """Queue marker: fill a gap over REST before delivering what follows. ``target`` is one
    subscription (its ``after=`` backlog), or ``None`` for every subscription."""

    __slots__ = ("reason", "target")

    def __init__(self, reason: str, target: Optional[Subscription] = None) -> None:
        self.reason = reason
        self.target = target


class Begin:
    """Queue marker: where a new subscription starts is known (``None``: the server's "now"
    could not be read). ``epoch`` (the connect count) and ``connected`` were read when it was
    registered; ``backlog``: it was made with ``after=`` and wants what is stored after it."""

    __slots__ = ("target", "start", "epoch", "connected", "backlog")

    def __init__(
        self, target: Subscription, start: "Optional[Position]", *, epoch: int, connected: bool, backlog: bool
    ) -> None:
        self.target = target
        self.start = start
        self.epoch = epoch
        self.connected = connected
        self.backlog = backlog


class StateChange:
    """Queue marker: tell ``on_state_change`` (in order with the messages)."""

    __slots__ = ("state",)

    def __init__(self, state: ConnectionState) -> None:
        self.state = state


#: what the reader queues: live messages as read (decoded by the dispatcher), and markers
Item = Union[RawEvent, Fill, Begin, StateChange]


class Fatal(Exception):
    """Internal: stop for good with ``error``."""

    def __init__(self, error: SignalWireError) -> None:
        super().__init__(str(error))
        self.error = error


class RetryNow(Exception):
    """Connect again at once (a refused resume, falling back to a fresh connect)."""


def positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(name, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(name, f"must be a positive integer, got {value!r}")
    return value


def wait_arg(timeout: Optional[float]) -> Optional[float]:
    """A timeout ``threading`` accepts: ``inf`` (or anything past TIMEOUT_MAX) waits forever."""
    if timeout is None or timeout >= threading.TIMEOUT_MAX:
        return None
    return max(0.0, timeout)


class ListenerCore:
    """The shared state and rules of the listener's parts (see the module docstring)."""

    # -- configuration (set once by Listener.__init__) --
    relay_url: str
    ping_timeout: float
    connect_timeout: float
    gap_overlap: float
    _tokens: TokenProvider
    _fetch_missed: FetchMissed
    _fetch_latest: FetchLatest
    _fill_names: Optional[NameFiller]
    _on_error: Optional[ErrorHook]
    _on_state_change: Optional[StateHook]
    _verify: Union[bool, str]
    _backoff: Backoff
    _queue_size: int
    _subscription_queue_size: int
    _dedup_size: int
    _refresh_margin: float
    _max_message_bytes: int
    _agent: str

    # -- runtime (made again in a forked child) --
    stats: Dict[str, int]
    _lock: threading.Lock
    _state: ConnectionState
    _threads: List[threading.Thread]
    _subs: Tuple[Subscription, ...]
    _queue: BoundedQueue[Item]
    _closing: threading.Event  # the stop flag: set first by close() and on fatal
    _ready: threading.Event  # connected once, or stopped: wakes subscribe()
    _connected_once: bool
    _stopped: threading.Event  # fully stopped: wakes run_forever()
    _refresh_kick: threading.Event
    _watch_kick: threading.Event
    _opening: Optional[Tuple[Any, float]]  # (websocket, monotonic start)
    _closed_notified: bool
    _fatal: Optional[SignalWireError]
    _last_error: Optional[BaseException]
    _run_forever_callers: int  # threads in run_forever() (they re-raise a fatal error)
    _subscribe_waiters: int  # threads in subscribe() waiting for the link (they raise it too)
    _pending_fills: int  # Fill markers queued and not finished
    _untold: int  # StateChange markers queued and not told yet
    _drain_deadline: float  # close(): monotonic time after which nothing is delivered (inf: none)
    _known: KnownNames
    _server_clock: Optional[Tuple[float, float]]  # (server seconds, monotonic) of the last ping
    # reader-thread state
    _conn: Optional[Connection]
    _protocol: Optional[str]
    _authorization_state: Optional[str]
    _project_id: Optional[str]
    _expires_at: Optional[float]
    _token_lifetime: Optional[float]
    _refreshed_since_success: bool
    _handshake_buffer: Optional[List[RawEvent]]
    _overflowed: bool
    _low_water: int
    _last_refresh_at: float
    # dispatcher-thread state
    _malformed_logged: bool
    _draining_stopped: bool

    def _server_now(self) -> float:
        """The server's clock, for token expiry (a server time): the last server ping's
        timestamp plus the monotonic time since; the local clock before the first ping."""
        clock = self._server_clock
        if clock is None:
            return time.time()
        return clock[0] + (time.monotonic() - clock[1])

    def _refresh_wait(self, due: float) -> float:
        """Seconds until a token refresh due at ``due`` (server time): at most one refresh a
        second, and looked at again at least once a minute (the server's clock may be learned
        meanwhile)."""
        return min(60.0, max(0.0, due - self._server_now(), self._last_refresh_at + 1.0 - time.time()))

    def _learn_server_clock(self, server_time: Tuple[float, float]) -> bool:
        """Take the clock of the latest server ping; ``True`` for the first one, which is when
        the token's lifetime (its expiry is a server time) can first be read right."""
        first = self._server_clock is None
        self._server_clock = server_time
        if first and self._expires_at is not None:
            self._token_lifetime = max(0.0, self._expires_at - self._server_now())
        return first

    # ------------------------------------------------------------------------------------------
    # state: every transition under the lock; told by the dispatcher thread only

    def _transition(
        self,
        state: ConnectionState,
        *,
        only_from: Optional[Tuple[ConnectionState, ...]] = None,
        on_dispatcher: bool = False,
        when_filled: bool = False,
    ) -> bool:
        """Move to ``state`` (unless already there, ``CLOSED``, or not in ``only_from``).

        The hook is told in transition order: a marker is queued for the dispatcher, except
        when the dispatcher itself makes the change and nothing is waiting to be told (then it
        tells at once, after releasing the lock). ``when_filled``: only when no gap fill is
        pending. Returns whether the state changed.
        """
        tell_now = False
        with self._lock:
            current = self._state
            if current is state or current is ConnectionState.CLOSED:
                return False
            if only_from is not None and current not in only_from:
                return False
            if when_filled and self._pending_fills > 0:
                return False
            self._state = state
            if on_dispatcher and self._untold == 0:
                tell_now = True
            else:
                self._untold += 1
                self._queue.force(StateChange(state))
        logger.debug("listener state: %s", state.value)
        if tell_now:
            self._call_state_hook(state)
        return True

    def _request_fill(self, fill: Fill, *, connected: bool = False, first: bool = False) -> None:
        """Queue a gap fill; the state is ``RECOVERING`` until it is done (from ``CONNECTED``,
        or from a reconnect when ``connected``: the reader has just got the link back). The
        ``first`` connection's fill keeps ``CONNECTING`` (and ``subscribe()`` waiting) instead."""
        with self._lock:
            if self._state is ConnectionState.CLOSED:
                return
            self._pending_fills += 1
            if not first and (connected or self._state is ConnectionState.CONNECTED):
                if self._state is not ConnectionState.RECOVERING:
                    self._state = ConnectionState.RECOVERING
                    self._untold += 1
                    self._queue.force(StateChange(ConnectionState.RECOVERING))
            self._queue.force(fill)

    def _notify_closed(self) -> None:
        """Tell ``CLOSED``, once (the dispatcher's last act, or close()'s when it never ran)."""
        with self._lock:
            if self._closed_notified:
                return
            self._closed_notified = True
        self._call_state_hook(ConnectionState.CLOSED)

    def _fail(self, error: SignalWireError, *, logged: bool = False) -> None:
        """A fatal error: stop, let the dispatcher drain, wake the waiters.

        Reported once: a thread in ``run_forever()`` gets it raised (and it is logged at
        WARNING); else a thread waiting in ``subscribe()`` gets it raised (logged at DEBUG
        only); when nobody is there it is logged at ERROR, so it cannot go unseen.
        ``logged`` when the caller already logged it (a bug of ours, with its traceback).
        """
        with self._lock:
            if self._fatal is None:
                self._fatal = error
            self._closing.set()
            self._state = ConnectionState.CLOSED
            run_forever = self._run_forever_callers > 0
            subscribing = self._subscribe_waiters > 0
            conn = self._conn
        if not logged:
            if run_forever:
                logger.warning("the listener stopped for good (raised from run_forever()): %s", error)
            elif subscribing:
                logger.debug("the listener stopped for good (raised from subscribe()): %s", error)
            else:
                logger.error("the listener stopped for good: %s", error)
        if conn is not None:
            conn.abort()  # the reader stops now, not at its next read timeout
        self._refresh_kick.set()
        self._watch_kick.set()
        self._queue.close(discard=False)  # the dispatcher delivers what is queued, then exits
        self._ready.set()

    # ------------------------------------------------------------------------------------------
    # hooks

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
