"""Capped exponential backoff with full jitter.

``delay(attempt)`` is uniform in ``[0, min(maximum, initial * multiplier ** attempt)]`` ("full
jitter": many clients cut off at the same moment spread their reconnects over the whole window
instead of arriving together). All the randomness is in :meth:`Backoff._random`, so a test can
patch that one method.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]

_MAX_EXPONENT = 64  # beyond this the ceiling is the cap anyway; avoids float overflow


class Backoff:
    """The wait before a retry: capped exponential growth, full jitter."""

    __slots__ = ("initial", "maximum", "multiplier")

    def __init__(self, initial: float = 0.25, maximum: float = 15.0, multiplier: float = 2.0) -> None:
        if not initial > 0 or not maximum >= initial or not multiplier >= 1:
            raise ValueError(
                f"backoff needs 0 < initial <= maximum and multiplier >= 1, got "
                f"initial={initial!r}, maximum={maximum!r}, multiplier={multiplier!r}"
            )
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.multiplier = float(multiplier)

    def ceiling(self, attempt: int) -> float:
        """The largest wait for retry number ``attempt`` (0 for the first retry)."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        return min(self.maximum, self.initial * self.multiplier**exponent)

    def delay(self, attempt: int) -> float:
        """A random wait in ``[0, ceiling(attempt)]`` seconds."""
        return self._random(self.ceiling(attempt))

    def _random(self, upper: float) -> float:
        """The only source of randomness (patch this in tests)."""
        return random.uniform(0.0, upper)

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial!r}, maximum={self.maximum!r}, "
            f"multiplier={self.multiplier!r})"
        )
