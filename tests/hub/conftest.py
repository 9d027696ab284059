"""Fixtures for the hub tests: the emulator, a hub closed after each test, clients on it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Sequence

import pytest

from signalwire_conversation import Client, RealtimeHub
from signalwire_conversation.testing import Emulator, Subscriber

#: Fast reconnects (the defaults are tuned for the real network).
FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}


@pytest.fixture
def emu(signalwire_emulator: Emulator) -> Emulator:
    return signalwire_emulator


@pytest.fixture
def hub() -> Iterator[RealtimeHub]:
    made = RealtimeHub(workers=4)
    yield made
    made.close()


@pytest.fixture
def make_clients(emu: Emulator, hub: RealtimeHub) -> Iterator[Callable[..., List[Client]]]:
    """``make_clients(subscribers, **kwargs)``: one client per subscriber, on the hub."""
    made: List[Client] = []

    def make(subscribers: Sequence[Subscriber], **kwargs: Any) -> List[Client]:
        kwargs.setdefault("listener_options", FAST)
        clients = [
            Client(s.token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub, **kwargs)
            for s in subscribers
        ]
        made.extend(clients)
        return clients

    yield make
    for client in made:
        client.close(timeout=1)


def subscribe_all(clients: Sequence[Client], callbacks: Sequence[Callable[[Any], Any]]) -> None:
    """Subscribe every client (20 at a time, as a server handling many users would)."""
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda pair: pair[0].conversation.subscribe(pair[1]), zip(clients, callbacks)))


def hub_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("signalwire-")]
