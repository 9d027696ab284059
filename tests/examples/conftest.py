"""Fixtures of the example tests: alice and bob on the emulator, and the environment for them."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")

try:
    from signalwire_conversation.testing import Emulator  # noqa: F401

    HAVE_EMULATOR = True
except ImportError:  # pragma: no cover
    HAVE_EMULATOR = False

needs_emulator = pytest.mark.skipif(not HAVE_EMULATOR, reason="the emulator extra is not installed")


class People:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.alice = emulator.add_subscriber("alice")
        self.bob = emulator.add_subscriber("bob")
        for n in range(6):
            emulator.send_message(self.bob, self.alice.address_id, f"history {n}")

    def env(self) -> Dict[str, str]:
        """A subprocess environment: the emulator's project credentials and URLs, alice's token,
        the repo importable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")}
        env.update(self.emulator.environment())
        env.update(SIGNALWIRE_TOKEN=self.alice.token, SIGNALWIRE_BASE_URL=self.emulator.base_url)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return env


@pytest.fixture
def people(signalwire_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> People:
    p = People(signalwire_emulator)
    for name, value in signalwire_emulator.environment().items():  # the project credentials
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SIGNALWIRE_TOKEN", p.alice.token)
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", signalwire_emulator.base_url)
    return p


PYTHON = sys.executable
