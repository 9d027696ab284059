"""``python manage.py listen``: the long-running listener process of the project.

Run exactly one per token (next to your web workers, under systemd, supervisord or a container):
web processes only send and read history; this process receives live messages and hands each to
``chat.handlers.handle_message``. Ctrl+C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Optional

from django.core.management.base import BaseCommand, CommandError, CommandParser

from signalwire_conversation import ConversationMessageEvent, SignalWireError

from chat.handlers import handle_message
from chat.signalwire import make_client


class Command(BaseCommand):
    help = "Receive new SignalWire messages live and handle each one, until Ctrl+C or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--address-id", help="only the conversation with this address")
        parser.add_argument("--count", type=int, help="stop after this many messages")
        parser.add_argument(
            "--timeout", type=float, default=None, help="with --count: give up after this long"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: Optional[int] = options.get("count")
        done = threading.Event()
        seen = 0

        def on_message(event: ConversationMessageEvent) -> None:
            nonlocal seen
            handle_message(event)
            self.stdout.write(f"{event.user_name or event.user_id}: {event.text}")
            seen += 1
            if count is not None and seen >= count:
                done.set()

        if threading.current_thread() is threading.main_thread():
            # SIGTERM (systemd, docker stop) behaves like Ctrl+C: a clean close.
            signal.signal(signal.SIGTERM, signal.default_int_handler)

        # A process of its own, so a client of its own (web workers use chat.signalwire).
        try:
            with make_client() as client:
                client.conversation.subscribe(on_message, address_id=options.get("address_id"))
                self.stdout.write("listening")
                if count is None:
                    client.run_forever()  # until Ctrl+C / SIGTERM; re-raises a fatal error
                elif not done.wait(options.get("timeout")):
                    raise CommandError(f"timed out before {count} message(s) arrived")
        except SignalWireError as exc:
            raise CommandError(str(exc)) from exc
