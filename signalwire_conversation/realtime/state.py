"""The lifecycle of a listener, as one enum."""

from __future__ import annotations

import enum

__all__ = ["ConnectionState"]


class ConnectionState(enum.Enum):
    """Where a :class:`~signalwire_conversation.realtime.Listener` is in its life.

    ``IDLE`` → ``CONNECTING`` → ``CONNECTED`` ⇄ ``RECONNECTING`` → ``RECOVERING`` →
    ``CONNECTED`` ... → ``CLOSED``. ``CLOSED`` is final: after ``close()`` (or a fatal error
    such as a revoked token) a listener never connects again.
    """

    #: Created, never started (no thread exists yet).
    IDLE = "idle"
    #: The first connection is being made (retried with backoff until it succeeds).
    CONNECTING = "connecting"
    #: Connected and authenticated: live events flow.
    CONNECTED = "connected"
    #: The link was lost; a new one is being made (events missed meanwhile are fetched over
    #: REST once it is back).
    RECONNECTING = "reconnecting"
    #: Connected, and catching up over REST: after a reconnect, after the event queue
    #: overflowed, or while an ``after=`` backlog is read. Live messages wait behind the gap so
    #: that order holds; a failing fetch is retried (each failure goes to ``on_error``).
    RECOVERING = "recovering"
    #: Closed by ``close()`` or by a fatal error; final.
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value
