"""Real processes for the fan-out tests: ``python -m signalwire_conversation.fanout ...``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence


class Proc:
    """A child process whose stdout/stderr lines are collected by reader threads."""

    def __init__(self, args: Sequence[str], *, env: Optional[Dict[str, str]] = None, read_stdout: bool = True) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.args = list(args)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "signalwire_conversation.fanout", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
        )
        self.stdout: List[str] = []
        self.stderr: List[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True)]
        if read_stdout:
            self._threads.append(threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True))
        for t in self._threads:
            t.start()

    def _read(self, pipe: object, sink: List[str]) -> None:
        for raw in iter(pipe.readline, b""):  # type: ignore[attr-defined]
            with self._cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, needle: str, timeout: float, *, stream: str = "stderr", start: int = 0) -> int:
        """Index of the first line (from ``start``) containing ``needle``; fails after ``timeout``."""
        sink = self.stderr if stream == "stderr" else self.stdout
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(sink)):
                    if needle in sink[i]:
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not any(t.is_alive() for t in self._threads)):
                    raise AssertionError(
                        f"no line containing {needle!r} within {timeout:.1f} s; {stream} was:\n"
                        + "\n".join(sink[-40:])
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait_for_count(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.stdout) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"only {len(self.stdout)} of {n} stdout lines within {timeout:.1f} s")
                self._cond.wait(min(remaining, 0.2))

    def terminate(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            rc = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"process {self.args} did not exit within {timeout} s; stderr:\n" + "\n".join(self.stderr[-40:]))
        for t in self._threads:
            t.join(5)
        return rc

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.stderr)
