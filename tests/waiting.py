"""The one bounded wait of the test suites: poll a condition until it holds or time runs out."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    message: str = "condition",
    *,
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` until truthy; ``AssertionError`` naming ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(interval)
