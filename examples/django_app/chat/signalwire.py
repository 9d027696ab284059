"""One SignalWire client per process, shared by every request thread (it is thread-safe)."""

from __future__ import annotations

import atexit
import threading
from typing import Optional

from django.conf import settings

from signalwire_conversation import Client

_lock = threading.Lock()
_client: Optional[Client] = None


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
    """Close and forget the process-wide client (tests call this between runs)."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.close()
