"""The realtime hub: many clients' listeners on a fixed set of shared threads.

``loop.py`` (the I/O thread), ``timers.py`` (the timer thread), ``pool.py`` (the ordered
worker pool), ``framing.py`` (websocket framing, sans I/O), ``session.py`` (one client's
websocket state machine), ``listener.py`` (the listener on the hub), ``hub.py`` (the public
:class:`RealtimeHub`). See docs/realtime.md, "Many subscribers in one process".
"""

from .hub import RealtimeHub

__all__ = ["RealtimeHub"]
