"""The network side: one listening socket for REST and the websocket, on websockets.sync.

websockets' ``serve()`` owns the accept loop and the websocket connections. Its per-socket
handler is wrapped: the request head is looked at first (``MSG_PEEK`` on plain sockets, so a
websocket upgrade reaches websockets untouched; on TLS sockets, where peeking is impossible,
the head is read and replayed into the websocket protocol), and plain HTTP requests, which the
websockets parser would refuse when they carry a body, are answered by ``_http``.

Every websocket session has a writer thread fed by a queue, so pushing an event never blocks
the caller (a test, or a REST request) on a slow client. The writer frames what it dequeues
itself and writes a whole batch with one ``sendall``, holding the connection's protocol lock
(what websockets' own ``send()`` does, one frame and one system call at a time); it falls back to
``send()`` where that lock is not there.

Only websockets' public API is relied on (``serve``, ``Server.handler``/``serve_forever``/
``shutdown``, ``ServerConnection``); the few internals touched (``protocol_mutex``, the
``handler_threads`` bookkeeping of websockets >= 16, the handshake replay for TLS) are looked up
with ``getattr`` and skipped when absent. Tested with websockets 13, 14, 15 and 17.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, ContextManager, Deque, List, Optional, Sequence, Set, Tuple

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
    from websockets.sync.server import Server as _WSServer
    from websockets.sync.server import ServerConnection, serve
except ImportError as _err:  # pragma: no cover - depends on the install
    raise ImportError(
        "the SignalWire emulator needs the 'websockets' package: "
        "pip install 'signalwire-conversation[emulator]'"
    ) from _err

from ._http import HeadError, Request, Response, parse_head, read_head, read_request, write_response
from ._relay import Relay
from ._state import BinaryFrame, OutFrame, Session, Store

__all__ = ["Server"]

logger = logging.getLogger("signalwire_conversation.testing")

HEAD_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
BODY_TIMEOUT = 30.0
MAX_REQUESTS_PER_CONNECTION = 100_000
MAX_OUTBOX = 250_000  # frames queued for one connection before it counts as a dead consumer
_PEEK_TURNS = 400  # x 5 ms: a request head split over TCP segments gets 2 s to complete
_WRITE_CHUNK = 256 * 1024  # bytes per sendall: the protocol lock is released between chunks

HTTPApp = Callable[[Request], Optional[Response]]


def _frame_bytes(frame: OutFrame) -> bytes:
    """One unmasked, unfragmented server frame (RFC 6455 §5.2), header and payload."""
    if isinstance(frame, str):
        payload = frame.encode("utf-8")
        first = 0x81  # FIN + text
    else:
        payload = bytes(frame)
        first = 0x82 if isinstance(frame, BinaryFrame) else 0x81
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


class _Outbox:
    """A queue of frames and the thread that writes them to one websocket."""

    def __init__(self, connection: ServerConnection, name: str, on_overflow: Callable[[], None]) -> None:
        self._connection = connection
        self._queue: Deque[OutFrame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_overflow = on_overflow
        # websockets' own send() takes this lock, checks the state, writes, releases. Where it
        # is not there (a websockets we do not know), frames go through send() one by one.
        self._mutex: Optional[ContextManager[Any]] = getattr(connection, "protocol_mutex", None)
        if getattr(getattr(connection, "protocol", None), "state", None) is None:
            self._mutex = None
        self._thread = threading.Thread(target=self._run, name=f"emulator-writer-{name}", daemon=True)
        self._thread.start()

    def put(self, frame: OutFrame) -> None:
        self.put_many((frame,))

    def put_many(self, frames: Sequence[OutFrame]) -> None:
        with self._cond:
            if self._closed:
                return
            overflow = len(self._queue) + len(frames) > MAX_OUTBOX
            if not overflow:
                was_empty = not self._queue
                self._queue.extend(frames)
                if was_empty:
                    self._cond.notify()
        if overflow:
            logger.warning("emulator: a websocket client is not reading; dropping it")
            self._on_overflow()

    def _run(self) -> None:
        while True:  # ends when close() is called or the connection fails
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            try:
                if self._mutex is not None:
                    ok = self._write_raw(batch)
                else:
                    ok = self._write_each(batch)
            except (ConnectionClosed, OSError, RuntimeError, ValueError):
                ok = False
            if not ok:
                with self._cond:
                    self._closed = True
                    self._queue.clear()
                return

    def _write_raw(self, batch: List[OutFrame]) -> bool:
        connection = self._connection
        mutex = self._mutex
        assert mutex is not None
        chunk: List[bytes] = []
        size = 0
        for i, frame in enumerate(batch):
            try:
                data = _frame_bytes(frame)
            except UnicodeEncodeError:  # a str with lone surrogates: not sendable as text
                logger.warning("emulator: dropping a frame that is not encodable as UTF-8")
                continue
            chunk.append(data)
            size += len(data)
            if size < _WRITE_CHUNK and i + 1 < len(batch):
                continue
            with mutex:
                if connection.protocol.state is not State.OPEN:
                    return False  # closing: websockets owns the socket now
                connection.socket.sendall(b"".join(chunk))
            chunk = []
            size = 0
        if chunk:
            with mutex:
                if connection.protocol.state is not State.OPEN:
                    return False
                connection.socket.sendall(b"".join(chunk))
        return True

    def _write_each(self, batch: List[OutFrame]) -> bool:  # pragma: no cover - unknown websockets
        connection = self._connection
        for frame in batch:
            if isinstance(frame, BinaryFrame):
                connection.send(bytes(frame))
            elif isinstance(frame, bytes):
                try:
                    connection.send(frame, text=True)  # type: ignore[call-arg, unused-ignore]
                except TypeError:  # websockets < 14: no text=; the bytes cannot go out as is
                    connection.send(frame.decode("utf-8", "replace"))
            else:
                connection.send(frame)
        return True

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def _close_wakeup_pipe(ws: Any) -> None:
    """websockets 13-15 make an ``os.pipe()`` per server to wake ``serve_forever`` and never
    close it (two file descriptors per emulator); 17 uses sockets it closes itself."""
    for name in ("shutdown_watcher", "shutdown_notifier"):
        fd = getattr(ws, name, None)
        if isinstance(fd, int) and not isinstance(fd, bool):
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(ws, name, -1)


def _release_handler_thread(ws: Any) -> None:
    """Forget the current thread in websockets' handler bookkeeping (websockets >= 16 keeps
    ``handler_threads`` and ``shutdown()`` waits for it to empty; 13-15 keep nothing)."""
    threads = getattr(ws, "handler_threads", None)
    if threads is None:
        return
    me = threading.current_thread()
    lock = getattr(ws, "lock", None)
    try:
        if lock is not None:
            with lock:  # what websockets' own handler does on exit
                threads.discard(me)
        else:
            threads.discard(me)
    except Exception:  # pragma: no cover - an unknown shape: never fail a server thread
        logger.debug("emulator: could not release a handler thread", exc_info=True)


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class Server:
    """The emulator's listener. ``http_app`` answers plain requests; websockets go to ``relay``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: Optional[ssl.SSLContext],
        store: Store,
        relay: Relay,
        http_app: HTTPApp,
        close_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.store = store
        self.relay = relay
        self.http_app = http_app
        self.close_timeout = close_timeout
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: Set[Any] = set()
        self._ws: Optional[_WSServer] = None
        self._ws_sock_handler: Optional[Callable[[socket.socket, Any], None]] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._ping_thread: Optional[threading.Thread] = None
        self._ping_wakeup = threading.Event()
        self._replay = threading.local()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.create_server((self.host, self.port), family=family, backlog=128)
        replay = self._replay

        class _Connection(ServerConnection):
            def handshake(self, *args: Any, **kwargs: Any) -> None:
                head = getattr(replay, "head", None)
                replay.head = None
                if head:
                    # TLS only: the head was read to route the request; feed it back.
                    with self.protocol_mutex:
                        self.protocol.receive_data(head)
                        events = self.protocol.events_received()
                    for event in events:
                        self.process_event(event)
                super().handshake(*args, **kwargs)

        self._ws = serve(
            self._ws_session,
            sock=listener,
            compression=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=self.close_timeout,
            open_timeout=HEAD_TIMEOUT,
            max_size=2**22,
            max_queue=64,
            server_header="signalwire-conversation-emulator",
            create_connection=_Connection,
            logger=logging.getLogger("signalwire_conversation.testing.websockets"),
        )
        self._ws_sock_handler = self._ws.handler
        self._ws.handler = self._route
        self.port = listener.getsockname()[1]
        self._serve_thread = threading.Thread(target=self._serve_forever, name="emulator-accept", daemon=True)
        self._serve_thread.start()
        self._ping_thread = threading.Thread(target=self._pinger, name="emulator-pinger", daemon=True)
        self._ping_thread.start()
        return self.host, self.port

    def _serve_forever(self) -> None:
        assert self._ws is not None
        try:
            self._ws.serve_forever()
        except (OSError, ValueError):
            # websockets 14 lets the OSError of a listener closed by an early stop() escape
            # (before registering it with its poller); anything else is worth a log line.
            if not self.stopping.is_set():
                logger.exception("emulator: the accept loop failed")

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._ping_wakeup.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)
        ws = self._ws
        if ws is not None:
            closer = threading.Thread(target=ws.shutdown, name="emulator-shutdown", daemon=True)
            closer.start()
            closer.join(timeout)
            if closer.is_alive():  # pragma: no cover - a handler did not end
                logger.warning("emulator: some connection handlers did not stop within %.1f s", timeout)
        for thread in (self._serve_thread, self._ping_thread):
            if thread is not None:
                thread.join(timeout)
        if ws is not None and not (self._serve_thread is not None and self._serve_thread.is_alive()):
            _close_wakeup_pipe(ws)

    def wake_pinger(self) -> None:
        self._ping_wakeup.set()

    # -- routing ----------------------------------------------------------------------------

    def _track(self, sock: Any) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self.stopping.is_set():
            _shutdown(sock)

    def _untrack(self, sock: Any) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _route(self, sock: socket.socket, addr: Any) -> None:
        """Per accepted socket (websockets' accept thread): HTTP here, websocket upgrades there."""
        conn: Any = sock
        self._track(conn)
        handed_over = False
        try:
            try:
                remote = (str(addr[0]), int(addr[1]))
                if self.ssl_context is not None:
                    tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                    self._untrack(conn)
                    conn = tls
                    self._track(conn)
                    tls.settimeout(HEAD_TIMEOUT)
                    tls.do_handshake()
                    head, rest = read_head(tls, b"", time.monotonic() + HEAD_TIMEOUT)
                    buffered = head + rest
                else:
                    head = self._peek_head(sock)
                    buffered = b""
                request = parse_head(head, remote)
            except (HeadError, OSError, ssl.SSLError, ValueError):
                return
            if request.is_websocket_upgrade:
                conn.settimeout(None)
                self._replay.head = buffered or None
                handed_over = True
                assert self._ws_sock_handler is not None
                self._ws_sock_handler(conn, addr)  # websockets takes it from here
                return
            self._serve_http(conn, buffered, remote)
        finally:
            self._untrack(conn)
            self._replay.head = None
            if not handed_over:
                try:
                    conn.close()
                except OSError:
                    pass
                _release_handler_thread(self._ws)

    def _peek_head(self, sock: socket.socket) -> bytes:
        deadline = time.monotonic() + HEAD_TIMEOUT
        sock.settimeout(HEAD_TIMEOUT)
        data = b""
        for _ in range(_PEEK_TURNS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            data = sock.recv(65536, socket.MSG_PEEK)
            if not data:
                raise HeadError("connection closed")
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return data[: end + 4]
            if len(data) >= 65536:
                break
            if self.stopping.wait(0.005):
                break
        raise HeadError("incomplete request head")

    def _serve_http(self, sock: Any, buffered: bytes, remote: Tuple[str, int]) -> None:
        rest = buffered
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if self.stopping.is_set():
                    return
                head, rest = read_head(sock, rest, time.monotonic() + IDLE_TIMEOUT)
                request = parse_head(head, remote)
                rest = read_request(sock, request, rest, time.monotonic() + BODY_TIMEOUT)
                response = self.http_app(request)
                if response is None:  # a "reset" fault: close without answering
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                    return
                keep = request.keep_alive and not self.stopping.is_set()
                write_response(sock, response, keep)
                if not keep:
                    return
        except (HeadError, OSError, ssl.SSLError, ValueError):
            return

    # -- websocket sessions -----------------------------------------------------------------

    def _ws_session(self, connection: ServerConnection) -> None:
        try:
            host, port = connection.remote_address[:2]
            remote = f"{host}:{port}"
        except (OSError, TypeError, ValueError):
            remote = "?"
        path = connection.request.path if connection.request is not None else "/"
        raw_socket = connection.socket
        self._track(raw_socket)

        def abort() -> None:
            _shutdown(raw_socket)

        # Wired up under the store's lock: whoever sees the session (emu.connections,
        # wait_for) can send to it at once.
        with self.store.lock:
            session = self.store.open_session(remote, path)
            _mute_pongs_while_half_open(connection, session)
            outbox = _Outbox(connection, session.id, abort)
            session.sink = outbox.put
            session.sink_many = outbox.put_many
            session.abort = abort
            session.close_gracefully = lambda: threading.Thread(
                target=_close_quietly, args=(connection,), name=f"emulator-close-{session.id}", daemon=True
            ).start()  # close() waits for the client's close frame: not on the caller's time
        try:
            while not self.stopping.is_set():  # one frame per turn; ends when the socket does
                try:
                    message = connection.recv()
                except ConnectionClosed:
                    break
                if session.half_open:
                    continue  # the link is "dead": what the client says is lost
                if isinstance(message, bytes):
                    try:
                        message = message.decode("utf-8")
                    except UnicodeDecodeError:
                        continue
                self.relay.handle(session, message)
        finally:
            self.store.close_session(session)
            outbox.close()
            self._untrack(raw_socket)

    def _pinger(self) -> None:
        while not self.stopping.is_set():  # one round per interval, until stop()
            interval = self.store.ping_interval
            wait = interval if interval is not None and interval > 0 else 3600.0
            self._ping_wakeup.wait(wait)
            if self._ping_wakeup.is_set():
                self._ping_wakeup.clear()
                continue  # stop(), or the interval changed: re-read it
            with self.store.lock:
                targets: List[Session] = [
                    s for s in self.store.sessions if s.live and not s.pings_paused
                ]
            for session in targets:
                session.sink(self.relay.ping_frame(session))


def _mute_pongs_while_half_open(connection: ServerConnection, session: Session) -> None:
    """A half-open link carries nothing back, not even the Pongs websockets sends by itself."""
    protocol = connection.protocol
    original = protocol.send_frame

    def send_frame(frame: Frame) -> None:
        if session.half_open and frame.opcode is Opcode.PONG:
            return
        original(frame)

    setattr(protocol, "send_frame", send_frame)


def _close_quietly(connection: ServerConnection) -> None:
    try:
        connection.close()
    except (ConnectionClosed, OSError, RuntimeError):
        pass
