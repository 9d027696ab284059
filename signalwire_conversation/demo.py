"""``signalwire-conversation demo``: a tour of the SDK against an in-process emulator.

It starts :class:`signalwire_conversation.testing.Emulator` on a loopback port, seeds three
subscribers and some history, and walks through the product with real calls: a client per
subscriber from the emulator's project credentials, list conversations, page through a history
(``limit``, ``page_size``, ``since``) with the senders' names, join, subscribe, then a second
subscriber sends a message that arrives live over the websocket. Everything is
closed at the end; nothing leaves the machine. Needs the ``emulator`` extra (``websockets``).
"""

from __future__ import annotations

import datetime as _dt
import queue
import sys
import time
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, TextIO

from .cli import CLIError, format_table, local_time

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["run_demo"]

#: How long the demo waits for a live message before it gives up (it normally takes ms).
LIVE_TIMEOUT = 10.0



class _Say:
    """Readable, indented output for the tour."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "", indent: int = 0) -> None:
        pad = " " * indent
        for line in text.splitlines() or [""]:
            self.out.write(pad + line + "\n")
        self.out.flush()

    def step(self, title: str) -> None:
        self("")
        self(f"▸ {title}")

    def code(self, text: str) -> None:
        self(f">>> {text}", 2)


def run_demo(out: Optional[TextIO] = None) -> int:
    """Run the tour, writing to ``out`` (stdout by default). Returns the exit status (0)."""
    from .client import Client
    from .testing import Emulator, seed_demo
    from .tokens import SubscriberTokens

    say = _Say(out if out is not None else sys.stdout)
    started = time.monotonic()
    say("SignalWire Conversation SDK: a guided tour against a local emulator")
    say("(an in-process fake of the SignalWire backend; nothing leaves this machine)")

    with Emulator() as emulator:
        people = seed_demo(emulator)
        alice, bob = people["alice"], people["bob"]
        total_with_bob = len(emulator.messages(emulator.group_id(alice, bob.address_id)))

        say.step(f"Started an emulator at {emulator.base_url} (REST and websocket on one port)")
        say(
            f"seeded {', '.join(sorted(people))}: {len(emulator.messages())} messages over the "
            f"last two days, {total_with_bob} of them between alice and bob",
            2,
        )

        say.step("Connect as alice, from the project credentials (what a backend holds)")
        say.code("tokens = SubscriberTokens(project_id, api_token, space)   # or from SIGNALWIRE_*")
        say.code('client = Client.for_subscriber("alice", tokens=tokens)')
        tokens = SubscriberTokens(emulator.project_id, emulator.api_token, emulator.space_url)
        client: Client = Client.for_subscriber("alice", tokens=tokens, base_url=emulator.base_url)
        say("her token was minted for the reference \"alice\"; it is cached and renewed for you", 4)
        with tokens, client:
            api = client.conversation

            say.step("List her conversations")
            say.code("client.conversation.get_conversations()")
            rows = [
                [c.name or "-", c.id, local_time(c.last_message_datetime)]
                for c in api.get_conversations()
            ]
            say(format_table(["NAME", "ID", "LAST MESSAGE"], rows), 4)

            say.step("Read a history: the 5 newest messages with bob (newest first)")
            say.code("client.conversation.get_conversation_messages(bob.address_id, limit=5)")
            newest = list(api.get_conversation_messages(bob.address_id, limit=5))
            say(_messages_table(newest), 4)
            say("FROM is message.user_name: the sender's name from the address directory, cached", 4)

            say.step("Page through it: page_size is per request, pages are fetched lazily")
            say.code("page = client.conversation.get_conversation_messages(bob.address_id, page_size=50)")
            page: Any = api.get_conversation_messages(bob.address_id, page_size=50)
            number = 1
            while page is not None and number <= 20:
                say(
                    f"page {number}: {len(page.data)} messages, has_next={page.has_next}"
                    + ("   → page.next_page()" if page.has_next else ""),
                    4,
                )
                page = page.next_page()
                number += 1
            say.code("len(list(client.conversation.get_conversation_messages(bob.address_id, page_size=50)))")
            everything = sum(1 for _ in api.get_conversation_messages(bob.address_id, page_size=50))
            say(f"{everything}   (iterating a page walks every later page, one request each)", 4)

            since = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=6)
            say.step("Only recent messages: since= takes epoch seconds or a datetime")
            say.code("six_hours_ago = datetime.now(timezone.utc) - timedelta(hours=6)")
            say.code("client.conversation.get_conversation_messages(bob.address_id, since=six_hours_ago)")
            window = list(api.get_conversation_messages(bob.address_id, since=since))
            say(
                f"{len(window)} messages since {local_time(since)} "
                "(filtered by the server, and again by the client)",
                4,
            )

            say.step("Join the conversation (gives the group id messages carry)")
            say.code("client.conversation.join(bob.address_id)")
            joined = api.join(bob.address_id)
            members = ", ".join(client.names.name_of(a) or a if client.names else a for a in joined.address_ids)
            say(f"group_id={joined.group_id}  members: {members}", 4)

            say.step("Subscribe: new messages arrive live over the websocket")
            say.code("sub = client.conversation.subscribe(address_id=bob.address_id)")
            subscription = api.subscribe(address_id=bob.address_id)
            with subscription:
                say(f"connection state: {client.connection_state.name}", 4)

                text = "Are you there? (sent by bob, from his own client)"
                say.step("A second subscriber (bob, with his own Client) sends a message")
                say.code(f"bob_client.conversation.send_message(alice.address_id, {text!r})")
                with Client.for_subscriber("bob", tokens=tokens, base_url=emulator.base_url) as bob_client:
                    sent_at = time.monotonic()
                    bob_client.conversation.send_message(alice.address_id, text)
                    event = _next(subscription)
                    latency_ms = (time.monotonic() - sent_at) * 1000
                say(f"← live, {latency_ms:.0f} ms after sending:", 4)
                say(_event_line(event), 6)

                say.step("alice answers; her own message is delivered to her too (is_author=True)")
                say.code('client.conversation.send_message(bob.address_id, "Yes, here!")')
                sent = api.send_message(bob.address_id, "Yes, here!")
                say(f"sent: id={sent.id}", 4)
                echo = _next(subscription)
                say(_event_line(echo), 6)

            say.step("Close: the listener stops and every thread is joined")
            say.code("client.close()   # or leave the `with Client(...)` block")
        say(f"connection state: {client.connection_state.name}", 4)

    elapsed = time.monotonic() - started
    say("")
    say(f"Done in {elapsed:.1f} s. Next: the quickstart, or `signalwire-conversation --help`.")
    return 0


def _next(subscription: Any) -> Any:
    try:
        return subscription.get(timeout=LIVE_TIMEOUT)
    except queue.Empty:
        raise CLIError(f"the live message did not arrive within {LIVE_TIMEOUT:.0f} s") from None


def _sender(message: Any) -> str:
    """The SDK's sender name (``user_name``), else the sender's address id."""
    return str(message.user_name or message.user_id or "-")


def _messages_table(messages: Sequence[Any]) -> str:
    rows: List[List[str]] = [
        [local_time(m.datetime), _sender(m), m.text or f"[{m.kind or m.subtype}]"]
        for m in messages
    ]
    return format_table(["TIME", "FROM", "TEXT"], rows)


def _event_line(event: Any) -> str:
    who = _sender(event)
    mine = "  (is_author=True)" if event.is_author else ""
    return f"{local_time(event.datetime)}  {who}: {event.text}{mine}"
