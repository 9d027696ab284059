"""The realtime listener: a threaded websocket client behind ``subscribe()``.

``Listener`` owns the websocket (reader thread), the dispatcher thread and the subscriptions;
``Subscription`` is what ``subscribe()`` returns; ``ConnectionState`` is the lifecycle. See
docs/realtime.md for the delivery guarantees.
"""

from .hub import RealtimeHub
from .listener import Listener
from .state import ConnectionState
from .subscription import Subscription

__all__ = ["Listener", "RealtimeHub", "Subscription", "ConnectionState"]
