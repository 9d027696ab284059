"""The servers of the bench, each in its own process, driven by JSON lines on stdin/stdout.

The clients under test and the servers they talk to never share a GIL (the machine the
figures are meant for has 2 cores: one for the server process, one for the client process).
``python -m benchmarks._serve emulator|blast`` reads one JSON command per line and answers
one JSON line: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
:class:`ServerProcess` is the parent's side.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_text(i: int, size: int) -> str:
    """The text of the ``i``-th bench message, padded to ``size`` characters."""
    head = f"bench message {i:07d} "
    return head + "x" * max(0, size - len(head))


def stamp_text(size: int) -> str:
    """A text that starts with the sender's ``perf_counter()`` (latency case)."""
    head = f"{time.perf_counter():.9f} "
    return head + "y" * max(0, size - len(head))


def sent_at(text: Optional[str]) -> float:
    """The ``perf_counter()`` stamped by :func:`stamp_text`."""
    return float((text or "nan").split(" ", 1)[0])


# -------------------------------------------------------------------------------------------------
# child side
# -------------------------------------------------------------------------------------------------


class _EmulatorHost:
    def __init__(self) -> None:
        self.emu: Any = None
        self.subs: Dict[str, Any] = {}
        self.proxy: Any = None

    def start(self, **kwargs: Any) -> Dict[str, Any]:
        from signalwire_conversation.testing import Emulator

        self.emu = Emulator(host="127.0.0.1", port=0, **kwargs)
        self.emu.start()
        return {"base_url": self.emu.base_url, "relay_url": self.emu.relay_url}

    def add_subscriber(self, name: str) -> Dict[str, Any]:
        sub = self.emu.add_subscriber(name)
        self.subs[name] = sub
        return {"name": name, "token": sub.token, "address_id": sub.address_id}

    def group_id(self, a: str, address_id: str) -> str:
        return str(self.emu.group_id(self.subs[a], address_id))

    def seed(self, sender: str, address_id: str, count: int, text_size: int, chunk: int = 2000) -> Dict[str, Any]:
        started = time.perf_counter()
        for first in range(0, count, chunk):
            texts = [bench_text(i, text_size) for i in range(first, min(count, first + chunk))]
            self.emu.send_messages(self.subs[sender], address_id, texts)
        return {"seconds": time.perf_counter() - started}

    def push(self, sender: str, address_id: str, count: int, text_size: int, first: int = 0) -> Dict[str, Any]:
        texts = [bench_text(i, text_size) for i in range(first, first + count)]
        started = time.perf_counter()
        self.emu.send_messages(self.subs[sender], address_id, texts)
        return {"seconds": time.perf_counter() - started}

    def paced(self, sender: str, address_id: str, count: int, rate: float, text_size: int) -> Dict[str, Any]:
        sub = self.subs[sender]
        started = time.perf_counter()
        for i in range(count):
            target = started + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.emu.send_message(sub, address_id, stamp_text(text_size))
        return {"seconds": time.perf_counter() - started}

    def send(self, sender: str, address_id: str, text: str) -> Dict[str, Any]:
        self.emu.send_message(self.subs[sender], address_id, text)
        return {"t": time.perf_counter()}

    def drop(self, subscriber: Optional[str] = None) -> Dict[str, Any]:
        t = time.perf_counter()
        self.emu.drop_connections(self.subs[subscriber] if subscriber else None)
        return {"t": t}

    def unacked(self, subscriber: Optional[str] = None) -> int:
        return len(self.emu.unacked_events(self.subs[subscriber] if subscriber else None))

    def connection_count(self) -> int:
        return len(self.emu.connections)

    def proxy_start(self) -> Dict[str, Any]:
        from urllib.parse import urlsplit

        from benchmarks._proxy import TcpProxy

        parts = urlsplit(self.emu.relay_url)
        self.proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 80)).start()
        return {"relay_url": f"ws://127.0.0.1:{self.proxy.port}"}

    def down_and_send(self, sender: str, address_id: str, texts: List[str]) -> Dict[str, Any]:
        t = time.perf_counter()
        self.proxy.down()
        self.emu.send_messages(self.subs[sender], address_id, texts)
        return {"t_down": t, "t_sent": time.perf_counter()}

    def proxy_up(self) -> Dict[str, Any]:
        self.proxy.up()
        return {"t": time.perf_counter()}

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.emu is not None:
            self.emu.stop()


class _BlastHost:
    """The two blast servers (benchmarks/_blast.py): ``relay`` and ``slack``."""

    def __init__(self) -> None:
        self.servers: Dict[str, Any] = {}

    def start(self) -> Dict[str, Any]:
        from benchmarks._blast import RelayBlast, SlackBlast

        self.servers = {"relay": RelayBlast(), "slack": SlackBlast()}
        return {"relay_url": self.servers["relay"].url, "api_url": self.servers["slack"].api_url}

    def prepare(self, flavour: str, count: int, payload: Dict[str, Any]) -> Dict[str, Any]:
        return dict(self.servers[flavour].prepare(count, payload))

    def blast(self, flavour: str) -> Dict[str, Any]:
        return dict(self.servers[flavour].blast())

    def stats(self, flavour: str) -> Dict[str, Any]:
        return dict(self.servers[flavour].stats())

    def reset(self, flavour: str) -> None:
        self.servers[flavour].reset()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _child_main(kind: str) -> int:
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    host: Any = {"emulator": _EmulatorHost, "blast": _BlastHost}[kind]()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            fn: Callable[..., Any] = getattr(host, op)
            result = fn(**cmd)
            answer = {"ok": True, "result": result}
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
        if op == "stop":
            return 0
    host.stop()
    return 0


# -------------------------------------------------------------------------------------------------
# parent side
# -------------------------------------------------------------------------------------------------


class ServerError(RuntimeError):
    """A server process failed a command."""


class ServerProcess:
    """A server in a child process: ``call(op, **kwargs)``, or ``send(...)`` then ``result()``."""

    def __init__(self, kind: str, timeout: float = 60.0) -> None:
        self.kind = kind
        self.timeout = timeout
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            cwd=REPO_ROOT,
            env=env,
            text=True,
            bufsize=1,
        )
        self._waiting = False
        # BENCH_PROFILE_SERVER=/tmp/prof: sample the server with py-spy (raw, collapsed stacks)
        # into /tmp/prof-<kind>-<pid>.txt, to see whether a figure is bound by the server.
        self._profiler: Optional["subprocess.Popen[bytes]"] = None
        profile = os.environ.get("BENCH_PROFILE_SERVER")
        if profile:
            self._profiler = subprocess.Popen(
                ["py-spy", "record", "-f", "raw", "-r", "250", "-o", f"{profile}-{kind}-{self._proc.pid}.txt",
                 "--pid", str(self._proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

    def send(self, op: str, **kwargs: Any) -> None:
        if self._waiting:
            raise RuntimeError("the previous command has not been answered yet")
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(dict(kwargs, op=op)) + "\n")
        self._proc.stdin.flush()
        self._waiting = True

    def result(self, timeout: Optional[float] = None) -> Any:
        assert self._proc.stdout is not None
        limit = self.timeout if timeout is None else timeout
        ready, _, _ = select.select([self._proc.stdout], [], [], limit)
        if not ready:
            raise TimeoutError(f"{self.kind} server: no answer within {limit} s")
        line = self._proc.stdout.readline()
        self._waiting = False
        if not line:
            raise ServerError(f"{self.kind} server exited (code {self._proc.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise ServerError(f"{self.kind} server: {answer['error']}")
        return answer["result"]

    def call(self, op: str, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        self.send(op, **kwargs)
        return self.result(timeout)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                if self._waiting:
                    self.result(timeout=30)
                self.call("stop", timeout=15)
            except Exception:  # noqa: BLE001 - tearing down anyway
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._profiler is not None:
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.terminate()
        for f in (self._proc.stdin, self._proc.stdout):
            if f is not None:
                f.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
