"""Sizes, the SDK loader and small statistics helpers shared by the cases."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence


@dataclass(frozen=True)
class Size:
    name: str
    #: timed repetitions of each measured row (the best one is reported)
    repeats: int
    paging_items: int
    page_size: int
    decode_items: int
    rt_events: int
    rt_warmup: int
    latency_events: int
    latency_rate: float
    recovery_down: int
    recovery_repeats: int
    import_runs: int
    memory_items: int
    idle_seconds: float


SIZES: Dict[str, Size] = {
    "tiny": Size(
        name="tiny",
        repeats=1,
        paging_items=400,
        page_size=100,
        decode_items=2_000,
        rt_events=300,
        rt_warmup=30,
        latency_events=60,
        latency_rate=500.0,
        recovery_down=10,
        recovery_repeats=1,
        import_runs=2,
        memory_items=1_000,
        idle_seconds=0.5,
    ),
    "full": Size(
        name="full",
        repeats=3,
        paging_items=20_000,
        page_size=100,
        decode_items=100_000,
        rt_events=20_000,
        rt_warmup=500,
        latency_events=3_000,
        latency_rate=1_000.0,
        recovery_down=200,
        recovery_repeats=5,
        import_runs=15,
        memory_items=100_000,
        idle_seconds=5.0,
    ),
}

#: the size of a ``conversation.message`` frame in the issue's peer table
FRAME_BYTES = 743


class SDKUnavailable(RuntimeError):
    """The part of the SDK a row needs is not there (yet)."""


def load_client() -> Any:
    """``signalwire_conversation.Client``, or :class:`SDKUnavailable` saying why not."""
    try:
        from signalwire_conversation import Client
    except ImportError as exc:
        raise SDKUnavailable(f"signalwire_conversation.Client: {exc}") from None
    return Client


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Counter:
    """Counts deliveries from any thread; ``wait()`` until ``target`` is reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.count = 0
        self.target = 0
        self.last = 0.0
        self.first = 0.0

    def arm(self, target: int) -> None:
        with self._lock:
            self.count = 0
            self.target = target
            self._done.clear()

    def hit(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first = now
            if self.count >= self.target:
                self.last = now
                self._done.set()

    def hit_one_thread(self) -> None:
        """:meth:`hit` for callers that are always the same thread (no lock)."""
        self.count += 1
        if self.count >= self.target:
            self.last = time.perf_counter()
            self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` (e.g. a counter in the server process) for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def best(values: List[float], higher_is_better: bool) -> Optional[float]:
    if not values:
        return None
    return max(values) if higher_is_better else min(values)
