"""Hub framing: the hand-written ``FrameReader`` against ``wsproto`` (the numbers behind the
choice in docs/performance.md). ``python -m benchmarks.hub_framing`` (needs ``wsproto``).

Measured the way the hub's loop uses a websocket: one server ping (a 130-byte text frame)
arriving per read, parsed, and a masked 80-byte answer built; plus the memory of one idle
connection's protocol object once open (tracemalloc).
"""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
from typing import Any, Callable, Dict, List

from signalwire_conversation.realtime.connection import mask_frame
from signalwire_conversation.realtime.hub.framing import FrameReader

PING = json.dumps({"jsonrpc": "2.0", "id": "8c9f0e0a-7a51-4c0c-9a57-5d2f0b0e7e11", "method": "signalwire.ping",
                   "params": {"timestamp": 1764758400.123}}).encode()
REPLY = b'{"jsonrpc":"2.0","id":"8c9f0e0a-7a51-4c0c-9a57-5d2f0b0e7e11","result":{"timestamp":1764758400.123}}'
N = 50_000


def server_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = struct.pack("!BB", 0x81, n) if n < 126 else struct.pack("!BBH", 0x81, 126, n)
    return head + payload


def bench_hand() -> float:
    reader = FrameReader(1 << 20)
    data = server_frame(PING)
    key = os.urandom(4)
    start = time.perf_counter()
    for _ in range(N):
        for _op, payload in reader.feed(data):
            mask_frame(REPLY, key)
    return (time.perf_counter() - start) / N * 1e6


def _open_wsproto() -> Any:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="relay", target="/")))
    for event in server.events():
        assert isinstance(event, Request)
    client.receive_data(server.send(AcceptConnection()))
    for event in client.events():
        assert isinstance(event, AcceptConnection)
    return client


def bench_wsproto() -> float:
    from wsproto.events import TextMessage

    client = _open_wsproto()
    data = server_frame(PING)
    reply = REPLY.decode()
    start = time.perf_counter()
    for _ in range(N):
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, TextMessage):
                client.send(TextMessage(data=reply))
    return (time.perf_counter() - start) / N * 1e6


def memory(make: Callable[[], Any]) -> float:
    keep: List[Any] = []
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        keep.append(make())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / 1000 / 1024


def run() -> Dict[str, float]:
    hand = min(bench_hand() for _ in range(5))
    ws = min(bench_wsproto() for _ in range(5))
    return {
        "hand_us_per_ping": round(hand, 2),
        "wsproto_us_per_ping": round(ws, 2),
        "hand_kb_per_connection": round(memory(lambda: FrameReader(1 << 20)), 2),
        "wsproto_kb_per_connection": round(memory(_open_wsproto), 2),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
