"""Testing your own code against the emulator, with the SDK's pytest fixture.

The SDK installs a pytest plugin: the ``signalwire_emulator`` fixture is a running emulator
(started once per session, reset before each test). Run these with::

    pytest examples/testing

The SDK's own tests run this file too (tests/examples/test_examples.py).
"""

from __future__ import annotations

from typing import Iterator, List

import pytest

from signalwire_conversation import Client, ConversationMessageEvent
from signalwire_conversation.testing import Emulator, Subscriber


# --- the code under test: a tiny bot that answers "ping" with "pong" -------------------------

def answer(client: Client, event: ConversationMessageEvent) -> None:
    if event.text == "ping" and not event.is_author:
        client.conversation.send_message(event.user_id or "", "pong")


# --- fixtures: subscribers and a client for the bot ------------------------------------------

@pytest.fixture
def bot(signalwire_emulator: Emulator) -> Subscriber:
    return signalwire_emulator.add_subscriber("bot")


@pytest.fixture
def user(signalwire_emulator: Emulator) -> Subscriber:
    return signalwire_emulator.add_subscriber("user")


@pytest.fixture
def bot_client(signalwire_emulator: Emulator, bot: Subscriber) -> Iterator[Client]:
    with Client(token=bot.token, base_url=signalwire_emulator.base_url) as client:
        yield client


# --- tests ------------------------------------------------------------------------------------

def test_the_bot_answers_ping(
    signalwire_emulator: Emulator, bot: Subscriber, user: Subscriber, bot_client: Client
) -> None:
    bot_client.conversation.subscribe(lambda event: answer(bot_client, event))

    signalwire_emulator.send_message(user, bot.address_id, "ping")  # inbound traffic

    def answered() -> bool:
        texts = [m.text for m in bot_client.conversation.get_conversation_messages(user.address_id)]
        return "pong" in texts

    signalwire_emulator.wait_for(answered, timeout=5)


def test_history_is_paged(
    signalwire_emulator: Emulator, bot: Subscriber, user: Subscriber, bot_client: Client
) -> None:
    signalwire_emulator.send_messages(user, bot.address_id, [f"m{n}" for n in range(25)])

    page = bot_client.conversation.get_conversation_messages(user.address_id, page_size=10)
    assert len(page.data) == 10 and page.has_next
    texts: List[str] = [m.text or "" for m in page]
    assert texts[0] == "m24" and len(texts) == 25  # newest first, every page


def test_a_server_error_is_retried(
    signalwire_emulator: Emulator, user: Subscriber, bot_client: Client
) -> None:
    signalwire_emulator.fail_next(503, times=1)  # fault injection: the next request fails once
    assert list(bot_client.conversation.get_conversations()) == []


def test_messages_survive_a_dropped_connection(
    signalwire_emulator: Emulator, bot: Subscriber, user: Subscriber, bot_client: Client
) -> None:
    with bot_client.conversation.subscribe() as live:
        signalwire_emulator.drop_connections()  # the websocket goes away...
        signalwire_emulator.send_message(user, bot.address_id, "sent during the blip")
        event = live.get(timeout=10)  # ...and the message still arrives (live or gap fill)
    assert event.text == "sent during the blip"


# --- code that uses the project credentials (Client.for_subscriber, SubscriberTokens) ---------

@pytest.fixture
def project_env(signalwire_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGNALWIRE_PROJECT_ID, _API_TOKEN, _SPACE, _BASE_URL and _RELAY_URL of the emulator."""
    for name, value in signalwire_emulator.environment().items():
        monkeypatch.setenv(name, value)


def test_a_user_acts_as_themselves(project_env: None, signalwire_emulator: Emulator, user: Subscriber) -> None:
    with Client.for_subscriber("alice@example.com") as alice:  # a new reference: a new subscriber
        alice.conversation.send_message(user.address_id, "hi")
    (stored,) = signalwire_emulator.messages()
    assert stored["text"] == "hi"
    assert stored["from_fabric_address_id"] == signalwire_emulator.subscriber("alice@example.com").address_id
