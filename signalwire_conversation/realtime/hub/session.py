"""One hub client's websocket: a state machine the I/O loop drives.

What the default listener's reader thread does in a blocking loop (``reader.py``), done here in
steps, each a reaction to the socket or to a timer: prepare (token and address, on a worker:
they may block), TCP connect, TLS handshake, HTTP upgrade, ``signalwire.connect`` (resume when
possible), then frames until the link is lost, dead or closed; then a jittered backoff and
again. JSON-RPC (acks, ping answers, events, responses) is the default listener's own
:class:`~..connection.Connection`, fed with the frames read here; the decisions after a connect
(gap fill, state, ``subscribe()`` woken) are the reader's own ``_authenticated``.

Every method runs on the loop thread unless it says otherwise.
"""

from __future__ import annotations

import enum
from json.encoder import encode_basestring_ascii
import errno
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..._logging import get_logger
from ...errors import SignalWireError
from ..connection import (
    ConnectFatal,
    Connection,
    ConnectionLost,
    ConnectRefused,
    _certificate_error,
    _encode,
    _Pending,
    connect_result,
    mask_frame,
    parse_frame,
    ping_reply,
    tls_context,
)
from ..core import Fatal
from ..state import ConnectionState
from .framing import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameReader, FramingError, new_key, parse_upgrade, upgrade_request
from .timers import TimerHandle

if TYPE_CHECKING:
    from .hub import RealtimeHub
    from .listener import HubListener

__all__ = ["Session"]

logger = get_logger("signalwire_conversation.realtime")

_READ_SIZE = 65536
#: a text frame containing this may be a server ping (answered without the batch machinery)
_PING_MARK = b'"signalwire.ping"'
#: token refreshes fire on whole seconds (one wake-up for every link due in that second)
_WATCH_SLACK = 1.0
#: the most reads from one socket per turn of the loop
_MAX_READS = 4
#: the longest a burst pauses the reading of one client's socket (seconds)
_MAX_PAUSE = 1.0
#: handshake deadlines, on tenths of a second
_DEADLINE_SLACK = 0.1


class Phase(enum.Enum):
    IDLE = "idle"  # waiting for a backoff, or a handshake slot
    PREPARING = "preparing"  # token and address, on a worker
    TCP = "tcp"
    TLS = "tls"
    UPGRADE = "upgrade"
    AUTH = "auth"  # signalwire.connect sent
    LIVE = "live"
    CLOSED = "closed"


class Session:
    """The websocket of one :class:`~.listener.HubListener` (see the module docstring)."""

    __slots__ = (
        "hub", "listener", "phase", "_sock", "_out", "_writing", "_inbuf", "_frames", "conn",
        "_key", "_timer", "_failures", "_resume", "_token", "_params", "_pending",
        "_slot", "_url", "_host", "_port", "_path", "_secure", "last_frame_at", "_live_once",
        "_refresh", "_refresh_failures", "_close_sent", "_tls_context", "_paused", "_pause_timer",
    )

    def __init__(self, hub: "RealtimeHub", listener: "HubListener") -> None:
        self.hub = hub
        self.listener = listener
        self.phase = Phase.IDLE
        self._sock: Any = None
        self._out: List[bytes] = []
        self._writing = False
        self._inbuf = b""
        self._frames: Optional[FrameReader] = None
        self.conn: Optional[Connection] = None
        self._key = ""
        self._timer: Optional[TimerHandle] = None
        self._refresh: Optional[TimerHandle] = None
        self._refresh_failures = 0  # token refreshes failed in a row (touched by one worker at a time)
        self._failures = 0
        self._resume = False
        self._token = ""
        self._params: Optional[Dict[str, Any]] = None
        self._pending: Optional[_Pending] = None
        self._slot = False
        self._live_once = False
        self._close_sent = False
        self.last_frame_at = 0.0
        self._tls_context: Optional[ssl.SSLContext] = None
        self._paused = False
        self._pause_timer: Optional[TimerHandle] = None
        parts = urlsplit(listener.relay_url)
        self._secure = parts.scheme.lower() == "wss"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._secure else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    # -- the connect cycle ------------------------------------------------------------------

    def start(self) -> None:
        """The first attempt, at once (on the loop)."""
        if self.phase is Phase.IDLE and self._timer is None:
            self._want_slot()

    def _after(self, delay: float) -> None:
        self._cancel_timer()
        if delay <= 0:
            self._want_slot()
            return
        loop = self.hub._loop
        self._timer = self.hub._timers.call_later(delay, lambda: loop.call_soon_threadsafe(self._want_slot))

    def _want_slot(self) -> None:
        self._timer = None
        if self.phase is not Phase.IDLE or self.listener._closing.is_set():
            return
        if self.hub._take_slot(self):
            self._slot = True
            self._prepare()

    def _prepare(self) -> None:
        """A handshake slot is ours: the token and the address, on a worker."""
        if self.listener._closing.is_set():
            self._release_slot()
            return
        listener = self.listener
        listener._transition(ConnectionState.RECONNECTING if listener._connected_once else ConnectionState.CONNECTING)
        self.phase = Phase.PREPARING
        if not self.hub._pool.submit(self, self._prepare_on_worker):
            self._release_slot()

    def _prepare_on_worker(self) -> None:
        # (a worker) the token callable and DNS may block: never on the loop
        loop = self.hub._loop
        try:
            token, params, resume = self.listener._connect_params()
            infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"no address for {self._host}")
            context = tls_context(self.listener._verify) if self._secure else None
        except ConnectFatal as fatal:
            loop.call_soon_threadsafe(self._fatal, fatal.error)
            return
        except (SignalWireError, OSError) as exc:
            loop.call_soon_threadsafe(self._attempt_failed, exc)
            return
        loop.call_soon_threadsafe(self._open, infos[0], token, params, resume, context)

    def _open(self, info: Tuple[Any, ...], token: str, params: Dict[str, Any], resume: bool,
              context: Optional[ssl.SSLContext]) -> None:
        if self.phase is not Phase.PREPARING:
            return
        if self.listener._closing.is_set():
            self._release_slot()
            self.phase = Phase.CLOSED
            return
        family, kind, proto, _, address = info
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._attempt_failed(exc)
            return
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._sock = sock
        self._token, self._params, self._resume = token, params, resume
        self._tls_context = context
        self.phase = Phase.TCP
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self._attempt_failed(OSError(err, f"could not connect to {self._host}:{self._port}"))
            return
        self.hub._loop.register(sock, self, write=True)
        self._writing = True
        self._arm_deadline(f"could not open {self.listener.relay_url} within {self.listener.connect_timeout:g}s")

    def _arm_deadline(self, message: str) -> None:
        self._cancel_timer()
        loop = self.hub._loop
        phase = self.phase

        def expired() -> None:
            if self.phase is phase:
                self._attempt_failed(ConnectionLost(message))

        self._timer = self.hub._timers.call_later(
            self.listener.connect_timeout, lambda: loop.call_soon_threadsafe(expired), slack=_DEADLINE_SLACK
        )

    # -- socket events ----------------------------------------------------------------------

    def on_writable(self) -> None:
        phase = self.phase
        if phase is Phase.TCP:
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._attempt_failed(OSError(err, f"could not connect to {self._host}:{self._port}: {errno.errorcode.get(err, err)}"))
                return
            if self._secure:
                assert self._tls_context is not None
                self.hub._loop.unregister(self._sock)
                try:
                    self._sock = self._tls_context.wrap_socket(
                        self._sock, server_hostname=self._host, do_handshake_on_connect=False
                    )
                except (OSError, ValueError) as exc:
                    self._attempt_failed(exc)
                    return
                self.hub._loop.register(self._sock, self, write=False)
                self._writing = False
                self.phase = Phase.TLS
                self._tls_step()
            else:
                self._send_upgrade()
            return
        if phase is Phase.TLS:
            self._tls_step()
            return
        self._flush()

    def on_readable(self) -> None:
        phase = self.phase
        if phase is Phase.TLS:
            self._tls_step()
            return
        if phase not in (Phase.UPGRADE, Phase.AUTH, Phase.LIVE):
            return
        sock = self._sock
        chunks: List[bytes] = []
        eof = False
        error: Optional[BaseException] = None
        data = b""
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                error = exc
                break
            if not data:
                eof = True
                break
            if len(data) < _READ_SIZE and not self._secure and not chunks:
                break  # the common case: one read had it all (plain sockets)
            chunks.append(data)
            data = b""
            if len(chunks) >= _MAX_READS:
                # the other sockets get their turn (and this client's queue is looked at);
                # TLS may hold decrypted bytes select() cannot see: come back next round
                if self._secure:
                    self.hub._loop.call_soon_threadsafe(self._read_more)
                break
        if chunks:
            if data:
                chunks.append(data)
            data = b"".join(chunks)
        if data:
            self.last_frame_at = time.monotonic()
            try:
                self._received(data)
            except FramingError as exc:
                self._lost(ConnectionLost(f"the websocket failed: {exc}"))
                return
            except ConnectRefused as refused:
                self._refused(refused)
                return
            except ConnectionLost as exc:
                self._lost(exc)
                return
        if self.phase in (Phase.CLOSED, Phase.IDLE, Phase.PREPARING):
            return
        if error is not None:
            self._lost(ConnectionLost(f"the websocket failed: {type(error).__name__}: {error}"))
        elif eof:
            self._lost(ConnectionLost("the server closed the connection"))
        else:
            self._flush()

    # -- a burst faster than the callbacks: read less, for a moment ---------------------------

    def _high_water(self) -> int:
        return self.listener._queue_size // 2

    def _pause(self) -> None:
        """The client's queue is half full: stop reading its socket (what was read is acked)
        until its worker has delivered down to a quarter, for at most ``_MAX_PAUSE`` seconds
        (pings keep being answered at least that often; past it, the overflow policy applies:
        dropped, then gap-filled)."""
        if self._paused or self._sock is None:
            return
        self._paused = True
        self.hub._loop.set_writing(self._sock, self, self._writing, read=False)
        loop = self.hub._loop
        self._pause_timer = self.hub._timers.call_later(_MAX_PAUSE, lambda: loop.call_soon_threadsafe(self.resume))

    def resume(self) -> None:
        """(on the loop) Read again."""
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if not self._paused:
            return
        self._paused = False
        if self._sock is not None and self.phase is Phase.LIVE:
            self.hub._loop.set_writing(self._sock, self, self._writing, read=True)

    @property
    def paused(self) -> bool:
        return self._paused

    def _read_more(self) -> None:
        if not self._paused and self.phase in (Phase.UPGRADE, Phase.AUTH, Phase.LIVE):
            self.on_readable()

    def _tls_step(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_writing(False)
            return
        except ssl.SSLWantWriteError:
            self._set_writing(True)
            return
        except (OSError, ValueError) as exc:
            fatal = _certificate_error(self.listener.relay_url, exc)
            if fatal is not None:
                self._fatal(fatal.error)
            else:
                self._attempt_failed(exc)
            return
        self._send_upgrade()

    def _send_upgrade(self) -> None:
        self._key = new_key()
        self.phase = Phase.UPGRADE
        self._arm_deadline(f"no websocket upgrade from {self.listener.relay_url} within {self.listener.connect_timeout:g}s")
        self._out.append(upgrade_request(self._host, self._port, self._path, self._key, secure=self._secure))
        self._flush()

    def _received(self, data: bytes) -> None:
        if self.phase is Phase.UPGRADE:
            data = self._inbuf + data if self._inbuf else data
            head = parse_upgrade(data, self._key)
            if head is None:
                self._inbuf = data
                return
            self._inbuf = b""
            status, length = head
            if status in (401, 403):
                raise ConnectRefused(f"the relay refused the websocket upgrade with HTTP {status}", code=status)
            if status != 101:
                raise ConnectionLost(f"websocket upgrade failed: HTTP {status}")
            self._upgraded()
            data = data[length:]
            if not data:
                return
        frames = self._frames
        assert frames is not None
        batch: List[bytes] = []
        for opcode, payload in frames.feed(data):
            if opcode == OP_TEXT or opcode == 0x2:
                if _PING_MARK in payload and self._answer_ping(payload):
                    continue
                batch.append(payload)
            elif opcode == OP_PING:
                self._out.append(mask_frame(payload, self.hub._mask_key(), OP_PONG))
            elif opcode == OP_CLOSE:
                if batch:
                    self._handle(batch)
                raise ConnectionLost("the server closed the websocket")
        if batch:
            self._handle(batch)

    def _answer_ping(self, payload: bytes) -> bool:
        """The server's ping, answered here (most of what an idle link reads): the same
        answer as :class:`Connection` gives, without its batch machinery. ``False`` when the
        frame is not a ping after all (it then goes the usual way)."""
        conn = self.conn
        if conn is None or self.phase is not Phase.LIVE:
            return False
        frame = parse_frame(payload)
        if frame is None or frame.get("method") != "signalwire.ping":
            return False
        params = frame.get("params")
        frame_id = frame.get("id")
        stamp = params.get("timestamp") if type(params) is dict else None
        if type(frame_id) is str and type(stamp) is float and stamp - stamp == 0.0:
            # the common case from a template: the text _encode(ping_reply(...)) gives
            reply = '{"jsonrpc":"2.0","id":' + encode_basestring_ascii(frame_id) + ',"result":{"timestamp":' + repr(stamp) + "}}"
        else:
            reply = _encode(ping_reply(frame_id, params))
        self._out.append(mask_frame(reply.encode("utf-8"), self.hub._mask_key()))
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            conn.server_time = (float(stamp), self.last_frame_at)
            listener = self.listener
            if listener._learn_server_clock(conn.server_time) and listener._expires_at is not None:
                self._schedule_refresh()
        return True

    def _handle(self, batch: List[bytes]) -> None:
        conn = self.conn
        assert conn is not None
        conn._handle_batch(batch)  # acks and ping answers go to self.send (buffered), events on
        if self.listener._queue.qsize() > self._high_water() and self.phase is Phase.LIVE:
            self._pause()
        if self.phase is Phase.AUTH:
            pending = self._pending
            if pending is not None and pending.done.is_set():
                self._auth_answered(pending)
        elif conn.server_time is not None:
            listener = self.listener
            if listener._learn_server_clock(conn.server_time) and listener._expires_at is not None:
                self._schedule_refresh()

    def _upgraded(self) -> None:
        listener = self.listener
        self._frames = FrameReader(listener._max_message_bytes)
        self.conn = Connection(
            self,
            url=listener.relay_url,
            on_events=listener._on_events,
            on_authorization_state=listener._on_authorization_state,
            max_message_bytes=listener._max_message_bytes,
        )
        with listener._lock:
            if listener._closing.is_set():
                raise ConnectionLost("closing")
            listener._conn = self.conn
        listener._handshake_buffer = []
        self.phase = Phase.AUTH
        self._arm_deadline(f"no answer to signalwire.connect within {listener.connect_timeout:g}s")
        assert self._params is not None
        self._pending = self.conn.request("signalwire.connect", self._params)
        self._params = None

    def _auth_answered(self, pending: _Pending) -> None:
        self._pending = None
        result = connect_result(pending)
        self._cancel_timer()
        self._release_slot()
        self.phase = Phase.LIVE
        self._failures = 0
        listener = self.listener
        listener._authenticated(result, self._resume)
        self._token = ""
        self._live_once = True
        self.hub._watch(self)  # the hub's sweep checks every live link (hub._sweep)
        self._schedule_refresh()

    # -- writing ----------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Queue one text frame (any thread: off the loop, it is handed to the loop)."""
        if self.hub._loop.on_loop():
            # flushed after the batch that produced it (at the end of on_readable)
            self._out.append(mask_frame(text.encode("utf-8"), self.hub._mask_key()))
        else:
            self.hub._loop.call_soon_threadsafe(self._send_now, text)

    def _send_now(self, text: str) -> None:
        if self.phase is Phase.LIVE or self.phase is Phase.AUTH:
            self._out.append(mask_frame(text.encode("utf-8"), self.hub._mask_key()))
            self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out or self._sock is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self._lost(ConnectionLost(f"send failed: {type(exc).__name__}: {exc}"))
            return
        if sent < len(data):
            out.append(data[sent:])
            self._set_writing(True)
        elif self._writing and self.phase is not Phase.TCP:
            self._set_writing(False)

    def _set_writing(self, on: bool) -> None:
        if self._writing != on and self._sock is not None:
            self._writing = on
            self.hub._loop.set_writing(self._sock, self, on, read=not self._paused)

    # -- liveness and token refresh ---------------------------------------------------------

    def declare_dead(self, silent: float) -> None:
        if self.phase is not Phase.LIVE:
            return
        self.listener.stats["dead_links"] += 1
        logger.warning(
            "no frame from the relay for %.1fs (not even a ping): the link is dead; reconnecting", silent
        )
        self._lost(ConnectionLost(f"no frame for {silent:.1f}s"))

    def _schedule_refresh(self) -> None:
        listener = self.listener
        if not listener._tokens.refreshable:
            return
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        due = listener._refresh_due()
        if due is None:
            return
        self._refresh_later(listener._refresh_wait(due), slack=_WATCH_SLACK)

    def _refresh_later(self, delay: float, *, slack: float = 0.0) -> None:
        # (the loop) the one pending refresh of this link: teardown and rescheduling cancel it
        if self._refresh is not None:
            self._refresh.cancel()
        pool = self.hub._pool
        self._refresh = self.hub._timers.call_later(
            delay, lambda: pool.submit(("refresh", self), self._refresh_on_worker), slack=slack
        )

    def _refresh_on_worker(self) -> None:
        # (a worker) the token callable and the answer to signalwire.reauthenticate
        listener = self.listener
        loop = self.hub._loop
        if listener._closing.is_set():
            return
        due = listener._refresh_due()
        conn = listener._conn
        if due is None or conn is None or listener._state not in (ConnectionState.CONNECTED, ConnectionState.RECOVERING):
            loop.call_soon_threadsafe(self._schedule_refresh)
            return
        if due > listener._server_now() + 0.5:
            loop.call_soon_threadsafe(self._schedule_refresh)  # not due yet (the clock was learned)
            return
        try:
            listener._reauthenticate(conn)
        except Exception as exc:
            self._refresh_failures += 1  # growing backoff, as the threaded refresher's
            delay = listener._backoff.delay(self._refresh_failures)
            logger.warning("token refresh failed: %s; retrying in %.2fs", exc, delay)
            loop.call_soon_threadsafe(self._refresh_later, delay)
            return
        self._refresh_failures = 0
        loop.call_soon_threadsafe(self._schedule_refresh)

    # -- failures and teardown --------------------------------------------------------------

    def _attempt_failed(self, exc: BaseException) -> None:
        """A connect attempt failed: count, back off (growing), try again."""
        listener = self.listener
        self._teardown()
        if listener._closing.is_set():
            self.phase = Phase.CLOSED
            return
        listener._last_error = exc
        listener.stats["connect_failures"] += 1
        delay = listener._backoff.delay(self._failures)
        self._failures += 1
        logger.warning("websocket connect failed (attempt %d): %s; retrying in %.2fs", self._failures, exc, delay)
        self.phase = Phase.IDLE
        self._after(delay)

    def _lost(self, exc: BaseException) -> None:
        """The link failed (or the handshake did): reconnect after a jittered wait."""
        if self.phase is not Phase.LIVE:
            self._attempt_failed(exc)
            return
        listener = self.listener
        self._teardown()
        if listener._closing.is_set():
            self.phase = Phase.CLOSED
            return
        listener._last_error = exc
        listener.stats["disconnects"] += 1
        logger.info("websocket lost: %s", exc)
        self.phase = Phase.IDLE
        self._after(self.hub._reconnect_delay(listener._backoff))

    def _refused(self, refused: ConnectRefused) -> None:
        """The token or the resume was refused: decide on a worker (it may refresh the token)."""
        self._teardown()
        listener = self.listener
        listener._handshake_buffer = None
        if listener._closing.is_set():
            self.phase = Phase.CLOSED
            return
        self.phase = Phase.PREPARING
        token, resume = self._token, self._resume
        loop = self.hub._loop

        def decide() -> None:
            try:
                listener._on_refused(refused, token=token, resume=resume)
            except Fatal as fatal:
                loop.call_soon_threadsafe(self._fatal, fatal.error)
                return
            except (SignalWireError, OSError) as exc:
                loop.call_soon_threadsafe(self._refusal_failed, exc)
                return
            loop.call_soon_threadsafe(self._retry_now)

        self.hub._pool.submit(self, decide)

    def _retry_now(self) -> None:
        if self.phase is Phase.PREPARING:
            self.phase = Phase.IDLE
            self._want_slot()

    def _refusal_failed(self, exc: BaseException) -> None:
        if self.phase is Phase.PREPARING:
            self.phase = Phase.IDLE
            self._attempt_failed(exc)

    def _fatal(self, error: SignalWireError) -> None:
        self._teardown()
        self.phase = Phase.CLOSED
        self.listener._fail(error)

    def _teardown(self) -> None:
        """Close the socket and every timer of this link; give back the handshake slot."""
        self._cancel_timer()
        self.hub._unwatch(self)
        self._paused = False
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        self._release_slot()
        sock, self._sock = self._sock, None
        if sock is not None:
            self.hub._loop.unregister(sock)
            try:
                sock.close()
            except OSError:
                pass
        self._writing = False
        self._out.clear()
        self._inbuf = b""
        self._frames = None
        self._pending = None
        conn, self.conn = self.conn, None
        if conn is not None:
            self.listener._drop_connection(conn)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self.hub._give_slot(self)

    def close(self) -> None:
        """Stop for good (on the loop): the socket, the timers, the slot."""
        self._teardown()
        self.phase = Phase.CLOSED

    # -- what Connection calls (its "ws") ---------------------------------------------------

    def abort(self) -> None:
        """What ``Connection.close()`` calls: nothing to do, the session closes its socket
        itself (on the loop), and the listener closes the session."""

    shutdown = abort

    def check_overflow(self) -> None:
        """(on the loop) After the worker drained some of the queue: end an overflow when the
        queue is down to its low-water mark (the gap fill is queued then)."""
        listener = self.listener
        if listener._overflowed and not listener._closing.is_set():
            listener._try_end_overflow()

    def __repr__(self) -> str:
        return f"Session(url={self.listener.relay_url!r}, phase={self.phase.value})"
