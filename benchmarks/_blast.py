"""A push-only websocket server that is never the bottleneck ("blast" servers).

The emulator builds, records and writes every frame in Python, one at a time, which caps it at a
few thousand events per second on the benchmark machine: below every client under test, so the
client ratios would only measure the emulator. The blast servers serialise and frame all the
events *before* the clock starts and then write them with one ``sendall``, so the client's own
cost is what is measured. Two flavours speak just enough protocol for their clients:

* :class:`RelayBlast`: the SignalWire relay (answers ``signalwire.connect``, counts the acks of
  its events, answers pings and other requests with an empty result);
* :class:`SlackBlast`: Slack Socket Mode (``apps.connections.open`` over HTTP, ``hello``, then
  ``events_api`` envelopes acknowledged by ``envelope_id``).

Handshake and the parsing of client frames use websockets' sans-I/O ``ServerProtocol``; the
server's own frames (unmasked, no extension) are framed here.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Set

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol


def frame_text(payload: str) -> bytes:
    """One unmasked, final text frame (RFC 6455 §5.2)."""
    data = payload.encode("utf-8")
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


class _Conn:
    def __init__(self, server: "BlastServer", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.proto = ServerProtocol(max_size=2**22)
        self.lock = threading.Lock()
        self.open = False

    def send_text(self, text: str) -> None:
        self.send_bytes(frame_text(text))

    def send_bytes(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def _flush_protocol(self) -> None:
        out = b"".join(self.proto.data_to_send())
        if out:
            with self.lock:
                self.sock.sendall(out)

    def run(self) -> None:
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return
                self.proto.receive_data(data)
                for event in self.proto.events_received():
                    if isinstance(event, Request):
                        self.proto.send_response(self.proto.accept(event))
                        self._flush_protocol()
                        self.open = True
                        self.server.on_open(self)
                    elif event.opcode is Opcode.TEXT:
                        self.server.on_text(self, event.data.decode("utf-8"))
                    elif event.opcode is Opcode.CLOSE:
                        self._flush_protocol()
                        return
                self._flush_protocol()  # pongs
        except OSError:
            return
        finally:
            self.server._forget(self)
            try:
                self.sock.close()
            except OSError:
                pass


class BlastServer:
    """Threaded; subclasses answer :meth:`on_open` and :meth:`on_text`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._conns: Set[_Conn] = set()
        self._lock = threading.Lock()
        self._pending: Set[str] = set()
        self.acks = 0
        self.unknown_acks = 0
        self._prepared = b""
        self._thread = threading.Thread(target=self._accept, name="blast-accept", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, sock)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.run, name="blast-conn", daemon=True).start()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def open_connections(self) -> List[_Conn]:
        with self._lock:
            return [c for c in self._conns if c.open]

    # -- subclasses -------------------------------------------------------------------------------
    def on_open(self, conn: _Conn) -> None:
        pass

    def on_text(self, conn: _Conn, text: str) -> None:
        pass

    def make_frames(self, count: int, payload: Dict[str, Any]) -> List[str]:
        raise NotImplementedError

    # -- pushing ----------------------------------------------------------------------------------
    def prepare(self, count: int, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Serialise and frame ``count`` events now, so that :meth:`blast` only writes."""
        frames = self.make_frames(count, payload)
        self._prepared = b"".join(frame_text(f) for f in frames)
        return {"frames": count, "bytes": len(self._prepared), "frame_bytes": len(frames[0].encode()) if frames else 0}

    def blast(self) -> Dict[str, Any]:
        conns = self.open_connections()
        if len(conns) != 1:
            raise RuntimeError(f"expected one open connection, have {len(conns)}")
        data, self._prepared = self._prepared, b""
        started = time.perf_counter()
        cpu = time.process_time()
        conns[0].send_bytes(data)
        return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}

    def _expect(self, ids: List[str]) -> None:
        with self._lock:
            self._pending.update(ids)

    def _acked(self, ident: Any) -> None:
        with self._lock:
            if ident in self._pending:
                self._pending.discard(ident)
                self.acks += 1
            else:
                self.unknown_acks += 1

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"acks": self.acks, "pending": len(self._pending), "unknown_acks": self.unknown_acks,
                    "connections": sum(1 for c in self._conns if c.open)}

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
            self.acks = 0
            self.unknown_acks = 0

    def stop(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        for conn in list(self._conns):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)


class RelayBlast(BlastServer):
    """The relay flavour: ``conversation.message`` events shaped like the emulator's."""

    def on_text(self, conn: _Conn, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        method = msg.get("method")
        if method is None:
            if "result" in msg or "error" in msg:
                self._acked(msg.get("id"))
            return
        if method == "signalwire.connect":
            jti = str(uuid.uuid4())
            result = {
                "identity": f"{uuid.uuid4()}@bench",
                "authorization": {
                    "jti": jti,
                    "project_id": str(uuid.uuid4()),
                    "fabric_subscriber": {"version": 1, "expires_at": int(time.time()) + 3600,
                                          "subscriber_id": str(uuid.uuid4()), "application_id": None,
                                          "project_id": str(uuid.uuid4()), "space_id": str(uuid.uuid4())},
                },
                "protocol": f"signalwire_{jti}_{uuid.uuid4()}",
            }
            conn.send_text(json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": result}))
        elif method == "signalwire.ping":
            conn.send_text(json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": {"timestamp": time.time()}}))
        else:
            conn.send_text(json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": {}}))

    def make_frames(self, count: int, payload: Dict[str, Any]) -> List[str]:
        base_ts = time.time()
        ids = [str(uuid.uuid4()) for _ in range(count)]
        frames = []
        for i, event_id in enumerate(ids):
            body = dict(payload, id=str(uuid.uuid4()), ts=base_ts + i * 1e-6)
            frames.append(json.dumps({
                "jsonrpc": "2.0",
                "id": event_id,
                "method": "signalwire.event",
                "params": {
                    "event_type": "conversation.message",
                    "event_channel": f"conversation.{payload.get('group_id')}",
                    "timestamp": f"{base_ts:.7f}",
                    "project_id": "112f770d-a410-4bd0-bc3c-5ce5affc3d68",
                    "node_id": "0663f9b6-7afc-4e66-bee0-dbd59e3ed3fc",
                    "is_author": False,
                    "params": body,
                },
            }))
        self._expect(ids)
        return frames


class SlackBlast(BlastServer):
    """The Slack flavour, with its HTTP ``apps.connections.open`` beside it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        blast = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = json.dumps({"ok": True, "url": f"{blast.url}/link/?ticket={uuid.uuid4().hex}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._http = ThreadingHTTPServer((host, 0), Handler)
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                                             name="slack-blast-http", daemon=True)
        self._http_thread.start()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}/api/"

    def on_open(self, conn: _Conn) -> None:
        conn.send_text(json.dumps({"type": "hello", "num_connections": 1,
                                   "debug_info": {"host": "bench"}, "connection_info": {"app_id": "A0BENCH"}}))

    def on_text(self, conn: _Conn, text: str) -> None:
        try:
            self._acked(json.loads(text).get("envelope_id"))
        except (ValueError, AttributeError):
            pass

    def make_frames(self, count: int, payload: Dict[str, Any]) -> List[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        frames = []
        for i, envelope_id in enumerate(ids):
            body = dict(payload, event_ts=f"{time.time():.6f}")
            frames.append(json.dumps({
                "envelope_id": envelope_id,
                "payload": {"type": "event_callback", "event": body, "event_id": f"Ev{i:08d}"},
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
            }))
        self._expect(ids)
        return frames

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        super().stop()
