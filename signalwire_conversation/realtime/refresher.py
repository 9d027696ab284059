"""The token-refresh thread (only with a callable token): a fresh token shortly before the
current one expires, sent with ``signalwire.reauthenticate`` on the live socket."""

from __future__ import annotations

import time
from typing import Optional

from .._logging import get_logger
from ..errors import RealtimeError
from .connection import Connection, is_auth_refusal, token_expiry
from .core import ListenerCore
from .state import ConnectionState

__all__ = ["RefresherPart"]

logger = get_logger("signalwire_conversation.realtime")


class RefresherPart(ListenerCore):
    """The ``signalwire-token-refresh`` thread of a listener."""

    def _refresh_due(self) -> Optional[float]:
        if self._expires_at is None:
            return None
        lifetime = self._token_lifetime or 0.0
        margin = min(self._refresh_margin, lifetime / 2.0)
        return self._expires_at - margin

    def _run_refresher(self) -> None:
        failures = 0
        while not self._closing.is_set():
            due = self._refresh_due()
            timeout = None if due is None else self._refresh_wait(due)
            if self._refresh_kick.wait(timeout):
                self._refresh_kick.clear()
                continue
            if self._closing.is_set():
                return
            conn = self._conn
            if conn is None or self._state not in (ConnectionState.CONNECTED, ConnectionState.RECOVERING):
                # not connected: the reader refreshes on its own if the token expires
                if self._refresh_kick.wait(1.0):
                    self._refresh_kick.clear()
                continue
            try:
                self._reauthenticate(conn)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                logger.warning("token refresh failed: %s; retrying in %.2fs", exc, delay)
                if self._closing.wait(delay):
                    return

    def _reauthenticate(self, conn: Connection) -> None:
        stale = self._tokens.get()
        self._last_refresh_at = time.time()
        token = self._tokens.refresh(stale=stale)
        self.stats["token_refreshes"] += 1
        pending = conn.request(
            "signalwire.reauthenticate",
            {"authentication": {"project": self._project_id, "jwt_token": token}},
        )
        if not pending.wait(self.connect_timeout):
            raise RealtimeError(f"no answer to signalwire.reauthenticate within {self.connect_timeout:g}s")
        if pending.error is not None:
            if is_auth_refusal(pending.error):
                # the live session is unaffected; the next connect uses the fresh token
                logger.warning("signalwire.reauthenticate refused: %s", pending.error)
            raise RealtimeError(f"signalwire.reauthenticate failed: {pending.error}")
        expires_at = token_expiry(pending.result)
        lifetime = self._token_lifetime or 0.0
        if expires_at is None:
            # no expiry in the answer: assume the new token lives as long as the last one
            expires_at = self._server_now() + lifetime if lifetime > 0 else None
            self._expires_at = expires_at
        else:
            self._expires_at = expires_at
            self._token_lifetime = max(0.0, expires_at - self._server_now())
        logger.info("token refreshed on the live websocket")

