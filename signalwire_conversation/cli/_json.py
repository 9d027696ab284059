"""The ``--json`` shape of each model: one documented set of keys per model, the same in every
command (``messages``, ``send`` and ``tail`` print a message the same way; ``tail`` adds the
live event's keys). Keys are the SDK's field names; a value the server did not send is
``null``. ``ts``-like numbers are as the server sent them; each has an ISO 8601 companion in
UTC (``time``, ``created_time``, ``last_message_time``). The undecoded server answer
(``raw``) and fields of other API generations are left out: the SDK's models have them.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = [
    "MESSAGE_KEYS",
    "EVENT_KEYS",
    "CONVERSATION_KEYS",
    "JOIN_KEYS",
    "SUBSCRIBER_KEYS",
    "iso_utc",
    "message_json",
    "event_json",
    "sent_json",
    "conversation_json",
    "join_json",
    "subscriber_json",
]

MESSAGE_KEYS: Tuple[str, ...] = (
    "id",
    "conversation_id",
    "user_id",
    "user_name",
    "ts",
    "time",
    "type",
    "subtype",
    "kind",
    "text",
    "metadata",
    "details",
)
#: A live (or recovered) message: a message plus what the event knows (``cursor``: where
#: ``tail --cursor-file`` or ``subscribe(after=...)`` resumes).
EVENT_KEYS: Tuple[str, ...] = MESSAGE_KEYS + ("conversation_name", "is_author", "recovered", "cursor")
CONVERSATION_KEYS: Tuple[str, ...] = (
    "id",
    "name",
    "group_id",
    "from_fabric_address_id",
    "created_at",
    "created_time",
    "last_message_at",
    "last_message_time",
    "metadata",
)
JOIN_KEYS: Tuple[str, ...] = ("group_id", "address_ids", "from_address_id")
SUBSCRIBER_KEYS: Tuple[str, ...] = ("id", "display_name", "address_ids")


def iso_utc(value: Optional[_dt.datetime]) -> Optional[str]:
    """``2024-05-01T12:00:00.250000+00:00`` (ISO 8601, UTC), or ``None``."""
    return None if value is None else value.astimezone(_dt.timezone.utc).isoformat()


def _pick(data: Mapping[str, Any], keys: Tuple[str, ...], **computed: Any) -> Dict[str, Any]:
    return {key: computed[key] if key in computed else data.get(key) for key in keys}


def message_json(message: Any) -> Dict[str, Any]:
    """A stored message (:class:`~signalwire_conversation.ConversationMessage`)."""
    return _pick(message.to_dict(), MESSAGE_KEYS, time=iso_utc(message.datetime))


def event_json(event: Any) -> Dict[str, Any]:
    """A live or recovered message (:class:`~signalwire_conversation.ConversationMessageEvent`)."""
    return _pick(event.to_dict(), EVENT_KEYS, time=iso_utc(event.datetime))


def sent_json(sent: Any, user_name: Optional[str] = None) -> Dict[str, Any]:
    """What ``send`` sent: the message shape, from the server's answer (the fields it did not
    return are ``null``) and the sender's ``user_name`` when known."""
    from ..errors import ResponseValidationError
    from ..models import ConversationMessage

    try:
        message = ConversationMessage.from_dict(sent.raw) if sent.raw else ConversationMessage()
    except ResponseValidationError:  # an answer that is not a message: the known fields do
        message = ConversationMessage()
    data = message_json(message)
    for key in ("id", "conversation_id", "user_id", "text"):
        value = getattr(sent, key, None)
        if value is not None:
            data[key] = value
    if user_name is not None:
        data["user_name"] = user_name
    return data


def conversation_json(conversation: Any) -> Dict[str, Any]:
    """A conversation (:class:`~signalwire_conversation.Conversation`)."""
    return _pick(
        conversation.to_dict(),
        CONVERSATION_KEYS,
        created_time=iso_utc(conversation.created_datetime),
        last_message_time=iso_utc(conversation.last_message_datetime),
    )


def join_json(result: Any) -> Dict[str, Any]:
    """What ``join`` answered (:class:`~signalwire_conversation.JoinResult`)."""
    return _pick(result.to_dict(), JOIN_KEYS)


def subscriber_json(info: Any) -> Dict[str, Any]:
    """The token's subscriber (:class:`~signalwire_conversation.SubscriberInfo`)."""
    return _pick(info.to_dict(), SUBSCRIBER_KEYS)
