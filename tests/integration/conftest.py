"""Fixtures for the end-to-end tests: the public SDK against the real emulator over loopback.

The emulator is the plugin's ``signalwire_emulator`` (one per session, reset before and after
each test). Clients are built through ``make_client`` so each is closed after its test.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from signalwire_conversation import Client
from signalwire_conversation.testing import Emulator, Subscriber

#: Bound on every wait in these tests (seconds): generous, never reached when things work.
WAIT = 10.0

#: Fast reconnects for the realtime tests (the defaults are tuned for the real network).
FAST_LISTENER = {"backoff_initial": 0.05, "backoff_max": 0.2}


@pytest.fixture
def emu(signalwire_emulator: Emulator) -> Emulator:
    return signalwire_emulator


@pytest.fixture
def alice(signalwire_subscriber: Subscriber) -> Subscriber:
    return signalwire_subscriber


@pytest.fixture
def bob(emu: Emulator) -> Subscriber:
    return emu.add_subscriber("bob")


@pytest.fixture
def carol(emu: Emulator) -> Subscriber:
    return emu.add_subscriber("carol")


ClientFactory = Callable[..., Client]


@pytest.fixture
def make_client(emu: Emulator) -> Iterator[ClientFactory]:
    """``make_client(subscriber_or_token, **kwargs)``: a Client bound to the emulator."""
    made: List[Client] = []

    def make(who: Any, **kwargs: Any) -> Client:
        token = who.token if isinstance(who, Subscriber) else who
        kwargs.setdefault("base_url", emu.base_url)
        kwargs.setdefault("relay_url", emu.relay_url)
        client = Client(token, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    """Record the transport's retry waits instead of sleeping on them.

    ``Transport._sleep`` is the documented seam (transport.py: "the only sleep on the REST path");
    nothing else is patched, the requests still go over real sockets to the emulator.
    """
    from signalwire_conversation.transport import Transport

    recorded: List[float] = []
    monkeypatch.setattr(Transport, "_sleep", lambda self, seconds: recorded.append(seconds))
    return recorded
