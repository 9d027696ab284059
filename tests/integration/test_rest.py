"""The five REST methods end to end: what the SDK decodes is what the emulator stored."""

from __future__ import annotations

import pytest

from signalwire_conversation import (
    Conversation,
    ConversationMessage,
    JoinResult,
    UnprocessableEntityError,
    SentMessage,
    ValidationError,
)
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import ClientFactory

JOIN = "^/api/fabric/conversations/join$"
INFO = "^/api/fabric/subscriber/info$"
POST_MESSAGES = "^/api/fabric/messages$"


def test_get_conversations_lists_the_groups_most_recent_first(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    emu.send_message(bob, alice.address_id, "from bob", ts=1_700_000_000.0)
    emu.send_message(carol, alice.address_id, "from carol", ts=1_700_000_100.0)
    g_bob = emu.group_id(alice, bob.address_id)
    g_carol = emu.group_id(alice, carol.address_id)
    client = make_client(alice)

    page = client.conversation.get_conversations()
    convs = list(page)

    assert all(isinstance(c, Conversation) for c in convs)
    assert [c.id for c in convs] == [g_carol, g_bob]  # most recent activity first
    assert [c.group_id for c in convs] == [g_carol, g_bob]
    assert [c.from_fabric_address_id for c in convs] == [carol.address_id, bob.address_id]
    assert all(c.name for c in convs)
    assert page.has_next is False and page.has_prev is False
    # dave's conversation with bob is not alice's
    dave = emu.add_subscriber("dave")
    emu.send_message(dave, bob.address_id, "not for alice")
    assert {c.id for c in client.conversation.get_conversations()} == {g_bob, g_carol}


def test_get_conversation_messages_and_get_messages_decode_what_was_stored(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    emu.send_message(bob, alice.address_id, "b1", metadata={"k": 1}, details={"d": "x"})
    emu.send_message(carol, alice.address_id, "c1")
    emu.send_message(alice, bob.address_id, "a1")
    emu.send_message(bob, alice.address_id, "b2")
    g_bob = emu.group_id(alice, bob.address_id)
    g_carol = emu.group_id(alice, carol.address_id)
    client = make_client(alice)

    with_bob = list(client.conversation.get_conversation_messages(bob.address_id))
    stored = emu.messages(g_bob)
    assert all(isinstance(m, ConversationMessage) for m in with_bob)
    assert [m.id for m in with_bob] == [s["id"] for s in stored]
    assert [m.text for m in with_bob] == ["b2", "a1", "b1"]
    assert [m.user_id for m in with_bob] == [bob.address_id, alice.address_id, bob.address_id]
    assert {m.conversation_id for m in with_bob} == {g_bob}
    assert [m.ts for m in with_bob] == [s["ts"] for s in stored]
    b1 = with_bob[-1]
    assert b1.metadata == {"k": 1} and b1.details == {"d": "x"}
    assert b1.type == "message" and b1.subtype == "chat"

    everything = list(client.conversation.get_messages())
    assert [m.text for m in everything] == ["b2", "a1", "c1", "b1"]
    assert [m.id for m in everything] == [s["id"] for s in emu.messages()]
    assert [m.conversation_id for m in everything] == [g_bob, g_bob, g_carol, g_bob]


def test_send_message_is_stored_once_with_the_right_ids(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)

    sent = client.conversation.send_message(bob.address_id, "hello bob", metadata={"m": [1, 2]}, details={"x": True})

    group = emu.group_id(alice, bob.address_id)
    stored = emu.messages(group)
    assert isinstance(sent, SentMessage)
    assert len(stored) == 1
    assert sent.id == stored[0]["id"]
    assert sent.conversation_id == group == stored[0]["group_id"]
    assert sent.user_id == alice.address_id == stored[0]["from_fabric_address_id"]
    assert sent.text == "hello bob" == stored[0]["text"]
    assert stored[0]["metadata"] == {"m": [1, 2]} and stored[0]["details"] == {"x": True}
    # bob reads it back as alice's
    bob_client = make_client(bob)
    (seen,) = list(bob_client.conversation.get_conversation_messages(alice.address_id))
    assert (seen.id, seen.user_id, seen.text, seen.conversation_id) == (sent.id, alice.address_id, "hello bob", group)


def test_join_returns_the_group_and_is_idempotent(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)

    first = client.conversation.join(bob.address_id)
    again = client.conversation.join(bob.address_id)

    assert isinstance(first, JoinResult)
    assert first.group_id == again.group_id == emu.group_id(alice, bob.address_id)
    assert set(first.address_ids) == {alice.address_id, bob.address_id}
    assert first.from_address_id == alice.address_id
    # bob joining from his side gets the same group
    assert make_client(bob).conversation.join(alice.address_id).group_id == first.group_id


def test_the_lazy_join_and_the_info_lookup_happen_once(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)
    api = client.conversation

    for i in range(3):
        api.send_message(bob.address_id, f"m{i}")
    list(api.get_conversation_messages(bob.address_id))
    list(api.get_conversation_messages(bob.address_id, page_size=1))
    assert emu.request_count("POST", JOIN) == 1
    assert emu.request_count("GET", INFO) == 1

    api.send_message(carol.address_id, "to carol")
    list(api.get_conversation_messages(carol.address_id))
    assert emu.request_count("POST", JOIN) == 2  # one per address
    assert emu.request_count("GET", INFO) == 1  # one per client

    other = make_client(alice)  # another client: its own caches
    other.conversation.send_message(bob.address_id, "from the second client")
    assert emu.request_count("POST", JOIN) == 3
    assert emu.request_count("GET", INFO) == 2
    assert [m["text"] for m in emu.messages(emu.group_id(alice, bob.address_id))] == [
        "from the second client", "m2", "m1", "m0",
    ]


def test_bad_input_and_an_unknown_address(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)
    with pytest.raises(ValidationError):
        client.conversation.send_message("", "x")
    with pytest.raises(ValidationError):
        client.conversation.send_message(bob.address_id, "")
    with pytest.raises(ValidationError):
        client.conversation.get_messages(limit=0)
    assert emu.requests == []  # validated before any request

    for _ in range(2):
        with pytest.raises(UnprocessableEntityError) as info:
            client.conversation.send_message("no-such-address", "x")
        assert info.value.status_code == 422
    # a failed join is neither retried nor cached: one POST per call
    assert emu.request_count("POST", JOIN) == 2
    assert emu.request_count("POST", POST_MESSAGES) == 0
    assert emu.messages() == []
    client.conversation.send_message(bob.address_id, "ok")
    assert [m["text"] for m in emu.messages()] == ["ok"]
