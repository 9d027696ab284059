"""A local emulator of the SignalWire Conversation backend, for demos and tests.

It speaks the wire protocol only (REST and the relay websocket, on one loopback port) and
imports nothing from the client, so the two cannot share a misunderstanding::

    from signalwire_conversation.testing import Emulator

    with Emulator() as emu:
        alice = emu.add_subscriber("alice")
        bob = emu.add_subscriber("bob")
        emu.send_message(bob, alice.address_id, "hello")
        print(emu.base_url, alice.token)

pytest users get the ``signalwire_emulator`` and ``signalwire_client`` fixtures from the plugin
``signalwire_conversation.testing.pytest_plugin`` (registered automatically). It needs the
``emulator`` extra: ``pip install 'signalwire-conversation[emulator]'``.
"""

from ._cli import add_emulator_arguments, run_emulator
from ._emulator import CONTROL_PREFIX, Emulator
from ._seed import seed_demo
from ._state import ConnectionInfo, EventRecord, RecordedRequest, Subscriber

__all__ = [
    "Emulator",
    "Subscriber",
    "ConnectionInfo",
    "EventRecord",
    "RecordedRequest",
    "CONTROL_PREFIX",
    "add_emulator_arguments",
    "run_emulator",
    "seed_demo",
]
