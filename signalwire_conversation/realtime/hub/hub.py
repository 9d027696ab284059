"""The public :class:`RealtimeHub`: many clients' realtime listeners on a few shared threads."""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import TYPE_CHECKING, Deque, List, Set

from ..._logging import get_logger
from ...errors import RealtimeError, ValidationError
from ..backoff import Backoff
from .loop import Loop
from .pool import OrderedPool
from .timers import Timers

if TYPE_CHECKING:
    from .listener import HubListener
    from .session import Session

__all__ = ["RealtimeHub"]

logger = get_logger("signalwire_conversation.realtime")

_MASK_POOL_BYTES = 4096
#: how often every live link's silence is checked: a quarter of the smallest ``ping_timeout``
#: of the hub's clients, within these bounds (5 s for the default 20 s); a dead link is found
#: at most that long after ``ping_timeout`` (one pass over the live links, not a timer each)
SWEEP_MIN, SWEEP_MAX = 0.25, 5.0


class RealtimeHub:
    """Shared threads for the realtime listeners of many clients in one process.

    ``Client(token, hub=hub)``: that client's ``subscribe()`` runs on the hub, whose threads do
    not grow with the number of clients: one I/O thread (a ``selectors`` loop over every
    websocket), one timer thread (reconnect backoffs, dead-link checks, handshake deadlines and
    token refreshes of every client on one heap) and ``workers`` worker threads that run the
    callbacks (and the gap fills over REST, the token callables, DNS). The threads start with
    the first subscription.

    Each client keeps everything the default listener promises (docs/realtime.md): order and
    exactly-once per subscriber, acks, pings, dead-link detection, reconnect with jitter,
    resume, gap fill, cursors and ``after=``, its own state and ``close()``. The callbacks of
    one client never run concurrently nor out of order; those of different clients run in
    parallel on the workers. A slow callback delays its own client only (while a worker is
    free for the others: see docs/realtime.md, "Many subscribers in one process").

    Args:
        workers: the worker threads (callbacks, gap fills, token callables).
        max_handshakes: how many connects may be in flight at once (TCP, TLS, upgrade,
            ``signalwire.connect``); the others wait for a slot, so that 2,000 clients connect
            concurrently but never all at once.
        reconnect_rate: after a drop, clients reconnect within ``uniform(0, spread)`` seconds,
            where ``spread`` is the larger of the backoff's first step and (clients on the
            hub / ``reconnect_rate``): a server restart seen by 10,000 clients brings them back
            over 20 s at the default 500 per second, not in the same second.

    Use it as a context manager, or call :meth:`close`; ``close()`` closes every listener of
    the hub (the clients' REST side keeps working) and leaves no thread and no socket.
    """

    def __init__(self, *, workers: int = 4, max_handshakes: int = 64, reconnect_rate: float = 500.0) -> None:
        for name, value in (("workers", workers), ("max_handshakes", max_handshakes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(name, f"must be a positive integer, got {value!r}")
        if isinstance(reconnect_rate, bool) or not isinstance(reconnect_rate, (int, float)) or not reconnect_rate > 0:
            raise ValidationError("reconnect_rate", f"must be a positive number (per second), got {reconnect_rate!r}")
        self.workers = workers
        self.max_handshakes = max_handshakes
        self.reconnect_rate = float(reconnect_rate)
        self._loop = Loop()
        self._timers = Timers()
        self._pool = OrderedPool(workers)
        self._lock = threading.Lock()
        self._listeners: "Set[HubListener]" = set()
        self._closed = False
        # the loop thread's own state: handshake slots, mask keys
        self._in_flight = 0
        self._slot_waiters: "Deque[Session]" = collections.deque()
        self._mask_keys = b""
        self._mask_pos = 0
        self._live: "Set[Session]" = set()
        self._sweeping = False
        self._sweep_every = SWEEP_MAX
        self._pid = os.getpid()

    # -- public -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        """How many listeners are attached (subscribed clients not closed)."""
        return len(self._listeners)

    def threads(self) -> List[threading.Thread]:
        """The hub's threads that are running (for monitoring and tests)."""
        names = {"signalwire-hub-io", "signalwire-hub-timers"} | {
            f"signalwire-hub-worker-{i}" for i in range(self.workers)
        }
        candidates = [self._loop._thread, self._timers._thread, *self._pool._threads]
        return [t for t in candidates if t is not None and t.is_alive() and t.name in names]

    def close(self, timeout: float = 10.0) -> None:
        """Close every listener of the hub, then stop its threads and close its sockets,
        within about ``timeout`` seconds in all. Idempotent; not from a callback of the hub
        (a worker cannot join itself: the call then closes the listeners and returns)."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValidationError("timeout", f"must be a number of seconds >= 0, got {timeout!r}")
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            listeners = list(self._listeners)
        # every listener told first (sockets closed, queues closed), then waited for
        for listener in listeners:
            listener._begin_close(timeout * 0.8)
        for listener in listeners:
            listener._stopped.wait(max(0.0, deadline - time.monotonic()) * 0.8)
        if self._pool.current_key() is not None:
            logger.warning("RealtimeHub.close() from a hub callback: the threads stop once it returns")
            self._loop.stop(timeout=0)
            self._timers.close(0)
            return
        loop_done = self._loop.stop(timeout=max(0.1, deadline - time.monotonic()))
        timers_done = self._timers.close(max(0.1, deadline - time.monotonic()))
        alive = self._pool.close(max(0.1, deadline - time.monotonic()))
        if alive or not loop_done or not timers_done:
            logger.warning("RealtimeHub.close(): threads still running after %ss: %s", timeout,
                           ", ".join(alive + ([] if loop_done else ["io"]) + ([] if timers_done else ["timers"])))

    def __enter__(self) -> "RealtimeHub":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RealtimeHub(workers={self.workers}, listeners={len(self._listeners)}, closed={self._closed})"

    # -- the listeners' side ------------------------------------------------------------------

    def _attach(self, listener: "HubListener") -> None:
        with self._lock:
            if self._closed:
                raise RealtimeError("the RealtimeHub is closed")
            if os.getpid() != self._pid:
                raise RealtimeError("this RealtimeHub belongs to the parent process (forked); make a new one")
            self._listeners.add(listener)

    def _detach(self, listener: "HubListener") -> None:
        with self._lock:
            self._listeners.discard(listener)

    def _reconnect_delay(self, backoff: Backoff) -> float:
        """The first wait after a drop: jittered over a window that grows with the clients."""
        spread = max(backoff.initial, len(self._listeners) / self.reconnect_rate)
        return backoff._random(spread)

    # -- the loop thread only -------------------------------------------------------------------

    def _take_slot(self, session: "Session") -> bool:
        if self._in_flight < self.max_handshakes:
            self._in_flight += 1
            return True
        self._slot_waiters.append(session)
        return False

    def _give_slot(self, session: "Session") -> None:
        self._in_flight -= 1
        waiters = self._slot_waiters
        while waiters and self._in_flight < self.max_handshakes:
            nxt = waiters.popleft()
            if nxt.phase.value != "idle" or nxt._slot or nxt.listener._closing.is_set():
                continue
            self._in_flight += 1
            nxt._slot = True
            nxt._prepare()

    def _watch(self, session: "Session") -> None:
        self._live.add(session)
        self._sweep_every = min(self._sweep_every, max(SWEEP_MIN, session.listener.ping_timeout / 4))
        if not self._sweeping:
            self._sweeping = True
            self._next_sweep()

    def _unwatch(self, session: "Session") -> None:
        self._live.discard(session)

    def _next_sweep(self) -> None:
        loop = self._loop
        self._timers.call_later(self._sweep_every, lambda: loop.call_soon_threadsafe(self._sweep))

    def _sweep(self) -> None:
        """Every live link's silence against its ``ping_timeout``; the dead ones replaced."""
        now = time.monotonic()
        dead = [s for s in self._live if now - s.last_frame_at >= s.listener.ping_timeout]
        for session in dead:
            session.declare_dead(now - session.last_frame_at)
        if self._live:
            self._next_sweep()
        else:
            self._sweeping = False

    def _mask_key(self) -> bytes:
        pos = self._mask_pos
        if pos + 4 > len(self._mask_keys):
            self._mask_keys = os.urandom(_MASK_POOL_BYTES)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_keys[pos : pos + 4]
