"""signalwire_conversation: the Python SDK for the SignalWire Conversation API.

Blocking calls that return typed models and lazy pagination iterators, plus a background
listener that hands every new message to your callbacks::

    from signalwire_conversation import Client

    with Client(token="...") as client:
        for conversation in client.conversation.get_conversations():
            print(conversation.name)

One :class:`Client` may be shared by many threads.
"""

from __future__ import annotations

import typing as _typing

from ._version import __version__
from .client import Client
from .conversation import ConversationAPI
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RealtimeError,
    ResponseValidationError,
    ServerError,
    SignalWireError,
    UnprocessableEntityError,
    ValidationError,
)
from .models import (
    Conversation,
    ConversationMessage,
    ConversationMessageEvent,
    JoinResult,
    SentMessage,
    SubscriberInfo,
)
from .pagination import Page
from .subscriber_clients import SubscriberClients
from .tokens import SubscriberTokens

if _typing.TYPE_CHECKING:
    from .realtime import ConnectionState, RealtimeHub, Subscription

# The realtime package (and websocket-client under it) is imported on first use, so a
# REST-only program never pays for it.
_LAZY = {"ConnectionState": "realtime", "Subscription": "realtime", "RealtimeHub": "realtime"}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    # the public names and the module's dunders: not the submodules, the helpers above, nor the
    # ``annotations`` that ``from __future__ import annotations`` binds
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted(dunders | set(__all__))


__all__ = [
    "__version__",
    "Client",
    "SubscriberTokens",
    "SubscriberClients",
    "ConversationAPI",
    "Page",
    "Subscription",
    "ConnectionState",
    "RealtimeHub",
    "Conversation",
    "ConversationMessage",
    "ConversationMessageEvent",
    "JoinResult",
    "SentMessage",
    "SubscriberInfo",
    "SignalWireError",
    "ConfigurationError",
    "ValidationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "ResponseValidationError",
    "RealtimeError",
]
