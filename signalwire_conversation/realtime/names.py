"""Names the listener learns from live events, to fill them in on recovered ones.

A message fetched over REST (gap fill, ``after=`` backlog) has no ``conversation_name`` or
``user_name``; a live event of the same conversation or sender had them. :class:`KnownNames`
remembers the last ones seen (bounded) and fills a recovered event's blanks.
"""

from __future__ import annotations

import collections
from typing import Any, Dict, Optional

import attrs

from ..models import ConversationMessageEvent

__all__ = ["KnownNames"]


class _Bounded:
    """A dict that forgets its oldest key beyond ``maxlen`` entries."""

    __slots__ = ("maxlen", "_data")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._data: "collections.OrderedDict[str, str]" = collections.OrderedDict()

    def put(self, key: str, value: str) -> None:
        data = self._data
        if data.get(key) == value:
            return
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.maxlen:
            data.popitem(last=False)

    def get(self, key: Optional[str]) -> Optional[str]:
        return None if key is None else self._data.get(key)


class KnownNames:
    """Conversation and sender names seen on live events (the last ``maxlen`` of each).

    Used from the dispatcher thread only.
    """

    __slots__ = ("_conversations", "_users")

    def __init__(self, maxlen: int = 10_000) -> None:
        self._conversations = _Bounded(maxlen)
        self._users = _Bounded(maxlen)

    def learn(self, event: ConversationMessageEvent) -> None:
        """Remember the names a live event carries."""
        name = event.conversation_name
        if name and event.conversation_id and self._conversations._data.get(event.conversation_id) != name:
            self._conversations.put(event.conversation_id, name)
        name = event.user_name
        if name and event.user_id and self._users._data.get(event.user_id) != name:
            self._users.put(event.user_id, name)

    def fill(self, event: ConversationMessageEvent) -> ConversationMessageEvent:
        """``event`` with its missing names filled from what was learned (the same object
        when there is nothing to fill)."""
        changes: Dict[str, Any] = {}
        if event.conversation_name is None:
            name = self._conversations.get(event.conversation_id)
            if name is not None:
                changes["conversation_name"] = name
        if event.user_name is None:
            name = self._users.get(event.user_id)
            if name is not None:
                changes["user_name"] = name
        return attrs.evolve(event, **changes) if changes else event
