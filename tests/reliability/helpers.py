"""Helpers shared by the reliability suites (no fixtures here: see conftest.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Callable, List, Optional, Tuple


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(ch: Optional[str] = None, *, secret: str = "s3cr3tPAYLOADdoNotLeak") -> str:
    """A SAT-shaped token (5-part JWE, ``ch`` in the header) for servers that do not check it."""
    header: dict[str, Any] = {"alg": "dir", "enc": "A256GCM", "typ": "SAT"}
    if ch is not None:
        header["ch"] = ch
    return ".".join([b64(json.dumps(header).encode()), "", b64(b"iv-iv-iv-iv"), b64(secret.encode() * 3), b64(b"tag-tag")])


class Outcome:
    """What a bounded call did: its result or exception, and how long it took."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.elapsed: float = 0.0
        self.finished = threading.Event()

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error is not None else f"result={self.result!r}"
        return f"Outcome({what}, elapsed={self.elapsed:.2f}s, finished={self.finished.is_set()})"


def call_bounded(fn: Callable[[], Any], bound: float, *, on_overrun: Optional[Callable[[], None]] = None,
                 release_timeout: float = 10.0) -> Outcome:
    """Run ``fn`` in a thread; wait at most ``bound`` seconds.

    When it overruns, ``on_overrun`` is called (say, to stop the hostile server, which makes
    the stuck call return) and the thread is joined for ``release_timeout`` more seconds, so a
    test never leaves a thread behind. Check ``outcome.finished`` / ``outcome.elapsed``.
    """
    out = Outcome()
    done = threading.Event()

    def run() -> None:
        started = time.monotonic()
        try:
            out.result = fn()
        except BaseException as exc:  # noqa: BLE001 - we report whatever happened
            out.error = exc
        finally:
            out.elapsed = time.monotonic() - started
            done.set()

    t = threading.Thread(target=run, name="bounded-call", daemon=True)
    t.start()
    if done.wait(bound):
        out.finished.set()
    elif on_overrun is not None:
        on_overrun()
    t.join(release_timeout)
    return out


def run_threads(n: int, target: Callable[[int], None], *, timeout: float = 120.0) -> List[Tuple[int, BaseException]]:
    """Run ``target(i)`` on ``n`` threads started together; the errors they raised."""
    errors: List[Tuple[int, BaseException]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            target(i)
        except BaseException as exc:  # noqa: BLE001
            with lock:
                errors.append((i, exc))

    threads = [threading.Thread(target=run, args=(i,), name=f"worker-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} worker thread(s) still running after {timeout}s"
    return errors
