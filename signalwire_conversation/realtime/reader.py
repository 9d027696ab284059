"""The reader thread: owns the websocket.

Connects (and reconnects forever, capped exponential backoff with full jitter), authenticates
(resume, or fresh when a resume is refused), reads frames, acks events, answers pings, watches
liveness, and puts the messages it reads on the bounded event queue, undecoded. After a
reconnect (and after the queue overflowed) it queues a gap-fill marker in front of what it reads
next. It never runs a subscription callback or hook. (It may call the token callable while the
link is down, to get a fresh token for a fresh connect.)
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

from .._logging import get_logger
from ..errors import AuthenticationError, RealtimeError, SignalWireError
from .connection import (
    ConnectFatal,
    Connection,
    ConnectionLost,
    ConnectRefused,
    RawEvent,
    shutdown_socket,
    connect_params,
    project_id_of,
    token_expiry,
)
from .core import Fatal, Fill, ListenerCore, RetryNow
from .state import ConnectionState

__all__ = ["ReaderPart"]

logger = get_logger("signalwire_conversation.realtime")


class ReaderPart(ListenerCore):
    """The ``signalwire-reader`` thread of a listener."""

    def _run_reader(self) -> None:
        failures = 0
        delay = 0.0
        try:
            while not self._closing.is_set():
                if delay > 0 and self._closing.wait(delay):
                    break
                self._transition(
                    ConnectionState.RECONNECTING if self._connected_once else ConnectionState.CONNECTING
                )
                try:
                    conn = self._connect()
                except RetryNow:
                    delay = 0.0
                    continue
                except (Fatal, ConnectFatal) as fatal:  # ConnectFatal: an untrusted certificate
                    self._fail(fatal.error)
                    return
                except (SignalWireError, OSError) as exc:
                    if self._closing.is_set():
                        break
                    self._last_error = exc
                    self.stats["connect_failures"] += 1
                    delay = self._backoff.delay(failures)
                    failures += 1
                    logger.warning(
                        "websocket connect failed (attempt %d): %s; retrying in %.2fs", failures, exc, delay
                    )
                    continue
                failures = 0
                self._serve(conn)
                delay = self._backoff.delay(0)
        except BaseException as exc:  # a bug of ours: never die silently
            logger.exception("the listener stopped for good: the reader thread failed")
            self._fail(RealtimeError(f"the reader thread failed: {type(exc).__name__}: {exc}"), logged=True)

    def _connect_params(self) -> Tuple[str, Dict[str, Any], bool]:
        """``(token, signalwire.connect params, resume)`` for the next connect (a fresh token
        first when it has expired and a fresh connect is due; may call the token callable)."""
        resume = bool(self._protocol and self._authorization_state)
        if (
            not resume
            and self._tokens.refreshable
            and self._expires_at is not None
            and self._server_now() >= self._expires_at - 1.0
        ):
            self._refresh_token("the token has expired")
        token = self._tokens.get()
        params = connect_params(
            token,
            protocol=self._protocol if resume else None,
            authorization_state=self._authorization_state if resume else None,
            agent=self._agent,
        )
        return token, params, resume

    def _connect(self) -> Connection:
        """Open, authenticate (resume when possible), announce; returns the live connection."""
        token, params, resume = self._connect_params()
        self._handshake_buffer = []
        try:
            try:
                conn = Connection.open(
                    self.relay_url,
                    timeout=self.connect_timeout,
                    verify=self._verify,
                    on_events=self._on_events,
                    on_authorization_state=self._on_authorization_state,
                    max_message_bytes=self._max_message_bytes,
                    on_socket=self._watch_opening,
                )
            finally:
                self._opening = None
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    raise ConnectionLost("closing")
                self._conn = conn
            self._watch_kick.set()
            try:
                result = conn.authenticate(params, self.connect_timeout)
            except BaseException:
                self._drop_connection(conn)
                raise
        except ConnectRefused as refused:
            self._handshake_buffer = None
            self._on_refused(refused, token=token, resume=resume)
            raise RetryNow() from None
        self._authenticated(result, resume)
        return conn

    def _authenticated(self, result: Dict[str, Any], resume: bool) -> None:
        """The ``signalwire.connect`` result is in: keep its state, count, queue the gap fill
        and what was read meanwhile, wake ``subscribe()``."""
        buffered, self._handshake_buffer = self._handshake_buffer, None

        protocol = result.get("protocol")
        if isinstance(protocol, str) and protocol:
            self._protocol = protocol
        self._project_id = project_id_of(result) or self._project_id
        expires_at = token_expiry(result)
        if expires_at is not None:
            self._expires_at = expires_at
            self._token_lifetime = max(0.0, expires_at - self._server_now())
        self._refreshed_since_success = False
        self.stats["connects"] += 1
        if resume:
            self.stats["resumes"] += 1
        was_connected = self._connected_once
        logger.info(
            "websocket %s to %s", "resumed" if resume else "connected", self.relay_url
        )
        if was_connected:
            # what was stored while the link was down is fetched over REST before what is
            # read from now on (RECOVERING until the dispatcher has delivered it)
            self._request_fill(Fill("reconnect"), connected=True)
        elif self._subs:
            # what was stored between the subscriptions' start and this first connection; the
            # dispatcher says CONNECTED (and wakes subscribe()) once it is delivered
            self._connected_once = True
            self._request_fill(Fill("connect"), first=True)
        else:
            self._transition(ConnectionState.CONNECTED)
        if buffered:
            self._offer(buffered)
        if not was_connected and not self._ready.is_set() and self._pending_fills == 0:
            self._connected_once = True
            self._ready.set()
        self._refresh_kick.set()  # reschedule the token refresh

    def _on_refused(self, refused: ConnectRefused, *, token: str, resume: bool) -> None:
        """Decide after an authentication refusal: fresh connect, fresh token, or fatal."""
        if resume:
            logger.info("resume refused (%s): connecting fresh", refused)
            self.stats["resumes_refused"] += 1
            self._protocol = None
            self._authorization_state = None
            if self._tokens.refreshable:
                self._refresh_token("the resume was refused")
            return
        if self._tokens.refreshable and not self._refreshed_since_success:
            self._refresh_token("the token was refused")
            return
        raise Fatal(
            AuthenticationError(
                f"the relay refused the token: {refused.message}",
                status_code=401,
                body=refused.error,
                method="signalwire.connect",
                url=self.relay_url,
            )
        )

    def _refresh_token(self, why: str) -> None:
        stale = self._tokens.get()
        logger.info("getting a fresh token: %s", why)
        try:
            self._tokens.refresh(stale=stale)
        except SignalWireError as exc:
            raise ConnectionLost(f"the token callable failed: {exc}") from exc
        self._refreshed_since_success = True
        self.stats["token_refreshes"] += 1
        self._expires_at = None

    def _serve(self, conn: Connection) -> None:
        """Read until the link is lost, dead or closed."""
        try:
            while not self._closing.is_set():
                if self._overflowed:
                    self._try_end_overflow()
                silent = time.monotonic() - conn.last_frame_at
                remaining = self.ping_timeout - silent
                if remaining <= 0:
                    self.stats["dead_links"] += 1
                    logger.warning(
                        "no frame from the relay for %.1fs (not even a ping): the link is dead; "
                        "reconnecting",
                        silent,
                    )
                    break
                if self._overflowed:
                    timeout = min(remaining, 0.05)  # poll for the moment the queue drains
                else:
                    # rounded down to 0.1 s so that a steady stream of frames keeps the same
                    # socket timeout (setting it costs a system call)
                    timeout = max(0.01, int(remaining * 10) / 10)
                conn.poll(timeout)
                if conn.server_time is not None and self._learn_server_clock(conn.server_time):
                    self._refresh_kick.set()  # the token's lifetime is now read on the server's clock
        except ConnectionLost as exc:
            if not self._closing.is_set():
                self._last_error = exc
                logger.info("websocket lost: %s", exc)
        finally:
            if not self._closing.is_set():
                self.stats["disconnects"] += 1
            self._drop_connection(conn)

    def _watch_opening(self, ws: Any) -> None:
        self._opening = (ws, time.monotonic())
        self._watch_kick.set()
        if self._closing.is_set():
            shutdown_socket(ws)

    def _drop_connection(self, conn: Connection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    def _on_authorization_state(self, state: str) -> None:
        self._authorization_state = state

    def _on_events(self, events: List[RawEvent]) -> None:
        self.stats["events_received"] += len(events)
        if self._handshake_buffer is not None:
            self._handshake_buffer.extend(events)
            return
        self._offer(events)

    def _offer(self, events: List[RawEvent]) -> None:
        """Queue live events; on overflow drop them and arrange a gap fill (never silently)."""
        if self._overflowed:
            self._try_end_overflow()
        taken = 0
        if not self._overflowed:
            taken = self._queue.offer_many(events)
            if taken == len(events):
                return
            self._overflowed = True
            logger.warning(
                "the event queue is full (%d messages): the callbacks are slower than the "
                "traffic; new live messages are dropped for now and will be fetched over REST "
                "(gap fill) once the queue has drained to %d",
                self._queue_size,
                self._low_water,
            )
        self.stats["dropped_on_overflow"] += len(events) - taken

    def _try_end_overflow(self) -> None:
        if self._queue.qsize() <= self._low_water:
            self._overflowed = False
            self._request_fill(Fill("overflow"))
            logger.warning(
                "the event queue drained; recovering the %d dropped live messages over REST",
                self.stats["dropped_on_overflow"],
            )

