"""Tiny raw-socket loopback servers that misbehave on purpose.

Everything here is stdlib, bound to 127.0.0.1 on port 0, and bounded: every loop stops when the
server is stopped, every write stops after a byte budget, and ``stop()`` joins every thread it
started with a timeout. A *behaviour* is a function ``(conn, request, server) -> None`` that owns
one accepted connection after the server has read the request head (and body, when it had a
``Content-Length``).

Two kinds of server:

* :class:`RawServer` answers every connection with one behaviour (never answer, trickle one byte
  at a time, an endless body, a reset, a truncated body, an HTML page...).
* :class:`FaultProxy` forwards HTTP requests to a real upstream (the emulator) one connection per
  request, and lets a test script, per request, to reset the client *before* forwarding (the
  request provably never reached the server) or *after* the upstream answered (it did).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
from typing import Callable, List, Optional, Tuple

WAIT = 5.0  # seconds: the bound on every internal wait

Behaviour = Callable[[socket.socket, "Request", "RawServer"], None]


class Request:
    """The head of an HTTP request (and its body, when ``Content-Length`` gave one)."""

    def __init__(self, method: str, target: str, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def raw_head(self) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target})"


MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024


def read_request(conn: socket.socket, stop: threading.Event) -> Optional[Request]:
    """Read one request head (+ Content-Length body); ``None`` when the peer went away."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if stop.is_set() or len(buf) > MAX_HEAD:
            return None
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.append((key.strip(), value.strip()))
    req = Request(method, target, headers, b"")
    length = int(req.header("content-length") or 0)
    body = rest
    while len(body) < min(length, MAX_BODY):
        if stop.is_set():
            return None
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return None
        if not chunk:
            break
        body += chunk
    req.body = body
    return req


def reset(conn: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not a clean FIN."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def send_all(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
        return True
    except OSError:
        return False


class RawServer:
    """A TCP server on 127.0.0.1:0 that hands each connection to ``behaviour``."""

    def __init__(self, behaviour: Behaviour, *, read_request_first: bool = True) -> None:
        self.behaviour = behaviour
        self.read_request_first = read_request_first
        self.stop_event = threading.Event()
        self.requests: List[Request] = []
        self.connections = 0
        #: bytes the behaviours managed to write (how far an endless answer got)
        self.bytes_sent = 0
        self.lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._threads: List[threading.Thread] = []
        self._conns: List[socket.socket] = []
        self.connected = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "RawServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.05)
        self._sock = sock
        t = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __enter__(self) -> "RawServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stop_event.set()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(WAIT)
        if self._sock is not None:
            self._sock.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"hostile server threads did not stop: {alive}"

    # -- internals ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self.stop_event.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.05)
            with self.lock:
                self.connections += 1
                self._conns.append(conn)
            self.connected.set()
            t = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            req: Optional[Request] = Request("", "", [], b"")
            if self.read_request_first:
                req = read_request(conn, self.stop_event)
                if req is None:
                    return
                with self.lock:
                    self.requests.append(req)
            assert req is not None
            self.behaviour(conn, req, self)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def count_sent(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n

    def hold(self, conn: socket.socket) -> None:
        """Keep the connection open, reading and discarding, until the server stops."""
        while not self.stop_event.is_set():
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


def http_response(status: int, body: bytes = b"", *, reason: str = "X",
                  headers: Optional[List[Tuple[str, str]]] = None,
                  content_length: Optional[int] = None) -> bytes:
    hs = list(headers or [])
    if not any(k.lower() == "content-type" for k, _ in hs):
        hs.append(("Content-Type", "application/json"))
    hs.append(("Content-Length", str(len(body) if content_length is None else content_length)))
    hs.append(("Connection", "close"))
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("latin-1") + body


def answer(status: int, body: bytes = b"", **kw: object) -> Behaviour:
    """Answer once with a fixed response, then close."""
    data = http_response(status, body, **kw)  # type: ignore[arg-type]

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if send_all(conn, data):
            server.count_sent(len(data))

    return behaviour


def never_answer(conn: socket.socket, req: Request, server: RawServer) -> None:
    """Accept, read the request, say nothing until the server stops."""
    server.hold(conn)


def reset_connection(conn: socket.socket, req: Request, server: RawServer) -> None:
    """Read the request, then RST."""
    reset(conn)


def truncated_body(conn: socket.socket, req: Request, server: RawServer) -> None:
    """Promise 1000 bytes of JSON, send 20, close."""
    data = http_response(200, b'{"data": [{"id": "ab', content_length=1000)
    send_all(conn, data)


def hang_after_headers(conn: socket.socket, req: Request, server: RawServer) -> None:
    """Send the status line and headers, then never the body."""
    send_all(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
    server.hold(conn)


def trickle(interval: float = 0.05, budget: int = 100_000) -> Behaviour:
    """A response that never ends, one byte every ``interval`` s (each read returns in time)."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: "
        pad = b"a" * budget
        for chunk in (data[i:i + 1] for i in range(len(data))):
            if server.stop_event.wait(interval) or not send_all(conn, chunk):
                return
            server.count_sent(1)
        for i in range(len(pad)):
            if server.stop_event.wait(interval) or not send_all(conn, pad[i:i + 1]):
                return
            server.count_sent(1)

    return behaviour


def trickle_body(interval: float = 0.05, budget: int = 100_000) -> Behaviour:
    """Valid headers (no length, close-delimited), then a JSON body one byte at a time."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        if not send_all(conn, head + b'{"data": ['):
            return
        for _ in range(budget):
            if server.stop_event.wait(interval) or not send_all(conn, b" "):
                return
            server.count_sent(1)

    return behaviour


def endless_body(budget: int = 256 * 1024 * 1024, *, chunked: bool = False) -> Behaviour:
    """A 200 whose body never ends (up to ``budget`` bytes), as fast as the client reads."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if chunked:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        if not send_all(conn, head):
            return
        block = b" " * 65536
        if chunked:
            block = b"%x\r\n" % len(block) + block + b"\r\n"
        first = b'{"data": ['
        if chunked:
            first = b"%x\r\n" % len(first) + first + b"\r\n"
        send_all(conn, first)
        stream_blocks(conn, server, block, budget)

    return behaviour


def stream_blocks(conn: socket.socket, server: RawServer, block: bytes, budget: int) -> bool:
    """Send ``block`` again and again until ``budget`` bytes went out or the server stops (a
    peer that stops reading only delays it: each send waits 1 s at most); ``False`` once the
    peer is gone."""
    sent = 0
    while sent < budget and not server.stop_event.is_set():
        try:
            conn.settimeout(1.0)
            conn.sendall(block)
        except socket.timeout:
            continue
        except OSError:
            return False
        sent += len(block)
        server.count_sent(len(block))
    return True


# -- websocket ----------------------------------------------------------------------------------

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_handshake(conn: socket.socket, req: Request) -> bool:
    key = req.header("sec-websocket-key") or ""
    accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
    return send_all(
        conn,
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode(),
    )


def ws_silent(conn: socket.socket, req: Request, server: RawServer) -> None:
    """Complete the websocket handshake, then never answer ``signalwire.connect``."""
    if ws_handshake(conn, req):
        server.hold(conn)


def ws_endless_frame(budget: int = 256 * 1024 * 1024) -> Behaviour:
    """Handshake, then one text frame that announces 2**40 bytes and streams up to ``budget``."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not ws_handshake(conn, req):
            return
        header = bytes([0x81, 127]) + struct.pack("!Q", 1 << 40)
        if not send_all(conn, header + b'{"jsonrpc":"2.0","method":"signalwire.event","params":{"x":"'):
            return
        block = b"a" * 65536
        stream_blocks(conn, server, block, budget)

    return behaviour


def ws_trickle(interval: float = 0.05, budget: int = 100_000) -> Behaviour:
    """Handshake, then a frame header and its payload one byte at a time, forever."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not ws_handshake(conn, req):
            return
        if not send_all(conn, bytes([0x81, 127]) + struct.pack("!Q", 1 << 40)):
            return
        for _ in range(budget):
            if server.stop_event.wait(interval) or not send_all(conn, b"a"):
                return
            server.count_sent(1)

    return behaviour


# ---------------------------------------------------------------------------------------------
# A fault-injecting HTTP proxy in front of a real upstream
# ---------------------------------------------------------------------------------------------

FORWARD = "forward"
RESET_BEFORE = "reset_before"  # RST the client; the request never reaches the upstream
RESET_AFTER = "reset_after"    # forward, let the upstream answer, then RST the client
TRUNCATE_AFTER = "truncate_after"  # forward, then send only half the upstream's answer


class FaultProxy(RawServer):
    """HTTP proxy to ``upstream`` (host, port): one upstream connection per request.

    ``plan`` is consumed one entry per request (``FORWARD`` once it is empty). Requests whose
    ``method`` does not match ``only_method`` (when given) are always forwarded.
    """

    def __init__(self, upstream: Tuple[str, int], plan: Optional[List[str]] = None,
                 *, only_method: Optional[str] = None) -> None:
        super().__init__(self._proxy)
        self.upstream = upstream
        self.plan = list(plan or [])
        self.only_method = only_method
        self.actions: List[Tuple[str, str, str]] = []  # (method, target, action)

    def _next_action(self, req: Request) -> str:
        with self.lock:
            if self.only_method is not None and req.method != self.only_method:
                action = FORWARD
            else:
                action = self.plan.pop(0) if self.plan else FORWARD
            self.actions.append((req.method, req.target, action))
            return action

    def _proxy(self, conn: socket.socket, req: Request, server: RawServer) -> None:
        action = self._next_action(req)
        if action == RESET_BEFORE:
            reset(conn)
            return
        response = self._forward(req)
        if response is None:
            reset(conn)
            return
        if action == RESET_AFTER:
            reset(conn)
            return
        if action == TRUNCATE_AFTER:
            send_all(conn, response[: max(1, len(response) // 2)])
            return
        send_all(conn, response)

    def _forward(self, req: Request) -> Optional[bytes]:
        headers = [(k, v) for k, v in req.headers if k.lower() not in ("connection", "keep-alive")]
        headers.append(("Connection", "close"))
        fwd = Request(req.method, req.target, headers, req.body)
        try:
            up = socket.create_connection(self.upstream, timeout=WAIT)
        except OSError:
            return None
        try:
            up.sendall(fwd.raw_head + req.body)
            chunks = []
            deadline = time.monotonic() + 3 * WAIT
            while time.monotonic() < deadline:
                chunk = up.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        except OSError:
            return None
        finally:
            up.close()
        # make the client drop the connection after this answer (one request per connection)
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + sep + body


def scripted(*behaviours: Behaviour) -> Behaviour:
    """Connection N gets ``behaviours[N]`` (the last one repeats)."""
    lock = threading.Lock()
    queue = list(behaviours)

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        with lock:
            b = queue.pop(0) if len(queue) > 1 else queue[0]
        b(conn, req, server)

    return behaviour


SUBSCRIBER_INFO = b'{"id": "sub-1", "fabric_addresses": [{"id": "addr-me"}], "display_name": "me"}'
JOIN = b'{"group_id": "group-1", "fabric_address_ids": ["addr-them", "addr-me"], "from_fabric_address_id": "addr-me"}'
EMPTY_PAGE = b'{"data": [], "links": {}}'


# -- a minimal relay: handshake, answer signalwire.connect, then misbehave ----------------------


def ws_read_frame(conn: socket.socket, stop: threading.Event, limit: int = 1 << 20) -> Optional[Tuple[int, bytes]]:
    """Read one (masked, client-to-server) frame: ``(opcode, payload)`` or ``None``."""

    def exact(n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            if stop.is_set():
                return None
            try:
                chunk = conn.recv(n - len(buf))
            except socket.timeout:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    head = exact(2)
    if head is None:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    masked = head[1] & 0x80
    if length == 126:
        ext = exact(2)
        if ext is None:
            return None
        length = struct.unpack("!H", ext)[0]
    elif length == 127:
        ext = exact(8)
        if ext is None:
            return None
        length = struct.unpack("!Q", ext)[0]
    if length > limit:
        return None
    mask = exact(4) if masked else b"\0\0\0\0"
    if mask is None:
        return None
    payload = exact(length) if length else b""
    if payload is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frame(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 65536:
        head = bytes([0x81, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 127]) + struct.pack("!Q", n)
    return head + data


CONNECT_RESULT = {
    "identity": "id-1", "protocol": "proto-1",
    "authorization": {"jti": "jti-1", "project_id": "proj-1",
                      "fabric_subscriber": {"version": 1, "expires_at": 4102444800, "subscriber_id": "sub-1",
                                            "application_id": None, "project_id": "proj-1", "space_id": "sp"}},
}


def ws_authenticate(conn: socket.socket, req: Request, server: RawServer) -> bool:
    """Handshake, read ``signalwire.connect``, answer it. Records the connect params."""
    import json as _json

    if not ws_handshake(conn, req):
        return False
    frame = ws_read_frame(conn, server.stop_event)
    if frame is None:
        return False
    try:
        msg = _json.loads(frame[1])
    except ValueError:
        return False
    with server.lock:
        server.ws_connects.append(msg)  # type: ignore[attr-defined]
    reply = {"jsonrpc": "2.0", "id": msg.get("id"), "result": CONNECT_RESULT}
    return send_all(conn, ws_frame(_json.dumps(reply)))


def relay_then(after: Behaviour) -> Behaviour:
    """A relay that authenticates the client, then hands the socket to ``after``."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not hasattr(server, "ws_connects"):
            server.ws_connects = []  # type: ignore[attr-defined]
        if ws_authenticate(conn, req, server):
            with server.lock:
                server.authenticated = getattr(server, "authenticated", 0) + 1  # type: ignore[attr-defined]
            after(conn, req, server)

    return behaviour


PROBE = '{"jsonrpc":"2.0","id":"probe-%d","method":"signalwire.ping","params":{"timestamp":1.5}}'


def ws_raw_after_auth(data: bytes) -> Behaviour:
    """Send ``data`` raw, then a ``signalwire.ping`` probe; ``server.probed`` is set when the
    client answers it (so everything before it was handled)."""
    import json as _json

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not hasattr(server, "probed"):
            server.probed = threading.Event()  # type: ignore[attr-defined]
        n = server.connections
        if not send_all(conn, data) or not send_all(conn, ws_frame(PROBE % n)):
            return
        while not server.stop_event.is_set():
            frame = ws_read_frame(conn, server.stop_event)
            if frame is None:
                return
            try:
                msg = _json.loads(frame[1])
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("id") == f"probe-{n}" and "result" in msg:
                server.probed.set()  # type: ignore[attr-defined]
        server.hold(conn)

    return behaviour


def ws_stream_after_auth(budget: int) -> Behaviour:
    """An endless text frame (announced 2**40 bytes) streamed after authentication."""

    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not send_all(conn, bytes([0x81, 127]) + struct.pack("!Q", 1 << 40)):
            return
        block = b"a" * 65536
        if not stream_blocks(conn, server, block, budget):
            return
        server.hold(conn)

    return behaviour


def ws_trickle_after_auth(interval: float = 0.05, budget: int = 100_000) -> Behaviour:
    def behaviour(conn: socket.socket, req: Request, server: RawServer) -> None:
        if not send_all(conn, bytes([0x81, 127]) + struct.pack("!Q", 1 << 40)):
            return
        for _ in range(budget):
            if server.stop_event.wait(interval) or not send_all(conn, b"a"):
                return
            server.count_sent(1)

    return behaviour
