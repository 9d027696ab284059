"""A TCP proxy on loopback that can drop its links abruptly and refuse new ones (recovery case).

``down()`` resets every open connection (``SO_LINGER`` 0, so the peers see a reset, as after a
network failure) and closes the listening socket, so reconnects are refused until ``up()``
listens again on the same port. Nothing else: bytes are copied as they come.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import List, Optional, Set, Tuple


def _abort(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    def __init__(self, target: Tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.host = host
        self.port = port
        self._listener: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None
        self._pairs: Set[Tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self.accepted = 0

    def start(self) -> "TcpProxy":
        self.up()
        return self

    def up(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="bench-proxy-accept", daemon=True
        )
        self._accept_thread.start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for a, b in pairs:
            _abort(a)
            _abort(b)

    def stop(self) -> None:
        self.down()
        for t in self._threads:
            t.join(5)
        self._threads.clear()

    @property
    def url_host(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _abort(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            self.accepted += 1
            t = threading.Thread(target=self._pump, args=(pair,), name="bench-proxy-pump", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

    def _pump(self, pair: Tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                with self._lock:
                    if pair not in self._pairs:
                        return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[s].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                live = pair in self._pairs
                self._pairs.discard(pair)
            if live:
                a.close()
                b.close()
