"""A first script: list conversations, read recent messages, send one, watch it arrive live.

Run it against SignalWire (a subscriber access token in ``SIGNALWIRE_TOKEN``)::

    python examples/script.py                       # list conversations
    python examples/script.py ADDRESS_ID            # + recent messages, send "hello", wait live

or against the local emulator (``signalwire-conversation emulator`` prints the variables)::

    export SIGNALWIRE_TOKEN=... SIGNALWIRE_BASE_URL=http://127.0.0.1:8080

The tests run this file against the emulator (tests/examples/test_examples.py).
"""

from __future__ import annotations

import argparse
import queue
import sys
from typing import List, Optional

from signalwire_conversation import Client, SignalWireError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address_id", nargs="?", help="the other party's address id")
    parser.add_argument("--text", default="hello from Python", help="what to send")
    args = parser.parse_args(argv)

    try:
        # Client() reads SIGNALWIRE_TOKEN (and SIGNALWIRE_BASE_URL, if set).
        with Client() as client:
            print("Conversations:")
            for conversation in client.conversation.get_conversations():
                print(f"  {conversation.name or '-':<30} {conversation.id}")

            if args.address_id is None:
                return 0

            print("Latest messages (newest first):")
            for message in client.conversation.get_conversation_messages(args.address_id, limit=5):
                print(f"  {message.datetime:%Y-%m-%d %H:%M:%S}  {message.text}")

            # Subscribe first, so the message we send is guaranteed to come back live.
            with client.conversation.subscribe(address_id=args.address_id) as subscription:
                sent = client.conversation.send_message(args.address_id, args.text)
                print(f"Sent message {sent.id}")
                try:
                    event = subscription.get(timeout=30)
                except queue.Empty:
                    print("No live message within 30 s", file=sys.stderr)
                    return 1
                print(f"Live: {event.user_name or event.user_id}: {event.text}")
    except SignalWireError as exc:  # one error hierarchy: bad token, not found, network...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
