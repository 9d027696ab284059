"""One websocket to the relay: JSON-RPC framing, acks, ping answers, liveness.

A :class:`Connection` is one socket and its health; it never decides to reconnect (the
:class:`~signalwire_conversation.realtime.listener.Listener` does). It is driven by a single
reader thread calling :meth:`Connection.poll`; :meth:`Connection.send` and
:meth:`Connection.abort` may be called from any thread.

What it does with each frame (PROTOCOL.md §2):

* ``signalwire.event``: acknowledged at once (``{"jsonrpc":"2.0","id":<id>,"result":{}}``), before
  anything else is looked at; a ``conversation.message`` payload (``params.params``) is decoded
  and handed to ``on_event``; ``signalwire.authorization.state`` goes to
  ``on_authorization_state``; other event types are ignored.
* ``signalwire.ping``: answered with the server's own timestamp.
* ``signalwire.disconnect``: answered with ``{}`` (the server closes the socket next).
* a response (``result`` or ``error``): completes the pending request with that id.
* anything else, including frames that are not JSON or not valid UTF-8: logged and skipped.

The small pure functions (:func:`parse_frame`, :func:`classify_frame`, :func:`connect_params`,
...) hold the decisions, so they can be tested without a socket.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Union, cast

import websocket

from .._logging import get_logger, preview
from .._version import __version__
from ..errors import RealtimeError, ResponseValidationError
from ..models import ConversationMessageEvent, decode_event

__all__ = [
    "AGENT",
    "AUTH_REFUSAL_CODES",
    "FrameKind",
    "parse_frame",
    "classify_frame",
    "ack_frame",
    "ping_reply",
    "connect_params",
    "is_auth_refusal",
    "token_expiry",
    "ConnectionLost",
    "ConnectRefused",
    "Connection",
]

logger = get_logger("signalwire_conversation.realtime")

#: The ``agent`` sent in ``signalwire.connect``.
AGENT = f"signalwire-conversation-python/{__version__}"

#: JSON-RPC error codes of ``signalwire.connect`` that mean "this authentication is refused"
#: (PROTOCOL.md §2.2): authentication failed, requester validation failed, invalid params.
AUTH_REFUSAL_CODES = frozenset({-32002, -32003, -32602})

JSON = Dict[str, Any]


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
    with the token, even an expired one (PROTOCOL.md §2.9).
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
    return float(value / 1000.0 if value >= 1e11 else value)


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
    """``signalwire.connect`` was refused with an authentication error code (internal)."""

    def __init__(self, message: str, *, code: Optional[int] = None, error: Any = None) -> None:
        super().__init__(message, code=code)
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


def _sslopt(verify: Union[bool, str]) -> JSON:
    if verify is False:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    if isinstance(verify, str):
        import os

        key = "ca_cert_path" if os.path.isdir(verify) else "ca_certs"
        return {"cert_reqs": ssl.CERT_REQUIRED, key: verify}
    return {"cert_reqs": ssl.CERT_REQUIRED}


#: The largest websocket message accepted (one frame or all fragments of one message); a
#: bigger one is treated as a broken link (closed and replaced). Chat events are a few kB.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class _CappedFrameBuffer(websocket.frame_buffer):
    """websocket-client's frame reader, refusing a payload longer than the cap *before*
    buffering it (the announced length is read first)."""

    max_bytes = DEFAULT_MAX_MESSAGE_BYTES

    def recv_strict(self, bufsize: int) -> bytes:
        if bufsize > self.max_bytes:
            raise websocket.WebSocketPayloadException(
                f"a websocket frame of {bufsize} bytes exceeds the {self.max_bytes}-byte limit"
            )
        data: bytes = super().recv_strict(bufsize)
        return data


class _CappedContinuation(websocket.continuous_frame):
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
        self.frame_buffer = _CappedFrameBuffer(self._recv, skip)
        self.frame_buffer.max_bytes = max_message_bytes
        self.cont_frame = _CappedContinuation(bool(kwargs.get("fire_cont_frame", False)), skip)
        self.cont_frame.max_bytes = max_message_bytes


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


class Connection:
    """One websocket to the relay and what happens on it (see the module docstring)."""

    def __init__(
        self,
        ws: websocket.WebSocket,
        *,
        url: str,
        on_event: Callable[[ConversationMessageEvent], None],
        on_authorization_state: Callable[[str], None],
    ) -> None:
        self._ws = ws
        self.url = url
        self._on_event = on_event
        self._on_authorization_state = on_authorization_state
        self._pending: Dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._timeout: Optional[float] = None
        self._closed = False
        #: ``time.monotonic()`` of the last frame received (any frame, control frames included).
        self.last_frame_at = time.monotonic()
        #: Counters for this socket.
        self.events_received = 0
        self.frames_skipped = 0

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout: float,
        verify: Union[bool, str] = True,
        on_event: Callable[[ConversationMessageEvent], None],
        on_authorization_state: Callable[[str], None],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_socket: Optional[Callable[[websocket.WebSocket], None]] = None,
    ) -> "Connection":
        """Open the websocket (TCP, TLS, HTTP upgrade), each step bounded by ``timeout``.

        Raises :class:`ConnectRefused` for a 401/403 upgrade answer and
        :class:`ConnectionLost` for every other failure.
        """
        sslopt = _sslopt(verify) if url.lower().startswith("wss:") else None
        ws = _CappedWebSocket(
            sslopt=sslopt,
            skip_utf8_validation=True,
            enable_multithread=True,
            max_message_bytes=max_message_bytes,
        )
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
            raise ConnectionLost(f"could not open {url}: {type(exc).__name__}: {exc}") from exc
        return cls(ws, url=url, on_event=on_event, on_authorization_state=on_authorization_state)

    # -- sending (any thread) ---------------------------------------------------------------

    def send(self, frame: Mapping[str, Any]) -> None:
        """Send one JSON frame. Raises :class:`ConnectionLost` when the socket is gone."""
        text = json.dumps(frame, separators=(",", ":"))
        try:
            self._ws.send(text)
        except (websocket.WebSocketException, OSError, AttributeError) as exc:
            raise ConnectionLost(f"send failed: {type(exc).__name__}: {exc}") from exc

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
        if pending.error is not None:
            error = pending.error
            message = error.get("message") if isinstance(error, Mapping) else None
            code = error.get("code") if isinstance(error, Mapping) else None
            text = f"signalwire.connect failed: {message or preview(error, 200)}"
            if is_auth_refusal(error):
                raise ConnectRefused(text, code=code if isinstance(code, int) else None, error=error)
            raise ConnectionLost(text, code=code if isinstance(code, int) else None)
        result = pending.result
        if not isinstance(result, dict):
            raise ConnectionLost(f"signalwire.connect answered a non-object: {preview(result, 200)}")
        return result

    def poll(self, timeout: float) -> bool:
        """Read and handle at most one frame, waiting up to ``timeout`` seconds.

        Returns ``False`` when the timeout passed without a frame; raises
        :class:`ConnectionLost` when the socket is closed or broken.
        """
        if timeout != self._timeout:
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
        self.last_frame_at = time.monotonic()
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            try:
                self.handle_text(frame.data)
            except ConnectionLost:
                raise
            except Exception:  # a frame we could not handle must never stop the reader
                self.frames_skipped += 1
                logger.exception("skipping a frame that could not be handled")
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionLost("the server closed the websocket")
        return True

    def handle_text(self, data: Union[bytes, str]) -> None:
        """Handle one text frame (public for tests and benchmarks)."""
        frame = parse_frame(data)
        if frame is None:
            self.frames_skipped += 1
            logger.warning("skipping a frame that is not a JSON object: %s", preview(data, 200))
            return
        kind = classify_frame(frame)
        if kind is FrameKind.EVENT:
            self._handle_event(frame)
        elif kind is FrameKind.PING:
            self.send(ping_reply(frame.get("id"), frame.get("params")))
        elif kind is FrameKind.RESPONSE:
            self._handle_response(frame)
        elif kind is FrameKind.DISCONNECT:
            logger.info("the server announced a disconnect; it will close this websocket")
            if frame.get("id") is not None:
                self.send(ack_frame(frame["id"]))
        elif kind is FrameKind.REQUEST:
            logger.debug("ignoring server request %r", frame.get("method"))
            if frame.get("id") is not None:
                self.send(
                    {
                        "jsonrpc": "2.0",
                        "id": frame["id"],
                        "error": {"code": -32601, "message": "Method not found"},
                    }
                )
        else:
            self.frames_skipped += 1
            logger.warning("skipping a frame that is not JSON-RPC: %s", preview(frame, 200))

    def _handle_event(self, frame: JSON) -> None:
        event_id = frame.get("id")
        if event_id is not None:
            self.send(ack_frame(event_id))  # first, before anything can fail or filter
        params = frame.get("params")
        if not isinstance(params, dict):
            self.frames_skipped += 1
            logger.warning("skipping a signalwire.event without params: %s", preview(frame, 200))
            return
        event_type = params.get("event_type")
        payload = params.get("params")
        if event_type == "conversation.message":
            if not isinstance(payload, dict):
                self.frames_skipped += 1
                logger.warning("skipping a conversation.message without a payload: %s", preview(frame, 200))
                return
            is_author = params.get("is_author")
            try:
                event = decode_event(payload, is_author=is_author if isinstance(is_author, bool) else None)
            except ResponseValidationError as exc:
                self.frames_skipped += 1
                logger.warning("skipping a conversation.message that does not decode: %s", exc)
                return
            self.events_received += 1
            self._on_event(event)
        elif event_type == "signalwire.authorization.state":
            state = payload.get("authorization_state") if isinstance(payload, dict) else None
            if isinstance(state, str) and state:
                self._on_authorization_state(state)
            else:
                logger.warning("skipping an authorization state event without a state")
        else:
            logger.debug("ignoring event %r", event_type)

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
