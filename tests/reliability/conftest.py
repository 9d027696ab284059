"""Shared set-up of the reliability suites: sizes, hypothesis settings, leak probes.

Sizes: every load test has a CI size (runs by default) and a full size (marked ``slow``, run
with ``--run-slow``). ``SIGNALWIRE_RELIABILITY_SCALE`` (a float, default 1) multiplies the full
sizes, for a longer run on a quiet machine. It is read once, at import time, because the shared
conftest clears every ``SIGNALWIRE_*`` variable around each test.
"""

from __future__ import annotations

import gc
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Set

import pytest
import trustme
from hypothesis import HealthCheck, settings

from signalwire_conversation.testing import Emulator

try:
    SCALE = float(os.environ.get("SIGNALWIRE_RELIABILITY_SCALE", "1") or 1)
except ValueError:
    SCALE = 1.0

#: The size label of a test run: ("ci", n) runs always, ("full", n) only with --run-slow.
def sizes(ci: int, full: int) -> List[Any]:
    return [
        pytest.param(ci, id=f"ci-{ci}"),
        pytest.param(max(1, int(full * SCALE)), id=f"full-{int(full * SCALE)}", marks=pytest.mark.slow),
    ]


#: Hypothesis, deterministic and without deadlines (CI machines are slow and noisy).
FUZZ = settings(
    derandomize=True,
    deadline=None,
    max_examples=100,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
FUZZ_LIVE = settings(FUZZ, max_examples=60)


# (re-exported for this package's tests)
from waiting import wait_until  # noqa: E402,F401


def open_fds() -> Set[str]:
    """The targets of this process's open file descriptors (Linux)."""
    out: Set[str] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            out.add(f"{name}->{os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:
            pass
    return out


def fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def live_threads() -> Set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def settle_threads(baseline: Set[threading.Thread], timeout: float = 10.0) -> List[str]:
    """Wait (bounded) for every thread not in ``baseline`` to end; the names still alive."""
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in live_threads() - baseline]
        if not extra or time.monotonic() > deadline:
            return sorted(t.name for t in extra)
        extra[0].join(0.05)


def settle_fds(baseline: int, slack: int = 0, timeout: float = 10.0) -> int:
    """Wait (bounded) for the fd count to come back to ``baseline + slack``; the final count."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        n = fd_count()
        if n <= baseline + slack or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    """Record a figure for the run summary (``-rP`` or the terminal summary shows them)."""
    lines: List[str] = []

    def add(line: str) -> None:
        lines.append(line)
        print(f"[reliability] {request.node.name}: {line}")

    yield add
    FIGURES.extend(f"{request.node.nodeid}: {ln}" for ln in lines)


FIGURES: List[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


# -- TLS: a CA of the tests' own and an emulator serving a certificate it issued (per module) --


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tls_emulator(ca: trustme.CA) -> Iterator[Emulator]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    with Emulator(ssl_context=ctx, ping_interval=None) as emulator:
        yield emulator
