"""One websocket to the relay: JSON-RPC framing, acks, ping answers, liveness.

A :class:`Connection` is one socket and its health; it never decides to reconnect (the
:class:`~signalwire_conversation.realtime.listener.Listener` does). It is driven by a single
reader thread calling :meth:`Connection.poll`; :meth:`Connection.send` and
:meth:`Connection.abort` may be called from any thread.

What it does with each frame (docs/protocol.md §2):

* ``signalwire.event``: acknowledged at once (``{"jsonrpc":"2.0","id":<id>,"result":{}}``), before
  anything else is looked at; a ``conversation.message`` payload (``params.params``) is handed
  to ``on_events`` undecoded, as ``(payload, is_author)`` (the listener decodes it on its
  dispatcher thread, so decoding never delays an ack); ``signalwire.authorization.state`` goes
  to ``on_authorization_state``; other event types are ignored.
* ``signalwire.ping``: answered with the server's own timestamp.
* ``signalwire.disconnect``: answered with ``{}`` (the server closes the socket next).
* a response (``result`` or ``error``): completes the pending request with that id.
* anything else, including frames that are not JSON or not valid UTF-8: logged and skipped.

The small pure functions (:func:`parse_frame`, :func:`classify_frame`, :func:`connect_params`,
...) hold the decisions, so they can be tested without a socket.

The hot path (measured in benchmarks/, see docs/performance.md): websocket-client reads a frame
with two or three ``recv`` system calls and builds each outgoing frame in pure Python with a
fresh ``os.urandom`` mask key. Here the socket is read in large chunks and every complete,
final, unmasked text frame already in that buffer is taken by a short fast path (anything else
-- control frames, fragments, partial frames, oversized announcements -- goes through
websocket-client's own reader, which shares the buffer); the frames read together are handled
as one batch: all their acks (and ping answers) are written with one ``sendall`` *before* any
of them is handed on, and the events are handed on with one call. Outgoing frames are framed
and masked here (a fresh mask key per frame, from an ``os.urandom`` pool) and written under
websocket-client's own send lock, so they never interleave with its pongs or close frame.

The fast path reaches into websocket-client internals (``frame_buffer``, ``continuous_frame``,
``WebSocket.lock``, ``WebSocket._recv``). :func:`fast_path_problem` checks at import, and
:meth:`Connection.open` again on each new socket, that they are all there and shaped as
expected; when not (or with ``SIGNALWIRE_WS_FAST_PATH=0`` in the environment at import), every
socket uses websocket-client's public API instead (``recv_data_frame``, ``send``), logged once at
DEBUG. The fall-back is slower and checks the message size cap after reading a message rather
than before buffering it. The tested websocket-client versions are listed in docs/reliability.md.

TLS: one decision with REST (:func:`~signalwire_conversation.config.resolve_verify`): the
websocket verifies with the same CA bundle, in an :class:`ssl.SSLContext` built here. A
certificate that does not verify (or a CA bundle that cannot be loaded) raises
:class:`ConnectFatal`: the listener stops with a clear error instead of retrying for ever.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union, cast

import websocket

from .._logging import get_logger, preview, redact, redact_data
from .._timestamps import MILLISECONDS_THRESHOLD
from .._version import __version__
from ..config import resolve_verify
from ..errors import RealtimeError, SignalWireError

__all__ = [
    "AGENT",
    "AUTH_REFUSAL_CODES",
    "FrameKind",
    "parse_frame",
    "classify_frame",
    "ack_frame",
    "ack_text",
    "mask_frame",
    "RawEvent",
    "ping_reply",
    "connect_params",
    "is_auth_refusal",
    "token_expiry",
    "ConnectionLost",
    "ConnectRefused",
    "ConnectFatal",
    "Connection",
    "FAST_PATH",
    "fast_path_problem",
    "tls_context",
]

logger = get_logger("signalwire_conversation.realtime")

#: The ``agent`` sent in ``signalwire.connect``.
AGENT = f"signalwire-conversation-python/{__version__}"

#: JSON-RPC error codes of ``signalwire.connect`` that mean "this authentication is refused"
#: (docs/protocol.md §2.2): authentication failed, requester validation failed, invalid params.
AUTH_REFUSAL_CODES = frozenset({-32002, -32003, -32602})

JSON = Dict[str, Any]
#: A ``conversation.message`` as read: its payload (``params.params``) and ``is_author``
#: (``None`` when absent or not a boolean); decoded later by the listener.
RawEvent = Tuple[JSON, Optional[bool]]

#: one compact encoder for every outgoing frame (``json.dumps(..., separators=...)`` builds a
#: new ``JSONEncoder`` per call)
_encode = json.JSONEncoder(separators=(",", ":")).encode
#: how far (seconds) a read deadline may drift before the socket timeout is re-armed (each
#: re-arm is a system call; the deadlines are honoured to within this, and the watchdog thread
#: backs them up)
_TIMEOUT_SLACK = 0.1
#: bytes asked of the socket per read (a burst of events arrives in few reads)
_READ_SIZE = 65536
#: the most frames handled (and acked with one write) per batch
_MAX_BATCH = 256


class FrameKind(enum.Enum):
    """What a decoded JSON-RPC frame from the server is."""

    EVENT = "signalwire.event"
    PING = "signalwire.ping"
    DISCONNECT = "signalwire.disconnect"
    RESPONSE = "response"
    REQUEST = "request"  # some other method: answered "method not found"
    INVALID = "invalid"


def parse_frame(data: Union[bytes, str]) -> Optional[JSON]:
    """The JSON object in a text frame, or ``None`` when it is not one (bad UTF-8 included)."""
    try:
        # strict UTF-8 (json.loads would also guess UTF-16/32 from bytes)
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        frame = json.loads(text)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return None
    return frame if isinstance(frame, dict) else None


def classify_frame(frame: Mapping[str, Any]) -> FrameKind:
    """Sort a frame into events, pings, disconnects, responses, other requests or junk."""
    method = frame.get("method")
    if method is not None:
        if not isinstance(method, str):
            return FrameKind.INVALID
        if method == "signalwire.event":
            return FrameKind.EVENT
        if method == "signalwire.ping":
            return FrameKind.PING
        if method == "signalwire.disconnect":
            return FrameKind.DISCONNECT
        return FrameKind.REQUEST
    if frame.get("id") is not None and ("result" in frame or "error" in frame):
        return FrameKind.RESPONSE
    return FrameKind.INVALID


def ack_frame(frame_id: Any) -> JSON:
    """The success response acknowledging a server request (events, disconnect)."""
    return {"jsonrpc": "2.0", "id": frame_id, "result": {}}


def ack_text(frame_id: Any) -> str:
    """:func:`ack_frame` as compact JSON text, from a template for string ids (the common case:
    the id is JSON-encoded once and nothing else is built). Same text as encoding the dict."""
    if type(frame_id) is str:
        return '{"jsonrpc":"2.0","id":' + encode_basestring_ascii(frame_id) + ',"result":{}}'
    return _encode(ack_frame(frame_id))


_BYTEORDER = sys.byteorder
_MASK_POOL_BYTES = 4096  # 1024 mask keys per os.urandom call


def _xor_mask(key: bytes, payload: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    keys = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, _BYTEORDER) ^ int.from_bytes(keys, _BYTEORDER)).to_bytes(n, _BYTEORDER)


def mask_frame(payload: bytes, key: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2) carrying ``payload`` with mask ``key``."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _xor_mask(key, payload)


def ping_reply(frame_id: Any, params: Any, *, now: Optional[float] = None) -> JSON:
    """The answer to ``signalwire.ping``: the server's timestamp echoed (ours when it sent none)."""
    timestamp = params.get("timestamp") if isinstance(params, Mapping) else None
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float, str)):
        timestamp = time.time() if now is None else now
    return {"jsonrpc": "2.0", "id": frame_id, "result": {"timestamp": timestamp}}


def connect_params(
    token: str,
    *,
    protocol: Optional[str] = None,
    authorization_state: Optional[str] = None,
    agent: str = AGENT,
) -> JSON:
    """``signalwire.connect`` params: a fresh connect, or a resume when both states are given.

    A resume sends ``protocol`` and ``authorization_state`` together (never one alone) along
    with the token, even an expired one (docs/protocol.md §2.9).
    """
    params: JSON = {
        "version": {"major": 4, "minor": 0, "revision": 0},
        "event_acks": True,
        "authentication": {"jwt_token": token},
        "agent": agent,
    }
    if protocol and authorization_state:
        params["protocol"] = protocol
        params["authorization_state"] = authorization_state
    return params


def is_auth_refusal(error: Any) -> bool:
    """Whether a JSON-RPC ``error`` object refuses the authentication (-32002/-32003/-32602)."""
    if not isinstance(error, Mapping):
        return False
    code = error.get("code")
    if isinstance(code, str):
        try:
            code = int(code)
        except ValueError:
            return False
    return isinstance(code, int) and code in AUTH_REFUSAL_CODES


def token_expiry(result: Any) -> Optional[float]:
    """``authorization.fabric_subscriber.expires_at`` (epoch seconds) of a connect result."""
    if not isinstance(result, Mapping):
        return None
    authorization = result.get("authorization")
    if not isinstance(authorization, Mapping):
        return None
    subscriber = authorization.get("fabric_subscriber")
    value = subscriber.get("expires_at") if isinstance(subscriber, Mapping) else None
    if value is None:
        value = authorization.get("expires_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value / 1000.0 if value >= MILLISECONDS_THRESHOLD else value)


def project_id_of(result: Any) -> Optional[str]:
    """``authorization.project_id`` of a connect result (needed by ``signalwire.reauthenticate``)."""
    if not isinstance(result, Mapping):
        return None
    authorization = result.get("authorization")
    if isinstance(authorization, Mapping):
        value = authorization.get("project_id")
        if isinstance(value, str) and value:
            return value
    return None


class ConnectionLost(RealtimeError):
    """The socket closed, failed or went silent (internal: the listener reconnects)."""


class ConnectRefused(RealtimeError):
    """``signalwire.connect`` was refused with an authentication error code (internal).

    The message and the server's ``error`` object are redacted (a server may echo the token)."""

    def __init__(self, message: str, *, code: Optional[int] = None, error: Any = None) -> None:
        super().__init__(redact(message), code=code)
        self.error = redact_data(error)


class ConnectFatal(Exception):
    """Opening the websocket failed in a way that retrying cannot heal (internal): the
    certificate does not verify, or the CA bundle cannot be loaded. ``error`` is the public
    error to stop the listener with. Not a :class:`SignalWireError`, so that a reconnect loop
    catching those never retries it."""

    def __init__(self, error: SignalWireError) -> None:
        super().__init__(str(error))
        self.error = error


class _Pending:
    """A request sent on this connection, waiting for its response."""

    __slots__ = ("method", "done", "result", "error")

    def __init__(self, method: str) -> None:
        self.method = method
        self.done = threading.Event()
        self.result: Any = None
        self.error: Any = None

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


def tls_context(verify: Union[bool, str]) -> ssl.SSLContext:
    """The client TLS context of the websocket: the same trust as REST.

    ``False``: no verification. ``True`` or a path: :func:`resolve_verify` picks the CA bundle
    (a path as given; for ``True`` the CA environment variables, else certifi) and only that
    bundle is trusted, as ``requests`` does; hostnames are checked.

    Raises:
        ConnectFatal: the bundle is missing or cannot be loaded.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        path = resolve_verify(verify)
        assert isinstance(path, str)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (SignalWireError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConnectFatal(RealtimeError(f"cannot load the CA bundle for the websocket: {exc}")) from exc


def _sslopt(verify: Union[bool, str]) -> JSON:
    context = tls_context(verify)
    # check_hostname and cert_reqs repeat the context's own settings (older websocket-client
    # versions read them besides the context)
    return {"context": context, "check_hostname": context.check_hostname, "cert_reqs": context.verify_mode}


def _certificate_error(url: str, exc: BaseException) -> Optional[ConnectFatal]:
    """A :class:`ConnectFatal` when ``exc`` (or what it wraps) is a certificate failure."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 5:
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = current.verify_message or current.reason or str(current)
            return ConnectFatal(
                RealtimeError(
                    f"TLS certificate verification failed for {url}: {reason}. The websocket "
                    "trusts the same CA bundle as REST (Client(verify=...), else "
                    "REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, else certifi); "
                    "not retried"
                )
            )
        current = current.__cause__ or current.__context__
        seen += 1
    return None


#: The largest websocket message accepted (one frame or all fragments of one message); a
#: bigger one is treated as a broken link (closed and replaced). Chat events are a few kB.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


if TYPE_CHECKING:
    _FrameBufferBase = websocket.frame_buffer
    _ContinuationBase = websocket.continuous_frame
else:  # a websocket-client without them still imports this module (fast path off)
    _FrameBufferBase = getattr(websocket, "frame_buffer", object)
    _ContinuationBase = getattr(websocket, "continuous_frame", object)


class _CappedFrameBuffer(_FrameBufferBase):
    """websocket-client's frame reader over a read-ahead buffer, refusing a payload longer than
    the cap *before* buffering it (the announced length is read first).

    The socket is read ``_READ_SIZE`` bytes at a time (websocket-client asks for exactly the
    bytes it needs: two or three system calls per frame); :meth:`take_text` is the fast path
    for a complete, final, unmasked text frame already buffered.
    """

    max_bytes = DEFAULT_MAX_MESSAGE_BYTES

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self._data = b""
        self._pos = 0

    def recv_strict(self, bufsize: int) -> bytes:
        if bufsize > self.max_bytes:
            raise websocket.WebSocketPayloadException(
                f"a websocket frame of {bufsize} bytes exceeds the {self.max_bytes}-byte limit"
            )
        data, pos = self._data, self._pos
        end = pos + bufsize
        if end <= len(data):
            self._pos = end
            return data[pos:end]
        chunks = [data[pos:]]
        have = len(chunks[0])
        self._data, self._pos = b"", 0
        try:
            while have < bufsize:
                chunk = self.recv(max(_READ_SIZE, min(bufsize - have, 1 << 20)))
                chunks.append(chunk)
                have += len(chunk)
        except BaseException:
            self._data = b"".join(chunks)  # keep what was read: a timeout may resume the frame
            raise
        data = b"".join(chunks)
        self._data, self._pos = data, bufsize
        return data[:bufsize]

    def take_text(self) -> Optional[bytes]:
        """The payload of the next frame if it is a complete, final, unmasked text frame with
        no reserved bits, already buffered (and consumed); else ``None`` (nothing consumed)."""
        if self.header is not None:  # websocket-client is inside a frame
            return None
        data, pos = self._data, self._pos
        size = len(data)
        if size - pos < 2 or data[pos] != 0x81:
            return None
        length = data[pos + 1]
        if length < 126:
            start = pos + 2
        elif length == 126 and size - pos >= 4:
            length = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 4
        else:  # masked (a server must not), 64-bit length, or the length not buffered yet
            return None
        end = start + length
        if end > size or length > self.max_bytes:
            return None
        self._pos = end
        return data[start:end]


class _CappedContinuation(_ContinuationBase):
    """Reassembly of fragmented messages, with the same cap on the whole message."""

    max_bytes = DEFAULT_MAX_MESSAGE_BYTES

    def add(self, frame: Any) -> None:
        super().add(frame)
        data = self.cont_data[1] if self.cont_data else b""
        if len(data) > self.max_bytes:
            self.cont_data = None
            self.recving_frames = None
            raise websocket.WebSocketPayloadException(
                f"a fragmented websocket message exceeds the {self.max_bytes}-byte limit"
            )


class _CappedWebSocket(websocket.WebSocket):
    def __init__(self, *args: Any, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        skip = bool(kwargs.get("skip_utf8_validation", False))
        self.frame_buffer: _CappedFrameBuffer = _CappedFrameBuffer(self._recv, skip)
        self.frame_buffer.max_bytes = max_message_bytes
        self.cont_frame = _CappedContinuation(bool(kwargs.get("fire_cont_frame", False)), skip)
        self.cont_frame.max_bytes = max_message_bytes


def fast_path_problem() -> Optional[str]:
    """What is missing from websocket-client for the fast path, or ``None`` when all is there.

    Checked: the classes subclassed here (``frame_buffer`` built as ``(recv_fn,
    skip_utf8_validation)`` whose frame reading goes through ``recv_strict``;
    ``continuous_frame`` with ``add``), and that ``WebSocket`` reads through ``frame_buffer``
    and ``cont_frame`` and writes under ``lock`` (the names its code uses)."""
    import inspect

    buffer_cls = getattr(websocket, "frame_buffer", None)
    cont_cls = getattr(websocket, "continuous_frame", None)
    ws_cls = getattr(websocket, "WebSocket", None)
    if not isinstance(buffer_cls, type) or not isinstance(cont_cls, type) or not isinstance(ws_cls, type):
        return "websocket.frame_buffer, websocket.continuous_frame or websocket.WebSocket is missing"
    try:
        params = list(inspect.signature(getattr(buffer_cls, "__init__")).parameters)
    except (TypeError, ValueError):
        params = []
    if params[1:3] != ["recv_fn", "skip_utf8_validation"]:
        return f"frame_buffer(...) takes {params[1:]}, not (recv_fn, skip_utf8_validation)"

    def names(cls: type, method: str) -> "frozenset[str]":
        code = getattr(getattr(cls, method, None), "__code__", None)
        return frozenset(code.co_names) if code is not None else frozenset()

    needs = [
        (buffer_cls, "recv_frame", {"recv_strict", "header"}),
        (buffer_cls, "recv_header", {"recv_strict"}),
        (cont_cls, "add", {"cont_data", "recving_frames"}),
        (ws_cls, "recv_frame", {"frame_buffer"}),
        (ws_cls, "recv_data_frame", {"cont_frame"}),
        (ws_cls, "send_frame", {"lock"}),
        (ws_cls, "__init__", {"frame_buffer", "cont_frame", "lock", "_recv"}),
    ]
    for cls, method, wanted in needs:
        missing = wanted - names(cls, method)
        if missing:
            return f"{cls.__name__}.{method} no longer uses {', '.join(sorted(missing))}"
    if not callable(getattr(ws_cls, "_recv", None)) or not callable(getattr(buffer_cls, "recv_strict", None)):
        return "WebSocket._recv or frame_buffer.recv_strict is missing"
    return None


def _instance_problem(ws: Any) -> Optional[str]:
    """What is wrong with a freshly built :class:`_CappedWebSocket`, or ``None``."""
    if not isinstance(getattr(ws, "frame_buffer", None), _CappedFrameBuffer):
        return "WebSocket.frame_buffer was not ours after construction"
    if not isinstance(getattr(ws, "cont_frame", None), _CappedContinuation):
        return "WebSocket.cont_frame was not ours after construction"
    if not callable(getattr(ws.frame_buffer, "recv", None)):
        return "frame_buffer.recv is not set"
    if not hasattr(ws.frame_buffer, "header") or not hasattr(ws.cont_frame, "recving_frames"):
        return "frame_buffer.header or continuous_frame.recving_frames is missing"
    lock = getattr(ws, "lock", None)
    if not (hasattr(lock, "__enter__") and hasattr(lock, "__exit__")):
        return "WebSocket.lock is not a lock"
    return None


_problem = fast_path_problem()
#: Whether new sockets use the fast path (see the module docstring). Read by
#: :meth:`Connection.open` on every socket, so tests may switch it.
FAST_PATH: bool = _problem is None and os.environ.get("SIGNALWIRE_WS_FAST_PATH", "1").strip() not in ("0", "false", "no")
_fallback_logged = False


def _log_fallback(reason: str) -> None:
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        logger.debug(
            "websocket-client %s: realtime fast path off (%s); using its public API",
            getattr(websocket, "__version__", "?"),
            reason,
        )


if _problem is not None:
    _log_fallback(_problem)


def _new_websocket(sslopt: Optional[JSON], max_message_bytes: int) -> websocket.WebSocket:
    """A websocket-client socket: ours (fast path) when the internals are there, else plain."""
    global FAST_PATH
    if FAST_PATH:
        ws = _CappedWebSocket(
            sslopt=sslopt,
            skip_utf8_validation=True,
            enable_multithread=True,
            max_message_bytes=max_message_bytes,
        )
        problem = _instance_problem(ws)
        if problem is None:
            return ws
        FAST_PATH = False
        _log_fallback(problem)
    elif _problem is None:
        _log_fallback("switched off (SIGNALWIRE_WS_FAST_PATH or FAST_PATH)")
    return websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=True)


def shutdown_socket(ws: Any) -> None:
    """Shut the TCP socket of ``ws`` down, connected or still handshaking (wakes a blocked
    read in another thread). Best effort, idempotent."""
    sock = getattr(ws, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass


def _untyped(ws: websocket.WebSocket, name: str) -> Callable[[], None]:
    # websocket-client leaves abort()/shutdown() unannotated
    return cast(Callable[[], None], getattr(ws, name))


def connect_result(pending: _Pending) -> Dict[str, Any]:
    """The result of an answered ``signalwire.connect``.

    Raises:
        ConnectRefused: an authentication error (its text redacted).
        ConnectionLost: any other error, or a result that is not an object.
    """
    if pending.error is not None:
        error = pending.error
        message = error.get("message") if isinstance(error, Mapping) else None
        code = error.get("code") if isinstance(error, Mapping) else None
        text = f"signalwire.connect failed: {redact(str(message)) if message else preview(error, 200)}"
        if is_auth_refusal(error):
            raise ConnectRefused(text, code=code if isinstance(code, int) else None, error=error)
        raise ConnectionLost(text, code=code if isinstance(code, int) else None)
    result = pending.result
    if not isinstance(result, dict):
        raise ConnectionLost(f"signalwire.connect answered a non-object: {preview(result, 200)}")
    return result


class Connection:
    """One websocket to the relay and what happens on it (see the module docstring).

    ``ws`` is normally the websocket-client socket made by :meth:`open` (frames are then
    written by the fast path); anything else with a ``send(text)`` method works too (tests).
    """

    def __init__(
        self,
        ws: Any,
        *,
        url: str,
        on_events: Callable[[List[RawEvent]], None],
        on_authorization_state: Callable[[str], None],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._ws = ws
        self._max_message_bytes = max_message_bytes
        self.url = url
        self._on_events = on_events
        self._on_authorization_state = on_authorization_state
        self._pending: Dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._timeout: Optional[float] = None
        self._closed = False
        fast = isinstance(ws, _CappedWebSocket)
        #: the read-ahead buffer (fast path), when ``ws`` is ours
        self._reader: Optional[_CappedFrameBuffer] = ws.frame_buffer if fast else None
        self._cont: Any = ws.cont_frame if fast else None
        #: the lock websocket-client takes around its own writes (pongs, close)
        self._send_lock: Any = ws.lock if fast else None
        self._mask_keys = b""
        self._mask_pos = 0
        #: ``time.monotonic()`` of the last frame received (any frame, control frames included).
        self.last_frame_at = time.monotonic()
        #: Counters for this socket.
        self.events_received = 0
        self.frames_skipped = 0
        #: ``(server epoch seconds, time.monotonic())`` of the last server ping that carried a
        #: timestamp: the server's clock, for telling an implausible message ``ts``
        self.server_time: Optional[Tuple[float, float]] = None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout: float,
        verify: Union[bool, str] = True,
        on_events: Callable[[List[RawEvent]], None],
        on_authorization_state: Callable[[str], None],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_socket: Optional[Callable[[websocket.WebSocket], None]] = None,
    ) -> "Connection":
        """Open the websocket (TCP, TLS, HTTP upgrade), each step bounded by ``timeout``.

        Raises :class:`ConnectRefused` for a 401/403 upgrade answer and
        :class:`ConnectionLost` for every other failure.
        """
        sslopt = _sslopt(verify) if url.lower().startswith("wss:") else None
        ws = _new_websocket(sslopt, max_message_bytes)
        if on_socket is not None:
            on_socket(ws)  # so that another thread can abort a stuck handshake
        try:
            cast(Callable[..., None], getattr(ws, "connect"))(url, timeout=timeout)
        except websocket.WebSocketBadStatusException as exc:
            status = getattr(exc, "status_code", None)
            if status in (401, 403):
                raise ConnectRefused(
                    f"the relay refused the websocket upgrade with HTTP {status}", code=status
                ) from exc
            raise ConnectionLost(f"websocket upgrade failed: {exc}") from exc
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            shutdown_socket(ws)
            _untyped(ws, "shutdown")()
            fatal = _certificate_error(url, exc)
            if fatal is not None:
                raise fatal from exc
            raise ConnectionLost(f"could not open {url}: {type(exc).__name__}: {exc}") from exc
        return cls(
            ws,
            url=url,
            on_events=on_events,
            on_authorization_state=on_authorization_state,
            max_message_bytes=max_message_bytes,
        )

    # -- sending (any thread) ---------------------------------------------------------------

    def send(self, frame: Mapping[str, Any]) -> None:
        """Send one JSON frame. Raises :class:`ConnectionLost` when the socket is gone."""
        self._write([_encode(frame)])

    def _write(self, texts: List[str]) -> None:
        """Write text frames, in order, with one system call (fast path). A failed write may
        have left half a frame on the wire, so it also aborts the connection."""
        lock = self._send_lock
        try:
            if lock is None:
                for text in texts:
                    self._ws.send(text)
                return
            with lock:
                sock = self._ws.sock
                if sock is None:
                    raise ConnectionLost("send failed: the websocket is closed")
                sock.sendall(b"".join([mask_frame(text.encode("utf-8"), self._mask_key()) for text in texts]))
        except ConnectionLost:
            self.abort()
            raise
        except (websocket.WebSocketException, OSError, ValueError, AttributeError) as exc:
            self.abort()
            raise ConnectionLost(f"send failed: {type(exc).__name__}: {exc}") from exc

    def _mask_key(self) -> bytes:
        # called with the send lock held; a fresh key per frame, drawn from an os.urandom pool
        pos = self._mask_pos
        if pos + 4 > len(self._mask_keys):
            self._mask_keys = os.urandom(_MASK_POOL_BYTES)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_keys[pos : pos + 4]

    def request(self, method: str, params: Mapping[str, Any]) -> _Pending:
        """Send a request; the returned handle completes when the reader sees the response."""
        request_id = str(uuid.uuid4())
        pending = _Pending(method)
        with self._pending_lock:
            self._pending[request_id] = pending
        try:
            self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": dict(params)})
        except ConnectionLost:
            with self._pending_lock:
                self._pending.pop(request_id, None)
            raise
        return pending

    # -- reading (the reader thread only) ---------------------------------------------------

    def authenticate(self, params: Mapping[str, Any], timeout: float) -> JSON:
        """Send ``signalwire.connect`` and read frames until its result (bounded by ``timeout``).

        Frames arriving meanwhile (pings, events) are handled as usual. Raises
        :class:`ConnectRefused` for an authentication error code, :class:`ConnectionLost` for a
        lost socket, a timeout or any other error.
        """
        pending = self.request("signalwire.connect", params)
        deadline = time.monotonic() + timeout
        while not pending.done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLost(f"no answer to signalwire.connect within {timeout:g}s")
            self.poll(remaining)
        return connect_result(pending)

    def _take_buffered(self, batch: List[bytes]) -> None:
        """Append the complete text frames already buffered (the fast path; no system call)."""
        reader = self._reader
        if reader is None or self._cont.recving_frames is not None:
            return
        take = reader.take_text
        while len(batch) < _MAX_BATCH:
            data = take()
            if data is None:
                return
            batch.append(data)

    def poll(self, timeout: float) -> bool:
        """Read and handle the frames that are ready, waiting up to ``timeout`` seconds for one.

        Returns ``False`` when the timeout passed without a frame; raises
        :class:`ConnectionLost` when the socket is closed or broken.
        """
        batch: List[bytes] = []
        self._take_buffered(batch)
        if not batch:
            current = self._timeout
            # the caller's deadline moves a little with every frame: re-arm the socket timeout
            # (a system call) only when it moved by more than the slack
            if current is None or abs(timeout - current) > min(_TIMEOUT_SLACK, timeout / 2):
                self._ws.settimeout(timeout)
                self._timeout = timeout
            try:
                opcode, frame = self._ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                return False
            except (websocket.WebSocketException, OSError, ValueError, AttributeError) as exc:
                if self._closed:
                    raise ConnectionLost("the connection was closed") from None
                raise ConnectionLost(f"the websocket failed: {type(exc).__name__}: {exc}") from exc
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.last_frame_at = time.monotonic()
                raise ConnectionLost("the server closed the websocket")
            if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self.last_frame_at = time.monotonic()
                return True  # ping (answered by websocket-client) or pong
            if self._reader is None and len(frame.data) > self._max_message_bytes:
                # the public-API path: the cap is checked once the message is read
                raise ConnectionLost(
                    f"the websocket failed: a message of {len(frame.data)} bytes exceeds the "
                    f"{self._max_message_bytes}-byte limit"
                )
            batch.append(frame.data)
            self._take_buffered(batch)
        self.last_frame_at = time.monotonic()
        self._handle_batch(batch)
        return True

    def handle_text(self, data: Union[bytes, str]) -> None:
        """Handle one text frame (public for tests and benchmarks)."""
        self._handle_batch([data])

    def _handle_batch(self, batch: List[Any]) -> None:
        """Frames read together: every reply first (one write), then the rest, in order."""
        replies: List[str] = []
        frames: List[Tuple[FrameKind, JSON]] = []
        for data in batch:
            frame = parse_frame(data)
            if frame is None:
                self.frames_skipped += 1
                logger.warning("skipping a frame that is not a JSON object: %s", preview(data, 200))
                continue
            method = frame.get("method")
            if method == "signalwire.event":  # the common case, first and cheaply
                frame_id = frame.get("id")
                if frame_id is not None:
                    replies.append(ack_text(frame_id))  # before anything can fail or filter
                frames.append((FrameKind.EVENT, frame))
                continue
            kind = classify_frame(frame)
            if kind is FrameKind.PING:
                params = frame.get("params")
                replies.append(_encode(ping_reply(frame.get("id"), params)))
                stamp = params.get("timestamp") if isinstance(params, dict) else None
                if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
                    self.server_time = (float(stamp), time.monotonic())
                continue
            if kind is FrameKind.DISCONNECT:
                logger.info("the server announced a disconnect; it will close this websocket")
                if frame.get("id") is not None:
                    replies.append(ack_text(frame["id"]))
                continue
            if kind is FrameKind.REQUEST:
                logger.debug("ignoring server request %r", frame.get("method"))
                if frame.get("id") is not None:
                    replies.append(
                        _encode(
                            {
                                "jsonrpc": "2.0",
                                "id": frame["id"],
                                "error": {"code": -32601, "message": "Method not found"},
                            }
                        )
                    )
                continue
            frames.append((kind, frame))
        if replies:
            self._write(replies)
        events: List[RawEvent] = []
        for kind, frame in frames:
            try:
                if kind is FrameKind.EVENT:
                    raw = self._event_of(frame)
                    if raw is not None:
                        events.append(raw)
                elif kind is FrameKind.RESPONSE:
                    self._handle_response(frame)
                else:
                    self.frames_skipped += 1
                    logger.warning("skipping a frame that is not JSON-RPC: %s", preview(frame, 200))
            except Exception:  # a frame we could not handle must never stop the reader
                self.frames_skipped += 1
                logger.exception("skipping a frame that could not be handled")
        if events:
            self.events_received += len(events)
            self._on_events(events)

    def _event_of(self, frame: JSON) -> Optional[RawEvent]:
        """A ``conversation.message`` to hand on; other events are handled or ignored here."""
        params = frame.get("params")
        if type(params) is not dict:
            self.frames_skipped += 1
            logger.warning("skipping a signalwire.event without params: %s", preview(frame, 200))
            return None
        event_type = params.get("event_type")
        payload = params.get("params")
        if event_type == "conversation.message":
            if type(payload) is not dict:
                self.frames_skipped += 1
                logger.warning("skipping a conversation.message without a payload: %s", preview(frame, 200))
                return None
            is_author = params.get("is_author")
            return payload, is_author if type(is_author) is bool else None
        if event_type == "signalwire.authorization.state":
            state = payload.get("authorization_state") if isinstance(payload, dict) else None
            if isinstance(state, str) and state:
                self._on_authorization_state(state)
            else:
                logger.warning("skipping an authorization state event without a state")
        else:
            logger.debug("ignoring event %r", event_type)
        return None

    def _handle_response(self, frame: JSON) -> None:
        response_id = frame.get("id")
        with self._pending_lock:
            pending = self._pending.pop(response_id, None) if isinstance(response_id, str) else None
        if pending is None:
            logger.debug("ignoring a response to an unknown request id %r", response_id)
            return
        if frame.get("error") is not None:
            pending.error = frame["error"]
        else:
            pending.result = frame.get("result")
        pending.done.set()

    # -- teardown (any thread) --------------------------------------------------------------

    def abort(self) -> None:
        """Wake a blocked :meth:`poll` (shut the socket down); safe from any thread, idempotent."""
        self._closed = True
        shutdown_socket(self._ws)

    def close(self) -> None:
        """Close the socket at once (no closing handshake that could block). Idempotent."""
        self._closed = True
        try:
            _untyped(self._ws, "abort")()
            _untyped(self._ws, "shutdown")()
        except Exception:
            logger.debug("closing the websocket failed", exc_info=True)
        with self._pending_lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for item in pending:
            item.error = {"code": None, "message": "the connection was closed"}
            item.done.set()

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, closed={self._closed})"
