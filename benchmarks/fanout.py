"""Fan-out benchmarks: relay throughput (socket -> stream) and failover time.

Run: ``python -m benchmarks.fanout [--messages N] [--failovers K] [--lease-ttl S] [--json FILE]``
(needs a ``redis-server`` binary and the ``redis`` and ``emulator`` extras).

* **Throughput**: one relay process (``python -m signalwire_conversation.fanout relay``) is
  active for a subscriber of the in-process emulator; N messages are pushed in one burst
  (``emu.send_messages``); the figure is N / (time from the burst to the N-th stream entry).
  The emulator's own push time and the raw append rate of the Lua script (``StreamWriter``,
  batches of 200, no websocket) are reported beside it as floors.
* **Fleet**: one fleet relay process (``relay --tokens-file``) holding ``--fleet-subscribers``
  subscribers: the time until it holds every lease with every websocket authenticated, then
  messages/s for a burst spread over all subscribers; a second process joins (time until it
  has its share by hand-over), then the first is SIGKILLed (time until the second holds every
  lease again).
* **Failover**: two relay processes with the same token; the active one is SIGKILLed while
  messages flow; reported: time from the kill to the standby's "is ACTIVE" log line, and to its
  first stream entry (which includes the REST gap fill of the backlog), over K repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import redis

from signalwire_conversation.fanout import StreamWriter
from signalwire_conversation.models import ConversationMessageEvent
from signalwire_conversation.testing import Emulator

TOKEN_RE = re.compile(r"relay (\S+) is ACTIVE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


class _Redis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("benchmarks.fanout needs a redis-server binary on PATH")
        self.dir = tempfile.mkdtemp(prefix="fanout-bench-")
        self.port = _free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

        def up() -> bool:
            try:
                return bool(self.client.ping())
            except redis.RedisError:
                return False

        _wait(up, 10, "redis-server")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class _Relay:
    def __init__(self, emu: Emulator, token: str, url: str, ttl: float) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "signalwire_conversation.fanout", "relay", "--redis", url,
             "--token", token, "--base-url", emu.base_url, "--lease-ttl", str(ttl),
             "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )
        self.lines: List[str] = []
        self.token: Optional[str] = None
        self.active_at: Optional[float] = None
        self.standby = threading.Event()
        self.active = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            match = TOKEN_RE.search(line)
            if match:
                self.token = match.group(1)
                self.active_at = time.monotonic()
                self.active.set()
            elif "is STANDBY" in line:
                self.standby.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def raw_append_rate(r: redis.Redis, n: int) -> float:
    stream = "bench:raw"
    r.delete(stream)
    r.set(f"{stream}:lease", "bench", px=600_000)
    writer = StreamWriter(r, stream, token="bench", seen_ttl=600)
    events = [
        ConversationMessageEvent(id=f"raw{i}", conversation_id="g", user_id="u", ts=1.7e9 + i,
                                 type="message", subtype="chat", text=f"message {i}")
        for i in range(n)
    ]
    started = time.perf_counter()
    for first in range(0, n, 200):
        writer.append(events[first:first + 200])
    return n / (time.perf_counter() - started)


def throughput(emu: Emulator, rs: _Redis, n: int, ttl: float) -> Dict[str, float]:
    alice, bob = emu.add_subscriber("alice-tp"), emu.add_subscriber("bob-tp")
    stream = f"signalwire:conversation:{{{alice.address_id}}}"
    relay = _Relay(emu, alice.token, rs.url, ttl)
    try:
        if not relay.active.wait(30):
            raise SystemExit("relay never became active:\n" + "".join(relay.lines))
        emu.wait_connected(alice, count=1, timeout=10)  # ACTIVE may precede the emulator's count
        emu.send_messages(bob, alice.address_id, ["warm-up"])
        _wait(lambda: rs.client.xlen(stream) >= 1, 10, "warm-up entry")
        started = time.perf_counter()
        emu.send_messages(bob, alice.address_id, [f"message {i}" for i in range(n)])
        pushed = time.perf_counter() - started
        _wait(lambda: rs.client.xlen(stream) >= n + 1, 120, f"{n} entries")
        elapsed = time.perf_counter() - started
        return {"messages": n, "seconds": elapsed, "per_second": n / elapsed, "emulator_push_seconds": pushed}
    finally:
        relay.stop()


def failover(emu: Emulator, rs: _Redis, ttl: float, backlog: int) -> Dict[str, float]:
    alice, bob = emu.add_subscriber(f"alice-fo-{time.monotonic_ns()}"), emu.add_subscriber(f"bob-fo-{time.monotonic_ns()}")
    stream = f"signalwire:conversation:{{{alice.address_id}}}"
    a = _Relay(emu, alice.token, rs.url, ttl)
    b: Optional[_Relay] = None
    try:
        if not a.active.wait(30):
            raise SystemExit("relay never became active:\n" + "".join(a.lines))
        emu.wait_connected(alice, count=1, timeout=10)
        b = _Relay(emu, alice.token, rs.url, ttl)
        if not b.standby.wait(30):
            raise SystemExit("standby never started:\n" + "".join(b.lines))
        emu.send_messages(bob, alice.address_id, [f"before {i}" for i in range(backlog)])
        _wait(lambda: rs.client.xlen(stream) >= backlog, 30, "entries before the kill")
        a.process.send_signal(signal.SIGKILL)
        killed_wall, killed = time.time(), time.monotonic()
        emu.send_messages(bob, alice.address_id, [f"after {i}" for i in range(backlog)])
        if not b.active.wait(ttl + 30):
            raise SystemExit("the standby never took over:\n" + "".join(b.lines))
        assert b.active_at is not None
        _wait(lambda: rs.client.xlen(stream) >= 2 * backlog, 60, "the backlog")
        first = next(eid for eid, f in rs.client.xrange(stream) if f["relay"] == b.token)
        first_append = int(first.split("-")[0]) / 1000.0 - killed_wall
        ids = [f["id"] for _, f in rs.client.xrange(stream)]
        assert len(ids) == len(set(ids)) == 2 * backlog, "lost or duplicated entries"
        return {"to_active": b.active_at - killed, "to_first_append": first_append}
    finally:
        a.stop()
        if b is not None:
            b.stop()


def fleet(emu: Emulator, rs: _Redis, n: int, messages: int, ttl: float) -> Dict[str, float]:
    tag = time.monotonic_ns()
    sender = emu.add_subscriber(f"hq-{tag}")
    subs = [emu.add_subscriber(f"agent-{tag}-{i}") for i in range(n)]
    streams = [f"signalwire:conversation:{{{s.address_id}}}" for s in subs]
    fleet_name = f"bench-{tag}"
    tokens = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    tokens.write("\n".join(s.token for s in subs) + "\n")
    tokens.close()

    def start() -> "subprocess.Popen[bytes]":
        return subprocess.Popen(
            [sys.executable, "-m", "signalwire_conversation.fanout", "relay", "--redis", rs.url,
             "--tokens-file", tokens.name, "--fleet", fleet_name, "--lease-ttl", str(ttl),
             "--base-url", emu.base_url, "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def holders() -> Dict[str, int]:
        pipe = rs.client.pipeline(transaction=False)
        for stream in streams:
            pipe.get(f"{stream}:lease")
        counts: Dict[str, int] = {}
        for holder in pipe.execute():
            if holder is not None:
                counts[holder] = counts.get(holder, 0) + 1
        return counts

    procs: List["subprocess.Popen[bytes]"] = []
    try:
        started = time.monotonic()
        procs.append(start())
        _wait(lambda: sum(holders().values()) == n, 600, f"one process holding {n} leases")
        for sub in subs:
            emu.wait_connected(sub, count=1, timeout=600)
        hold_all = time.monotonic() - started
        (first_id,) = holders()
        per_sub = max(1, messages // n)
        before = sum(rs.client.xlen(s) for s in streams)
        t0 = time.perf_counter()
        for sub in subs:
            emu.send_messages(sender, sub.address_id, [f"m{i}" for i in range(per_sub)])
        pushed = time.perf_counter() - t0
        total = per_sub * n
        _wait(lambda: sum(rs.client.xlen(s) for s in streams) >= before + total, 600, f"{total} entries")
        elapsed = time.perf_counter() - t0
        joined = time.monotonic()
        procs.append(start())
        share = -(-n // 2)
        _wait(lambda: len(holders()) == 2 and min(holders().values()) >= share - 1, 600, "the second process's share")
        rebalance = time.monotonic() - joined
        procs[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: holders().get(first_id, 0) == 0 and sum(holders().values()) == n, 600,
              "the survivor holding every lease")
        failover_s = time.monotonic() - killed
        return {"subscribers": n, "hold_all_seconds": hold_all, "messages": total, "seconds": elapsed,
                "per_second": total / elapsed, "emulator_push_seconds": pushed,
                "rebalance_seconds": rebalance, "failover_seconds": failover_s, "lease_ttl": ttl}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        os.unlink(tokens.name)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="burst size for the throughput case")
    parser.add_argument("--failovers", type=int, default=3, help="failover repetitions")
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="lease TTL of the relays, seconds")
    parser.add_argument("--backlog", type=int, default=200, help="messages before and after each kill")
    parser.add_argument("--fleet-subscribers", type=int, default=1000, help="subscribers of the fleet case (0: skip it)")
    parser.add_argument("--fleet-messages", type=int, default=5000, help="messages of the fleet burst, spread evenly")
    parser.add_argument("--fleet-lease-ttl", type=float, default=10.0, help="lease TTL of the fleet case (default 10, the relay's)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the relays and the redis-server started here are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    rs = _Redis()
    try:
        with Emulator() as emu:
            raw = raw_append_rate(rs.client, args.messages)
            tp = throughput(emu, rs, args.messages, args.lease_ttl)
            runs = [failover(emu, rs, args.lease_ttl, args.backlog) for _ in range(args.failovers)]
            fl = fleet(emu, rs, args.fleet_subscribers, args.fleet_messages, args.fleet_lease_ttl) if args.fleet_subscribers else None
    finally:
        rs.close()
    to_active = [r["to_active"] for r in runs]
    to_append = [r["to_first_append"] for r in runs]
    results = {
        "throughput": tp,
        "raw_append_per_second": raw,
        "failover": {
            "lease_ttl": args.lease_ttl,
            "runs": runs,
            "to_active_median": statistics.median(to_active),
            "to_active_max": max(to_active),
            "to_first_append_median": statistics.median(to_append),
            "to_first_append_max": max(to_append),
        },
        "fleet": fl,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    print(f"relay throughput (socket -> stream, one relay process): {tp['per_second']:,.0f} messages/s "
          f"({tp['messages']} in {tp['seconds']:.2f} s; emulator push alone {tp['emulator_push_seconds']:.2f} s)")
    print(f"append script alone (batches of 200): {raw:,.0f} messages/s")
    print(f"failover, lease TTL {args.lease_ttl:g} s, {len(runs)} runs: standby active after "
          f"{statistics.median(to_active):.2f} s median / {max(to_active):.2f} s max; first append after "
          f"{statistics.median(to_append):.2f} s median / {max(to_append):.2f} s max "
          f"(includes the REST gap fill of {args.backlog} messages)")
    if fl is not None:
        print(f"fleet, one process, {fl['subscribers']} subscribers: all leases held and websockets up after "
              f"{fl['hold_all_seconds']:.1f} s; {fl['per_second']:,.0f} messages/s ({fl['messages']} spread over "
              f"all in {fl['seconds']:.2f} s; emulator push alone {fl['emulator_push_seconds']:.2f} s); a second "
              f"process had its share after {fl['rebalance_seconds']:.1f} s; after SIGKILL of the first, the "
              f"second held all after {fl['failover_seconds']:.1f} s (lease TTL {fl['lease_ttl']:g} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
