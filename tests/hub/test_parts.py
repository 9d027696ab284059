"""The hub's ordered worker pool and timer heap, on their own."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

from signalwire_conversation.realtime.hub.pool import OrderedPool
from signalwire_conversation.realtime.hub.timers import Timers
from tests.waiting import wait_until


def test_a_keys_tasks_run_in_order_and_never_concurrently_while_keys_run_in_parallel() -> None:
    pool = OrderedPool(4)
    seen: List[Tuple[str, int]] = []
    running = {"a": 0, "b": 0}
    overlap = []
    lock = threading.Lock()
    b_done = threading.Event()

    def task(key: str, i: int) -> None:
        with lock:
            running[key] += 1
            if running[key] > 1:
                overlap.append((key, i))
        if key == "a" and i == 0:
            assert b_done.wait(5), "key b did not run while key a was busy"
        with lock:
            seen.append((key, i))
            running[key] -= 1
        if key == "b" and i == 49:
            b_done.set()

    try:
        for i in range(50):
            pool.submit("a", lambda i=i: task("a", i))
            pool.submit("b", lambda i=i: task("b", i))
        wait_until(lambda: len(seen) == 100, message="every task")
        assert not overlap
        assert [i for k, i in seen if k == "a"] == list(range(50))
        assert [i for k, i in seen if k == "b"] == list(range(50))
        wait_until(lambda: pool.busy() == 0, message="idle keys dropped")
    finally:
        assert pool.close(5) == []
    assert pool.submit("a", lambda: None) is False


def test_timers_fire_in_deadline_order_and_cancelled_ones_never() -> None:
    timers = Timers()
    fired: List[str] = []
    try:
        timers.call_later(0.2, lambda: fired.append("late"))
        early = timers.call_later(0.05, lambda: fired.append("cancelled"))
        timers.call_later(0.1, lambda: fired.append("middle"))
        timers.call_later(0.0, lambda: fired.append("now"))
        early.cancel()
        wait_until(lambda: len(fired) == 3, message="three timers")
        time.sleep(0.05)
        assert fired == ["now", "middle", "late"]
    finally:
        assert timers.close(5)
    assert not any(t.name == "signalwire-hub-timers" for t in threading.enumerate())
