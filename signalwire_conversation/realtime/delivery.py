"""The delivery decisions, as pure functions and small values: server positions, resume cursors,
de-duplication, gap-fill planning.

Kept apart from the threads so each rule can be tested on its own. Every decision here compares
**server** timestamps with server timestamps (and message ids): the local clock is never read,
so the guarantees hold whatever the client's clock says.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Deque, Hashable, Iterable, List, Optional, Set, Tuple

from .._timestamps import MILLISECONDS_THRESHOLD
from ..models import ConversationMessage, ConversationMessageEvent, event_from_message

__all__ = [
    "MILLISECONDS_THRESHOLD",
    "ts_seconds",
    "RecentIds",
    "Position",
    "encode_cursor",
    "decode_cursor",
    "position_of_newest",
    "plan_recovery",
    "since_for",
]

#: The version tag of the cursors this module writes.
CURSOR_VERSION = "1"


def ts_seconds(ts: Any) -> Optional[float]:
    """A wire timestamp in seconds since the epoch (``None`` when absent or not a finite number)."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    if not math.isfinite(ts):
        return None
    return ts / 1000.0 if ts >= MILLISECONDS_THRESHOLD else float(ts)


class RecentIds:
    """The ids of the recently delivered messages (a set with FIFO eviction).

    Holds the last ``maxlen`` ids, and beyond that every id whose server ``ts`` is within
    ``window`` seconds of the newest one added: a gap fill re-reads ``window`` seconds (its
    overlap) before a subscription's position, so every message it can bring back again is
    still recognised, whatever the rate (a burst of more than ``maxlen`` messages inside the
    window only makes the set larger for as long as the burst is that recent). A duplicate
    older than both bounds is not recognised; a gap fill never reaches that far back.
    """

    __slots__ = ("maxlen", "window", "_order", "_ids", "_newest")

    def __init__(self, maxlen: int = 10_000, *, window: float = 0.0) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen!r}")
        if not window >= 0.0:
            raise ValueError(f"window must be a number of seconds >= 0, got {window!r}")
        self.maxlen = maxlen
        self.window = window
        self._order: Deque[Tuple[Hashable, float]] = collections.deque()
        self._ids: Set[Hashable] = set()
        self._newest = -math.inf

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: Hashable, ts: float = -math.inf) -> bool:
        """Remember ``message_id`` (stamped ``ts`` by the server, in seconds); ``False`` when it
        was already known (a duplicate)."""
        ids = self._ids
        if message_id in ids:
            return False
        ids.add(message_id)
        order = self._order
        order.append((message_id, ts))
        if ts > self._newest:
            self._newest = ts
        if len(order) > self.maxlen:
            keep_from = self._newest - self.window
            while len(order) > self.maxlen:
                oldest_ts = order[0][1]
                if oldest_ts >= keep_from and oldest_ts != -math.inf:
                    break  # within the window of the newest (an id without ts never is)
                ids.discard(order.popleft()[0])
        return True


#: How many ids sharing one timestamp a position remembers (ties are rare: float seconds).
_MAX_TIES = 1000


class Position:
    """A point in the server's message order: a server timestamp (seconds) and the ids of the
    messages stamped exactly then that are at or before the point.

    A message is *after* the position when its ``ts`` is greater, or equal and its id is not one
    of ``ids``. The empty position (``ts = -inf``) is before every message. Mutable: a
    subscription advances its own as it delivers (:meth:`advance`).
    """

    __slots__ = ("ts", "ids")

    def __init__(self, ts: float = -math.inf, ids: Iterable[str] = ()) -> None:
        self.ts = ts
        self.ids: Set[str] = set(ids)

    @property
    def empty(self) -> bool:
        """``True`` before any message (nothing is at or before this point)."""
        return self.ts == -math.inf

    def precedes(self, ts: float, message_id: str) -> bool:
        """``True`` when the message ``(ts, message_id)`` is after this position."""
        return ts > self.ts or (ts == self.ts and message_id not in self.ids)

    def advance(self, ts: float, message_id: str) -> None:
        """Move to ``(ts, message_id)`` when that is later; never moves back."""
        if ts > self.ts:
            self.ts = ts
            self.ids = {message_id}
        elif ts == self.ts and len(self.ids) < _MAX_TIES:
            self.ids.add(message_id)

    def copy(self) -> "Position":
        return Position(self.ts, self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Position) and other.ts == self.ts and other.ids == self.ids

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Position(ts={self.ts!r}, ids={sorted(self.ids)!r})"


def encode_cursor(ts: float, message_id: str) -> str:
    """The resume cursor of the message ``(ts, message_id)``: ``"1:<ts>:<id>"``.

    ``<ts>`` is the server's timestamp in seconds, written so that it reads back exactly, and
    ``<id>`` the message id. Treat it as opaque: the format may change with its version tag.
    """
    return f"{CURSOR_VERSION}:{ts!r}:{message_id}"


def decode_cursor(cursor: Any) -> Tuple[float, str]:
    """``(ts, message_id)`` of a cursor made by :func:`encode_cursor`; ``ValueError`` when it is
    not one."""
    if not isinstance(cursor, str):
        raise ValueError(f"a cursor is a str (an event's .cursor), got {type(cursor).__name__}")
    parts = cursor.split(":", 2)
    if len(parts) != 3 or parts[0] != CURSOR_VERSION or not parts[2]:
        raise ValueError(f"not a cursor made by this SDK (an event's .cursor): {cursor[:80]!r}")
    try:
        ts = float(parts[1])
    except ValueError:
        raise ValueError(f"not a cursor made by this SDK (bad timestamp): {cursor[:80]!r}") from None
    if not math.isfinite(ts) or ts < 0:
        raise ValueError(f"not a cursor made by this SDK (bad timestamp): {cursor[:80]!r}")
    return ts, parts[2]


def _as_event(item: Any) -> Optional[ConversationMessageEvent]:
    if isinstance(item, ConversationMessageEvent):
        return item
    if isinstance(item, ConversationMessage):
        return event_from_message(item)
    return None


def position_of_newest(newest_first: Iterable[Any]) -> Position:
    """The server's "now" as a position: the newest stored message and any others stamped at
    the same time (from the first items of a newest-first listing); the empty position when the
    server has no message for this subscriber."""
    top: Optional[float] = None
    ids: List[str] = []
    for item in newest_first:
        event = _as_event(item)
        if event is None or not isinstance(event.id, str):
            continue
        ts = ts_seconds(event.ts)
        if ts is None:
            continue
        if top is None or ts > top:
            top, ids = ts, [event.id]
        elif ts == top:
            ids.append(event.id)
    return Position() if top is None else Position(top, ids)


def plan_recovery(
    fetched_newest_first: Iterable[Any],
    *,
    after: Position,
    anchor: Optional[str] = None,
) -> List[Tuple[float, ConversationMessageEvent]]:
    """The fetched messages that are after ``after``, oldest first, each once, with its ``ts``
    in seconds.

    ``fetched_newest_first`` is a listing in the server's order (newest first), as the REST
    lists give it; messages stamped at the same time keep the server's order. A message without
    an id or a timestamp cannot be placed and is left out. ``anchor`` is the id of the message a
    cursor points at: messages sharing its timestamp and listed after it (older) are left out.
    """
    kept: List[Tuple[float, int, ConversationMessageEvent]] = []
    batch_ids: Set[str] = set()
    anchor_index: Optional[int] = None
    for index, item in enumerate(fetched_newest_first):
        event = _as_event(item)
        if event is None or not isinstance(event.id, str) or not event.id:
            continue
        ts = ts_seconds(event.ts)
        if ts is None:
            continue
        if anchor is not None and event.id == anchor and ts == after.ts:
            anchor_index = index
        if not after.precedes(ts, event.id) or event.id in batch_ids:
            continue
        batch_ids.add(event.id)
        kept.append((ts, index, event))
    if anchor_index is not None:
        # listed after the anchor with the anchor's timestamp: older than it
        kept = [k for k in kept if not (k[0] == after.ts and k[1] > anchor_index)]
    kept.sort(key=lambda k: (k[0], -k[1]))
    return [(ts, event) for ts, _, event in kept]


def since_for(positions: Iterable[Position], overlap: float) -> float:
    """Where a gap fill starts (server seconds): the earliest position minus ``overlap``, so
    that a message the server stamped slightly out of order is not missed (what this fetches
    twice is dropped by id); ``0.0`` when a position is empty (fetch everything)."""
    earliest: Optional[float] = None
    for position in positions:
        if earliest is None or position.ts < earliest:
            earliest = position.ts
    if earliest is None or earliest == -math.inf:
        return 0.0
    return max(0.0, earliest - overlap)

