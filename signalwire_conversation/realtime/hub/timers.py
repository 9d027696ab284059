"""All the hub's deadlines on one heap, served by one thread.

Reconnect backoffs, handshake deadlines, dead-link checks and token refreshes of every client
of a hub are entries here (not a thread each). Cancellation is lazy (an entry is marked and
skipped when it reaches the head; the heap is rebuilt when over half of at least 100 entries
are cancelled, as asyncio does). Due entries are all popped before any is run, so an entry
added by a callback cannot starve the others. Callbacks must be short: they hand the work to
the I/O loop or the worker pool.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from typing import Any, Callable, List, Optional

from ..._logging import get_logger

__all__ = ["Timers", "TimerHandle"]

logger = get_logger("signalwire_conversation.realtime")


class TimerHandle:
    """One scheduled call; :meth:`cancel` is O(1)."""

    __slots__ = ("when", "seq", "fn", "_owner")

    def __init__(self, when: float, seq: int, fn: Callable[[], Any], owner: "Timers") -> None:
        self.when = when
        self.seq = seq
        self.fn: Optional[Callable[[], Any]] = fn
        self._owner = owner

    def __lt__(self, other: "TimerHandle") -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        with self._owner._cond:
            if self.fn is not None:
                self.fn = None
                self._owner._cancelled += 1


class Timers:
    """The heap and its thread (``signalwire-hub-timers``, started by the first call)."""

    def __init__(self, *, name: str = "signalwire-hub-timers") -> None:
        self._name = name
        self._heap: List[TimerHandle] = []
        self._cond = threading.Condition(threading.Lock())
        self._seq = itertools.count()
        self._cancelled = 0
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    def call_later(self, delay: float, fn: Callable[[], Any], *, slack: float = 0.0) -> TimerHandle:
        """Call ``fn`` on the timer thread in ``delay`` seconds (up to ``slack`` later: the
        deadline is rounded up to a multiple of ``slack``, so that the many entries of a kind,
        the dead-link checks of thousands of links, fire together in one wake-up)."""
        when = time.monotonic() + max(0.0, delay)
        if slack > 0:
            when = math.ceil(when / slack) * slack
        with self._cond:
            handle = TimerHandle(when, next(self._seq), fn, self)
            if self._stopping:
                handle.fn = None
                return handle
            heapq.heappush(self._heap, handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is handle:
                self._cond.notify()
            return handle

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def _pop_due(self) -> List[Callable[[], Any]]:
        # with the lock held: wait for the head, then pop everything due
        heap = self._heap
        while not self._stopping:
            while heap and heap[0].fn is None:
                heapq.heappop(heap)
                self._cancelled -= 1
            if len(heap) >= 100 and self._cancelled * 2 > len(heap):
                self._heap = heap = [h for h in heap if h.fn is not None]
                heapq.heapify(heap)
                self._cancelled = 0
            now = time.monotonic()
            if heap and heap[0].when <= now:
                due: List[Callable[[], Any]] = []
                while heap and heap[0].when <= now:
                    handle = heapq.heappop(heap)
                    fn = handle.fn
                    if fn is None:
                        self._cancelled -= 1
                    else:
                        handle.fn = None
                        due.append(fn)
                return due
            self._cond.wait(None if not heap else min(heap[0].when - now, 3600.0))
        return []

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._pop_due()
                if self._stopping:
                    return
            for fn in due:
                try:
                    fn()
                except BaseException:
                    logger.exception("a hub timer callback failed")

    def close(self, timeout: Optional[float]) -> bool:
        """Drop every entry and stop the thread; ``True`` when it has ended."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cancelled = 0
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True
