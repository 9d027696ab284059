"""A listener whose threads are the hub's: :class:`HubListener`.

The same :class:`~..listener.Listener` (subscriptions, cursors, ``after=``, state, gap fill,
``close()``), with its three threads replaced by shares of a :class:`~.hub.RealtimeHub`:

* its websocket is a :class:`~.session.Session` on the hub's I/O loop (instead of the reader
  thread, and the watchdog thread: dead links are found by a timer);
* its event queue is drained by the hub's worker pool, one slice at a time and never by two
  workers at once (instead of the dispatcher thread): the dispatcher's own code delivers,
  fills gaps over REST and tells the state hook, in order;
* its token refresh is a timer entry that runs on a worker.

The event queue is bounded (``queue_size``): when a subscriber's callbacks fall behind, the
loop keeps reading and acking, drops what does not fit and the subscriber's own gap fill fetches
it once it has caught up (exactly as the default listener does). Other subscribers are not
delayed: they run on the other workers.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, List, Sequence

from ..._logging import get_logger
from ...errors import RealtimeError
from ..core import Item, wait_arg
from ..listener import _DRAIN_SHARE, Listener
from ..state import ConnectionState
from ..subscription import BoundedQueue
from .session import Session

if TYPE_CHECKING:
    from .hub import RealtimeHub

__all__ = ["HubListener"]

logger = get_logger("signalwire_conversation.realtime")

#: the most queue items one worker slice delivers before letting other subscribers run
_SLICE = 256


class _HubQueue(BoundedQueue[Item]):
    """The event queue, telling its listener when there is something to deliver: a drain is
    "armed" from the first item until a slice finds the queue empty (one drain at a time)."""

    def __init__(self, maxsize: int, owner: "HubListener") -> None:
        super().__init__(maxsize)
        self._owner = owner
        self._armed = False

    def offer(self, item: Item) -> bool:
        taken = super().offer(item)
        self._arm()
        return taken

    def offer_many(self, items: Sequence[Item]) -> int:
        taken = super().offer_many(items)
        self._arm()
        return taken

    def force(self, item: Item) -> None:
        super().force(item)
        self._arm()

    def close(self, *, discard: bool, keep: Any = None) -> None:
        super().close(discard=discard, keep=keep)
        self._arm()

    def _arm(self) -> None:
        with self._not_empty:
            if self._armed or (not self._items and not self._closed):
                return
            self._armed = True
        self._owner._kick()

    def take(self, limit: int) -> List[Item]:
        with self._not_empty:
            items = self._items
            if len(items) <= limit:
                batch = list(items)
                items.clear()
            else:
                popleft = items.popleft
                batch = [popleft() for _ in range(limit)]
            return batch

    def settle(self) -> "tuple[bool, bool]":
        """After a slice: ``(more, closed)``; disarms when there is nothing more to do."""
        with self._not_empty:
            more = bool(self._items)
            if not more and not self._closed:
                self._armed = False
            return more, self._closed


class HubListener(Listener):
    """A :class:`~..listener.Listener` running on a hub's shared threads (module docstring)."""

    _queue: _HubQueue

    def __init__(self, *, hub: "RealtimeHub", **kwargs: Any) -> None:
        self._hub = hub
        super().__init__(**kwargs)

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._queue = _HubQueue(self._queue_size, self)
        self._session = Session(self._hub, self)
        self._drain_thread = 0
        self._started = False
        self._finished = False

    # -- starting ---------------------------------------------------------------------------

    def _start_locked(self) -> None:
        if self._started:
            return
        self._hub._attach(self)  # raises when the hub is closed
        self._started = True
        self._hub._loop.call_soon_threadsafe(self._session.start)

    def _on_dispatcher(self) -> bool:
        return self._drain_thread == threading.get_ident()

    # -- delivering (a worker, one slice at a time) -----------------------------------------

    def _kick(self) -> None:
        if self._started:
            self._hub._pool.submit(self, self._drain)

    def _drain(self) -> None:
        queue = self._queue
        self._drain_thread = threading.get_ident()
        try:
            handle = self._handle
            for item in queue.take(_SLICE):
                handle(item)
        except BaseException as exc:  # a bug of ours: never die silently
            logger.exception("the listener stopped for good: its delivery failed")
            self._drain_thread = 0
            self._fail(RealtimeError(f"the delivery failed: {type(exc).__name__}: {exc}"), logged=True)
            queue.close(discard=True)
        finally:
            self._drain_thread = 0
        session = self._session
        if self._overflowed:
            self._hub._loop.call_soon_threadsafe(session.check_overflow)
        if session.paused and queue.qsize() <= self._queue_size // 4:
            self._hub._loop.call_soon_threadsafe(session.resume)
        more, closed = queue.settle()
        if more:
            self._hub._pool.submit(self, self._drain)
        elif closed:
            self._finish()

    def _finish(self) -> None:
        """The last act (on a worker, or in close() when nothing ever started)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            subs = self._subs
            self._subs = ()
            self._state = ConnectionState.CLOSED
            started = self._started
        if started:
            self._hub._loop.call_soon_threadsafe(self._session.close)
        for sub in subs:
            sub._close(discard=False)  # iterators still read what they were handed
        if self._fatal is not None:
            self._report_error(self._fatal, None)
        self._stopped.set()
        self._notify_closed()
        self._hub._detach(self)

    # -- stopping ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """As :meth:`Listener.close`: stop this client's websocket (the hub's other clients are
        not touched), deliver what was received within ``timeout`` seconds, end every
        subscription."""
        limit = wait_arg(timeout)
        started = self._begin_close(limit)
        if not started or self._on_dispatcher():
            return  # from a callback: the slice ends after it returns, and finishes then
        if not self._stopped.wait(limit):
            logger.warning("close(): a callback still running after %ss (one that does not return?)", timeout)
            self._stopped.set()

    def _begin_close(self, limit: "float | None") -> bool:
        """close() without the wait (the hub tells all its listeners first); whether it had
        started."""
        with self._lock:
            self._closing.set()
            self._state = ConnectionState.CLOSED
            started = self._started
            if limit is not None:
                self._drain_deadline = min(self._drain_deadline, time.monotonic() + limit * _DRAIN_SHARE)
        self._ready.set()
        if started:
            self._hub._loop.call_soon_threadsafe(self._session.close)
        self._queue.close(discard=False)  # the worker delivers what it may, then finishes
        if not started:
            self._finish()
        return started

    def _forget_parent(self) -> bool:
        """In a forked child: the hub's threads are not there; this listener stays closed."""
        self._lock = threading.Lock()
        self._closing.set()
        return bool(self._subs)

    def __repr__(self) -> str:
        return f"HubListener(relay_url={self.relay_url!r}, state={self._state.value})"
