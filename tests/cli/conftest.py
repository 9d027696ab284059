"""Fixtures of the CLI tests: an emulator with two subscribers and some history."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:  # the emulator needs the "emulator" extra (websockets)
    from signalwire_conversation.testing import Emulator  # noqa: F401

    HAVE_EMULATOR = True
except ImportError:  # pragma: no cover - only without the extra
    HAVE_EMULATOR = False

needs_emulator = pytest.mark.skipif(not HAVE_EMULATOR, reason="the emulator extra is not installed")


class World:
    """An emulator with alice (the CLI's user), bob and carol, and 12 messages alice-bob."""

    def __init__(self, emulator: Any, token_dir: Any) -> None:
        self.emulator = emulator
        self.alice = emulator.add_subscriber("alice")
        self.bob = emulator.add_subscriber("bob")
        self.carol = emulator.add_subscriber("carol")
        self.sent: List[Dict[str, Any]] = []
        for n in range(12):
            sender, to = (self.bob, self.alice.address_id) if n % 2 == 0 else (self.alice, self.bob.address_id)
            self.sent.append(emulator.send_message(sender, to, f"message {n}"))
        emulator.send_message(self.carol, self.alice.address_id, "hello from carol")
        self.token_file = str(token_dir / "alice.token")
        with open(self.token_file, "w", encoding="utf-8") as handle:
            handle.write(self.alice.token + "\n")

    def args(self, *argv: str) -> List[str]:
        """``argv`` plus the options that point the CLI at the emulator as alice."""
        return list(argv) + ["--token-file", self.token_file, "--base-url", self.emulator.base_url]

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")}
        env.update(SIGNALWIRE_TOKEN=self.alice.token, SIGNALWIRE_BASE_URL=self.emulator.base_url)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        return env


@pytest.fixture(autouse=True)
def _no_signalwire_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads SIGNALWIRE_* variables: a developer's own must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("SIGNALWIRE_") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)


@pytest.fixture
def world(signalwire_emulator: Any, tmp_path: Any) -> World:
    return World(signalwire_emulator, tmp_path)


class EventStream(io.StringIO):
    """A text stream that sets ``event`` when ``marker`` has been written."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.event = threading.Event()
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            n = super().write(s)
            if self.marker in self.getvalue():
                self.event.set()
            return n

    def isatty(self) -> bool:
        return False


def run_cli(*argv: str, env: Optional[Dict[str, str]] = None, timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
    """``python -m signalwire_conversation ARGV`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "signalwire_conversation", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port
