"""A relay-shaped websocket server holding thousands of connections, for ``--case hub``.

asyncio + websockets, in its own process (``python -m benchmarks.hub_server``). It speaks the
relay protocol far enough for a client to live on it: ``signalwire.connect`` answered, a
``signalwire.ping`` every ``--ping`` seconds, ``conversation.message`` events pushed on
command, acks counted. Control: one line per command on a TCP port, answered with one line:
``push`` (one message to every connection), ``rate R S`` (R messages a second, round robin,
for S seconds), ``stats`` (connections, events sent, acks).
Prints ``READY <ws port> <control port>`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import time
import uuid
from typing import Any, Dict, List

import websockets
from websockets.asyncio.server import ServerConnection, serve

_ids = itertools.count()


class Relay:
    def __init__(self, ping: float) -> None:
        self.ping = ping
        self.conns: List[ServerConnection] = []
        self.sent = 0
        self.acks = 0

    async def handle(self, ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                method = frame.get("method")
                if method == "signalwire.connect":
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": {
                        "protocol": f"signalwire_{uuid.uuid4().hex}",
                        "authorization": {"project_id": "p", "fabric_subscriber": {"expires_at": time.time() + 86400}},
                    }}))
                    self.conns.append(ws)
                elif method is None and "result" in frame:
                    self.acks += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            if ws in self.conns:
                self.conns.remove(ws)

    async def pinger(self) -> None:
        while True:
            await asyncio.sleep(self.ping)
            text = json.dumps({"jsonrpc": "2.0", "id": "p", "method": "signalwire.ping", "params": {"timestamp": time.time()}})
            for ws in list(self.conns):
                try:
                    await ws.send(text)
                except websockets.ConnectionClosed:
                    pass

    def event(self, index: int) -> str:
        now = time.time()
        n = next(_ids)
        return json.dumps({"jsonrpc": "2.0", "id": f"e{n}", "method": "signalwire.event", "params": {
            "event_type": "conversation.message", "event_channel": "c", "timestamp": now,
            "params": {"id": f"m{n}", "conversation_id": f"g{index}", "user_id": "u", "ts": now,
                       "details": {}, "type": "message", "subtype": "chat", "kind": None,
                       "text": repr(now), "from_address_id": "a", "metadata": {}, "hidden": False},
        }})

    async def push(self) -> int:
        conns = list(self.conns)
        for i, ws in enumerate(conns):
            try:
                await ws.send(self.event(i))
                self.sent += 1
            except websockets.ConnectionClosed:
                pass
        return len(conns)

    async def rate(self, per_second: float, seconds: float) -> int:
        conns = list(self.conns)
        total = int(per_second * seconds)
        start = time.monotonic()
        for k in range(total):
            delay = start + k / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = conns[k % len(conns)]
            try:
                await ws.send(self.event(k % len(conns)))
                self.sent += 1
            except websockets.ConnectionClosed:
                pass
        return total

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = (await reader.readline()).decode().split()
            if not line:
                break
            answer: Dict[str, Any] = {}
            if line[0] == "push":
                answer["pushed"] = await self.push()
            elif line[0] == "rate":
                answer["pushed"] = await self.rate(float(line[1]), float(line[2]))
            answer.update(connections=len(self.conns), sent=self.sent, acks=self.acks)
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
        writer.close()


async def main(ping: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    relay = Relay(ping)
    async with serve(relay.handle, "127.0.0.1", 0, backlog=4096, ping_interval=None, compression=None,
                     max_queue=None) as server:
        control = await asyncio.start_server(relay.control, "127.0.0.1", 0)
        ws_port = list(server.sockets)[0].getsockname()[1]
        ctl_port = control.sockets[0].getsockname()[1]
        print(f"READY {ws_port} {ctl_port}", flush=True)
        asyncio.get_running_loop().create_task(relay.pinger())
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ping", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().ping))
