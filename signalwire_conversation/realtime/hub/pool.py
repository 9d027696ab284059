"""An ordered worker pool: tasks of one key run one at a time, in order; keys run in parallel.

The per-key serial executor over a shared set of threads (the pattern of the ``SerialExecutor``
in Java's ``Executor`` documentation, and of Pub/Sub's ordering keys): a key is "in flight"
while it is in ``_keys``; its next task is released when the current one returns, behind the
other keys already waiting (one FIFO of ready keys, so a busy key does not starve the others).
A key whose queue is empty is dropped, so idle keys cost nothing.

When every worker is busy, new tasks wait in that FIFO (nothing is dropped here: the hub bounds
what reaches it per subscriber, see ``listener.py``).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Tuple

from ..._logging import get_logger

__all__ = ["OrderedPool"]

logger = get_logger("signalwire_conversation.realtime")

Task = Callable[[], Any]


class OrderedPool:
    """``workers`` daemon threads named ``{name}-{i}``, started by the first :meth:`submit`."""

    def __init__(self, workers: int, *, name: str = "signalwire-hub-worker") -> None:
        self.workers = workers
        self._name = name
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ready: Deque[Tuple[Hashable, Task]] = collections.deque()
        self._keys: Dict[Hashable, Deque[Task]] = {}
        self._threads: List[threading.Thread] = []
        self._stopping = False
        #: thread ident -> the key whose task it runs now
        self._running: Dict[int, Hashable] = {}

    def submit(self, key: Hashable, task: Task) -> bool:
        """Run ``task`` after every task of ``key`` submitted before it; ``False`` when closed."""
        with self._lock:
            if self._stopping:
                return False
            waiting = self._keys.get(key)
            if waiting is not None:
                waiting.append(task)
                return True
            self._keys[key] = collections.deque()
            self._ready.append((key, task))
            if not self._threads:
                self._start_locked()
            self._cond.notify()
            return True

    def current_key(self) -> Optional[Hashable]:
        """The key whose task the calling thread runs (``None`` off the pool)."""
        return self._running.get(threading.get_ident())

    def busy(self) -> int:
        """How many keys have a task running or waiting."""
        return len(self._keys)

    def _start_locked(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        me = threading.get_ident()
        lock = self._lock
        while True:
            with lock:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return  # stopping and nothing left
                key, task = self._ready.popleft()
                self._running[me] = key
            try:
                task()
            except BaseException:  # a task must never kill a worker
                logger.exception("a hub task failed")
            with lock:
                del self._running[me]
                waiting = self._keys[key]
                if waiting:
                    self._ready.append((key, waiting.popleft()))
                    self._cond.notify()
                else:
                    del self._keys[key]

    def close(self, timeout: Optional[float]) -> List[str]:
        """Run what was submitted, then stop; joins the workers within ``timeout`` seconds.
        Returns the names of the workers still running (a task that does not return)."""
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive() and t is not me]
