"""A Slack-shaped Socket Mode server, so slack_sdk's ``SocketModeClient`` runs in the same bench.

Just enough of Slack for the throughput row of the realtime case, on loopback:

* ``POST /api/apps.connections.open`` (HTTP, stdlib server) answers
  ``{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=..."}``;
* the websocket (``websockets``, the same library as the emulator, compression off) greets with
  a ``hello`` message, then :meth:`SlackSocketModeServer.push` sends ``events_api`` envelopes,
  each with a fresh ``envelope_id``, that the client acknowledges with ``{"envelope_id": ...}``.

The envelopes carry the same ``conversation.message`` payload the emulator pushes, so both
servers send frames of about the same size and the clients parse the same JSON.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set

from websockets.asyncio.server import ServerConnection, serve


class SlackSocketModeServer:
    """Threaded server: ``start()``, ``push(count, payload)``, ``acks``, ``stop()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._stop: Optional[asyncio.Event] = None
        self._http: Optional[ThreadingHTTPServer] = None
        self._http_thread: Optional[threading.Thread] = None
        self._connections: Set[ServerConnection] = set()
        self._lock = threading.Lock()
        self._pending: Set[str] = set()
        self.acks = 0
        self.unknown_acks = 0
        self.ws_port = 0
        self.http_port = 0
        self.connections_opened = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "SlackSocketModeServer":
        self._thread = threading.Thread(target=self._run, name="slack-ws-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Slack-shaped websocket server did not start within 10 s")
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.rstrip("/").endswith("/apps.connections.open"):
                    server.connections_opened += 1
                    ticket = uuid.uuid4().hex
                    body: Dict[str, Any] = {
                        "ok": True,
                        "url": f"ws://{server.host}:{server.ws_port}/link/?ticket={ticket}",
                    }
                    status = 200
                else:
                    body, status = {"ok": False, "error": "unknown_method"}, 404
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._http = ThreadingHTTPServer((self.host, 0), Handler)
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, name="slack-http", daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "SlackSocketModeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """The ``base_url`` to give slack_sdk's ``WebClient``."""
        return f"http://{self.host}:{self.http_port}/api/"

    # -- the websocket side ---------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            0,
            compression=None,
            ping_interval=None,
            max_size=2**22,
        ) as ws_server:
            self.ws_port = list(ws_server.sockets)[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        try:
            await ws.send(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": len(self._connections),
                        "debug_info": {"host": "bench", "approximate_connection_time": 18060},
                        "connection_info": {"app_id": "A0BENCH"},
                    }
                )
            )
            async for message in ws:
                try:
                    envelope_id = json.loads(message).get("envelope_id")
                except (ValueError, AttributeError):
                    continue
                with self._lock:
                    if envelope_id in self._pending:
                        self._pending.discard(envelope_id)
                        self.acks += 1
                    else:
                        self.unknown_acks += 1
        except Exception:  # noqa: BLE001 - a client going away mid-send is normal here
            pass
        finally:
            self._connections.discard(ws)

    async def _push(self, count: int, payload: Dict[str, Any]) -> float:
        started = time.perf_counter()
        targets: List[ServerConnection] = list(self._connections)
        for i in range(count):
            envelope_id = str(uuid.uuid4())
            with self._lock:
                self._pending.add(envelope_id)
            body = dict(payload)
            body["event_ts"] = f"{time.time():.6f}"
            frame = json.dumps(
                {
                    "envelope_id": envelope_id,
                    "payload": {"type": "event_callback", "event": body, "event_id": f"Ev{i:08d}"},
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
            for ws in targets:
                await ws.send(frame)
        return time.perf_counter() - started

    def push(self, count: int, payload: Dict[str, Any], timeout: float = 120.0) -> float:
        """Send ``count`` envelopes to every connected client; the seconds the sends took."""
        if self._loop is None:
            raise RuntimeError("server not started")
        future = asyncio.run_coroutine_threadsafe(self._push(count, payload), self._loop)
        return future.result(timeout)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def reset_counters(self) -> None:
        with self._lock:
            self._pending.clear()
            self.acks = 0
            self.unknown_acks = 0
