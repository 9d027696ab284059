"""SignalWire clients of the project, shared by every request thread (they are thread-safe).

- :func:`client_for`: the signed-in user's own client. One per user, kept across requests by a
  :class:`~signalwire_conversation.SubscriberClients` (bounded, one connection pool), tokens
  minted from the project credentials (``SIGNALWIRE_PROJECT_ID``/``_API_TOKEN``/``_SPACE``).
- :func:`get_client`: one client per process for a service subscriber (``SIGNALWIRE_TOKEN``),
  also what the ``listen`` command uses.
"""

from __future__ import annotations

import atexit
import threading
from typing import Optional

from django.conf import settings

from django.http import HttpRequest

from signalwire_conversation import Client, SubscriberClients, SubscriberTokens

_lock = threading.Lock()
_client: Optional[Client] = None
_clients: Optional[SubscriberClients] = None


def subscriber_clients() -> SubscriberClients:
    """The process-wide per-user clients, made on first use, closed when the process exits."""
    global _clients
    with _lock:
        if _clients is None:
            tokens = SubscriberTokens(
                getattr(settings, "SIGNALWIRE_PROJECT_ID", None),
                getattr(settings, "SIGNALWIRE_API_TOKEN", None),
                getattr(settings, "SIGNALWIRE_SPACE", None),
            )
            _clients = SubscriberClients(
                tokens, max_clients=500, base_url=getattr(settings, "SIGNALWIRE_BASE_URL", None)
            )
            atexit.register(_clients.close)
        return _clients


def current_user(request: HttpRequest) -> Optional[str]:
    """The signed-in user's reference. A stand-in for your login: the ``X-User`` header (with
    ``django.contrib.auth``: ``request.user.get_username()``)."""
    return request.headers.get("X-User") or None


def client_for(request: HttpRequest) -> Optional[Client]:
    """The signed-in user's client (``None`` when nobody is signed in)."""
    user = current_user(request)
    return subscriber_clients().get(user) if user else None


def make_client() -> Client:
    """A new client from the settings (``None`` settings fall back to ``SIGNALWIRE_*``)."""
    return Client(
        token=getattr(settings, "SIGNALWIRE_TOKEN", None),
        base_url=getattr(settings, "SIGNALWIRE_BASE_URL", None),
    )


def get_client() -> Client:
    """The process-wide client, created on first use and closed when the process exits."""
    global _client
    with _lock:
        if _client is None:
            _client = make_client()
            atexit.register(_client.close)
        return _client


def close_client() -> None:
    """Close and forget the process-wide clients (tests call this between runs)."""
    global _client, _clients
    with _lock:
        client, _client = _client, None
        clients, _clients = _clients, None
    if client is not None:
        client.close()
    if clients is not None:
        clients.close()
        clients.tokens.close()
