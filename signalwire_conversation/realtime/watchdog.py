"""The watchdog thread: closes a socket whose reader is stuck inside one frame or a handshake.

The reader notices a silent socket itself (its read timeout); this thread catches a reader stuck
*inside* one frame (trickled byte by byte, or endless) or inside a handshake that never
completes, and shuts that socket down so the reader reconnects.
"""

from __future__ import annotations

import time

from .._logging import get_logger
from .connection import shutdown_socket
from .core import ListenerCore

__all__ = ["WatchdogPart", "WATCHDOG_GRACE"]

logger = get_logger("signalwire_conversation.realtime")

#: How long past ``ping_timeout`` the watchdog thread waits before it aborts a reader stuck
#: inside one frame (trickled or endless); the reader itself notices silence on time.
WATCHDOG_GRACE = 1.0


class WatchdogPart(ListenerCore):
    """The ``signalwire-watchdog`` thread of a listener."""

    def _run_watchdog(self) -> None:
        while not self._closing.is_set():
            wait = self.ping_timeout
            now = time.monotonic()
            conn = self._conn
            opening = self._opening
            if conn is not None:
                limit = self.ping_timeout + WATCHDOG_GRACE
                silent = now - conn.last_frame_at
                if silent > limit:
                    self.stats["dead_links"] += 1
                    logger.warning(
                        "no complete frame for %.1fs (a trickled or endless frame?): closing the link",
                        silent,
                    )
                    conn.abort()
                else:
                    wait = limit - silent
            elif opening is not None:
                limit = self.connect_timeout + WATCHDOG_GRACE
                elapsed = now - opening[1]
                if elapsed > limit:
                    logger.warning("the websocket handshake is stuck after %.1fs: closing it", elapsed)
                    shutdown_socket(opening[0])
                else:
                    wait = limit - elapsed
            if self._watch_kick.wait(max(0.05, wait)):
                self._watch_kick.clear()

