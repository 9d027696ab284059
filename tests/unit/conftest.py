"""Fixtures for the core unit tests: a mocked HTTP layer, a client on it, fast retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import responses

from signalwire_conversation import Client

from .helpers import TOKEN, FakeListener


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    """Record every retry sleep instead of sleeping (patches the one sleep of the transport)."""
    recorded: List[float] = []
    from signalwire_conversation.transport import Transport

    monkeypatch.setattr(Transport, "_sleep", lambda self, seconds: recorded.append(seconds))
    return recorded


@pytest.fixture
def client(rsps: responses.RequestsMock, sleeps: List[float]) -> Iterator[Client]:
    c = Client(TOKEN, max_retries=2, resolve_names=False)  # names: tests/unit/test_names.py
    yield c
    c.close()


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def load_fixture() -> Callable[[str], Any]:
    def load(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture(autouse=True)
def fake_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """No unit test opens a websocket: the client builds this fake at the realtime seam."""
    import signalwire_conversation.realtime as realtime

    FakeListener.instances = []
    monkeypatch.setattr(realtime, "Listener", FakeListener)
    yield FakeListener
