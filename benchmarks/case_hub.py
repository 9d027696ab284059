"""``--case hub``: many subscribers on one RealtimeHub (issue 15).

The server is ``benchmarks/hub_server.py`` (asyncio + websockets, its own process). Each
measured side runs in a child process of its own, one after the other, against that server:

* ``bare``: a bare selector loop holding N websockets (handshake, ``signalwire.connect``, ping
  answers): the floor for idle CPU;
* ``sdk``: N :class:`HubListener` on one :class:`RealtimeHub` (the listener of
  ``Client(hub=...)``, given an empty gap fill: this server has no REST side), each with one
  callback subscription.

Reported: SDK threads, RSS per subscriber above the baseline (the process after imports, with
the hub made), connect time, idle CPU over a window that holds server pings, one message to
each delivered (exactly once, how fast), and at 10,000 the delivery latency at 1,000 msg/s.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

from benchmarks._common import Size
from benchmarks._report import CaseResult, Row

IDLE_SECONDS = 25.0


def _rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _thread_cpu() -> Dict[str, float]:
    """CPU seconds of each thread of this process, by name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: Dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[thread.name] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return out


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need + 1000), hard))


def _control(port: int, command: str) -> Dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return dict(json.loads(data))


def _fake_sat() -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = b64(json.dumps({"alg": "dir", "enc": "A256GCM", "ch": "127.0.0.1", "typ": "SAT"}).encode())
    return ".".join([header, "", b64(os.urandom(12)), b64(os.urandom(32)), b64(os.urandom(16))])


# -- the children ------------------------------------------------------------------------------


def child_sdk(n: int, ws_port: int, ctl_port: int, idle: float, rate: float) -> Dict[str, Any]:
    _raise_nofile(n)
    from signalwire_conversation.config import TokenProvider
    from signalwire_conversation.realtime.hub import RealtimeHub
    from signalwire_conversation.realtime.hub.listener import HubListener

    hub = RealtimeHub(workers=4)
    token = TokenProvider(_fake_sat())
    url = f"ws://127.0.0.1:{ws_port}/"
    counts = [0] * n
    latencies: List[float] = []

    def callback(i: int) -> Any:
        def on_event(event: Any) -> None:
            counts[i] += 1
            if measuring_latency:
                latencies.append(time.time() - float(event.text))

        return on_event

    measuring_latency = False
    listeners = [
        HubListener(hub=hub, tokens=token, relay_url=url, fetch_missed=lambda since: [], fetch_latest=lambda: [],
                    ping_timeout=25.0)
        for _ in range(n)
    ]
    import gc

    gc.collect()
    base = _rss_kb()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="bench-subscribe") as pool:
        list(pool.map(lambda i: listeners[i].subscribe(callback(i), timeout=60), range(n)))
    connect_s = time.monotonic() - started
    time.sleep(1.0)
    gc.collect()
    rss = _rss_kb()
    threads = [t.name for t in threading.enumerate() if t.name.startswith("signalwire-")]
    cpu0, t0, by_thread0 = _cpu(), time.monotonic(), _thread_cpu()
    time.sleep(idle)
    idle_cpu = (_cpu() - cpu0) / (time.monotonic() - t0)
    by_thread = {k: round(v - by_thread0.get(k, 0.0), 3) for k, v in _thread_cpu().items()}
    started = time.monotonic()
    _control(ctl_port, "push")
    deadline = started + 30
    while time.monotonic() < deadline and sum(1 for c in counts if c >= 1) < n:
        time.sleep(0.005)
    deliver_s = time.monotonic() - started
    time.sleep(0.5)
    once = sum(1 for c in counts if c == 1)
    out: Dict[str, Any] = dict(n=n, connect_s=connect_s, rss_kb=rss - base, threads=len(threads),
                               idle_cpu=idle_cpu, deliver_s=deliver_s, exactly_once=once,
                               idle_cpu_s_by_thread=by_thread)
    if rate:
        measuring_latency = True
        _control(ctl_port, f"rate {rate} 5")
        time.sleep(1.0)
        lat = sorted(latencies)
        out.update(latency_n=len(lat), p50_ms=lat[len(lat) // 2] * 1000 if lat else None,
                   p99_ms=lat[int(len(lat) * 0.99)] * 1000 if lat else None)
    started = time.monotonic()
    hub.close()
    out["close_s"] = time.monotonic() - started
    out["threads_after_close"] = len([t for t in threading.enumerate() if t.name.startswith("signalwire-")])
    return out


def child_bare(n: int, ws_port: int, idle: float) -> Dict[str, Any]:
    """A bare loop: the sockets, the handshakes, the ping answers; nothing else."""
    _raise_nofile(n)
    from signalwire_conversation.realtime.connection import mask_frame
    from signalwire_conversation.realtime.hub.framing import FrameReader, new_key, parse_upgrade, upgrade_request

    sel = selectors.DefaultSelector()
    base = _rss_kb()
    started = time.monotonic()
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", ws_port))
        key = new_key()
        sock.sendall(upgrade_request("127.0.0.1", ws_port, "/", key, secure=False))
        data = b""
        while parse_upgrade(data, key) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the server closed the connection during the upgrade")
            data += chunk
        connect = json.dumps({"jsonrpc": "2.0", "id": "c", "method": "signalwire.connect", "params": {}})
        sock.sendall(mask_frame(connect.encode(), os.urandom(4)))
        reader = FrameReader(1 << 20)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection before answering signalwire.connect")
            if reader.feed(chunk):
                break
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, reader)
    connect_s = time.monotonic() - started
    rss = _rss_kb()
    cpu0, t0 = _cpu(), time.monotonic()
    while time.monotonic() - t0 < idle:
        for key_, _ in sel.select(max(0.0, idle - (time.monotonic() - t0))):
            sock = key_.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            for _, payload in key_.data.feed(data):
                frame = json.loads(payload)
                if frame.get("method") == "signalwire.ping":
                    reply = json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": {}})
                    sock.send(mask_frame(reply.encode(), os.urandom(4)))  # type: ignore[union-attr]
    idle_cpu = (_cpu() - cpu0) / (time.monotonic() - t0)
    for key_ in list(sel.get_map().values()):
        key_.fileobj.close()  # type: ignore[union-attr]
    return dict(n=n, connect_s=connect_s, rss_kb=rss - base, idle_cpu=idle_cpu)


# -- the parent --------------------------------------------------------------------------------


def _child(args: List[str], timeout: float) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.case_hub", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[0]} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def measure(n: int, idle: float, rate: float, bare: bool) -> Dict[str, Any]:
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.hub_server"], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        ws_port, ctl_port = ready[1], ready[2]
        out: Dict[str, Any] = {}
        if bare:
            out["bare"] = _child(["bare", str(n), ws_port, ctl_port, str(idle)], 600)
        out["sdk"] = _child(["sdk", str(n), ws_port, ctl_port, str(idle), str(rate)], 600)
        return out
    finally:
        server.terminate()
        server.wait(10)


def run_hub(size: Size) -> CaseResult:
    result = CaseResult("hub", "many subscribers on one RealtimeHub")
    small = 2000 if size.name == "full" else 100
    idle = IDLE_SECONDS if small == 2000 else 2.0
    figures = measure(small, idle, 0.0, bare=True)
    sdk, bare = figures["sdk"], figures["bare"]
    result.rows.append(Row(f"SDK threads, {small:,} clients", "threads", sdk["threads"], op="<=", bound=8,
                           compare="value"))
    result.rows.append(Row("RSS per subscriber above baseline", "KB", sdk["rss_kb"] / small, op="<=", bound=30, compare="value"))
    result.rows.append(Row("idle CPU vs bare socket loop (same sockets, same server)", "core", sdk["idle_cpu"],
                           bare["idle_cpu"], op="<=", bound=2.0, reference="bare loop"))
    result.rows.append(Row(f"all {small:,} connected", "s", sdk["connect_s"], op="<=", bound=10, compare="value"))
    result.rows.append(Row("one message to each, all delivered", "s", sdk["deliver_s"], op="<=", bound=2, compare="value"))
    result.rows.append(Row("delivered exactly once", "clients", sdk["exactly_once"], small, op=">=", bound=1.0))
    result.rows.append(Row("SDK threads left after hub.close()", "threads", sdk["threads_after_close"], op="==",
                           bound=0, compare="value"))
    result.notes.append(json.dumps(figures))
    if small == 2000:
        big = measure(10000, IDLE_SECONDS, 1000.0, bare=False)["sdk"]
        result.rows.append(Row("10,000 clients: SDK threads", "threads", big["threads"], compare="value"))
        result.rows.append(Row("10,000 clients: RSS per subscriber", "KB", big["rss_kb"] / 10000, compare="value"))
        result.rows.append(Row("10,000 clients: idle CPU per subscriber", "µs/s", big["idle_cpu"] / 10000 * 1e6, compare="value"))
        result.rows.append(Row("10,000 clients: p50 latency at 1,000 msg/s", "ms", big["p50_ms"], compare="value"))
        result.rows.append(Row("10,000 clients: p99 latency at 1,000 msg/s", "ms", big["p99_ms"], compare="value"))
        result.notes.append(json.dumps(big))
    return result


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "sdk":
        n, ws, ctl, idle, rate = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
        print(json.dumps(child_sdk(n, ws, ctl, idle, rate)), flush=True)
    elif kind == "bare":
        print(json.dumps(child_bare(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[5]))), flush=True)
    elif kind == "measure":
        print(json.dumps(measure(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), bare=sys.argv[5] == "1")))
