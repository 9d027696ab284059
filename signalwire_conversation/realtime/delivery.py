"""The delivery decisions, as pure functions: timestamps, de-duplication, gap-fill planning.

Kept apart from the threads so each rule can be tested on its own.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Hashable, Iterable, List, Optional, Set

from .._timestamps import MILLISECONDS_THRESHOLD
from ..models import ConversationMessage, ConversationMessageEvent, event_from_message

__all__ = ["MILLISECONDS_THRESHOLD", "ts_seconds", "RecentIds", "gap_since", "plan_gap_fill"]


def ts_seconds(ts: Any) -> Optional[float]:
    """A wire timestamp in seconds since the epoch (``None`` when absent or not a number)."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    return ts / 1000.0 if ts >= MILLISECONDS_THRESHOLD else float(ts)


class RecentIds:
    """The ids of the last ``maxlen`` delivered messages (a set with FIFO eviction).

    Bounded memory: a duplicate older than the last ``maxlen`` messages is not recognised.
    The overlap of a gap fill and the server's redeliveries are far inside that window.
    """

    __slots__ = ("maxlen", "_order", "_ids")

    def __init__(self, maxlen: int = 10_000) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen!r}")
        self.maxlen = maxlen
        self._order: Deque[Hashable] = collections.deque()
        self._ids: Set[Hashable] = set()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: Hashable) -> bool:
        """Remember ``message_id``; ``False`` when it was already known (a duplicate)."""
        if message_id in self._ids:
            return False
        self._ids.add(message_id)
        self._order.append(message_id)
        if len(self._order) > self.maxlen:
            self._ids.discard(self._order.popleft())
        return True


def gap_since(last_ts: Optional[float], baseline: Optional[float], overlap: float) -> float:
    """Where a gap fill starts (seconds): the last delivered ``ts`` (else the first connect
    time) minus ``overlap``, so that messages with equal or slightly skewed timestamps are not
    missed (the duplicates this fetches are dropped by id)."""
    base = last_ts if last_ts is not None else baseline
    if base is None:
        base = 0.0
    return max(0.0, base - overlap)


def _as_event(item: Any) -> Optional[ConversationMessageEvent]:
    if isinstance(item, ConversationMessageEvent):
        return item
    if isinstance(item, ConversationMessage):
        return event_from_message(item)
    return None


def plan_gap_fill(
    fetched: Iterable[Any],
    *,
    since: float,
    last_ts: Optional[float],
    seen: Callable[[Hashable], bool],
) -> List[ConversationMessageEvent]:
    """The recovered messages to deliver, in ``(ts, id)`` order.

    Kept: messages with ``ts >= since`` whose id was not delivered yet (and appears once in
    ``fetched``). A message without ``ts`` cannot be placed and is skipped; one without ``id``
    cannot be de-duplicated, so it is kept only when strictly newer than ``last_ts``.
    """
    chosen: List[ConversationMessageEvent] = []
    batch_ids: Set[Hashable] = set()
    for item in fetched:
        event = _as_event(item)
        if event is None:
            continue
        ts = ts_seconds(event.ts)
        if ts is None or ts < since:
            continue
        if event.id is None:
            if last_ts is not None and ts <= last_ts:
                continue
        else:
            if event.id in batch_ids or seen(event.id):
                continue
            batch_ids.add(event.id)
        chosen.append(event)
    chosen.sort(key=lambda e: (ts_seconds(e.ts) or 0.0, e.id or ""))
    return chosen
