"""pytest plugin (entry point ``pytest11``): an emulated SignalWire backend for your tests.

Fixtures:

- ``signalwire_emulator``: a started :class:`~signalwire_conversation.testing.Emulator`, one per
  test session, reset (emptied, connections dropped, faults cleared) before each test;
- ``signalwire_subscriber``: a subscriber ``"alice"`` on it;
- ``signalwire_client``: a ``signalwire_conversation.Client`` for that subscriber, bound to the
  emulator, closed after the test.

Override ``signalwire_emulator_options`` (session scope) in a ``conftest.py`` to pass options
to the ``Emulator`` constructor. Nothing is imported until a fixture is used, so the plugin
costs nothing in test sessions that do not use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator

import pytest

if TYPE_CHECKING:
    from signalwire_conversation.testing import Emulator, Subscriber


@pytest.fixture(scope="session")
def signalwire_emulator_options() -> Dict[str, Any]:
    """Keyword arguments for the session's ``Emulator(...)``; override to change them."""
    return {}


@pytest.fixture(scope="session")
def signalwire_emulator_session(signalwire_emulator_options: Dict[str, Any]) -> Iterator["Emulator"]:
    """The session's emulator, started once (use ``signalwire_emulator`` in tests)."""
    from signalwire_conversation.testing import Emulator

    emu = Emulator(**signalwire_emulator_options)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def signalwire_emulator(signalwire_emulator_session: "Emulator") -> Iterator["Emulator"]:
    """A started emulator, empty at the start of each test."""
    signalwire_emulator_session.reset()
    yield signalwire_emulator_session
    signalwire_emulator_session.reset()


@pytest.fixture
def signalwire_subscriber(signalwire_emulator: "Emulator") -> "Subscriber":
    """A subscriber named ``alice`` on the emulator."""
    return signalwire_emulator.add_subscriber("alice")


@pytest.fixture
def signalwire_client(signalwire_emulator: "Emulator", signalwire_subscriber: "Subscriber") -> Iterator[Any]:
    """A ``Client`` for ``signalwire_subscriber``, bound to the emulator; closed afterwards."""
    from signalwire_conversation import Client

    client = Client(
        token=signalwire_subscriber.token,
        base_url=signalwire_emulator.base_url,
        relay_url=signalwire_emulator.relay_url,
    )
    try:
        yield client
    finally:
        client.close()
