"""Sender names (``user_name``) from the address directory, against the emulator."""

from __future__ import annotations

import json
import threading
import time
from typing import List, Optional

from signalwire_conversation import ConversationMessage
from signalwire_conversation.names import NameResolver
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import FAST_LISTENER, ClientFactory
from .test_realtime import Collector

LOOKUPS = "^/api/fabric/addresses/[^/]+$"


def test_history_shows_names_with_one_lookup_per_sender(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    group = emu.join(alice, [bob.address_id, carol.address_id])
    for i in range(12):
        emu.send_message([alice, bob, carol][i % 3], group, f"m{i}")
    emu.send_message(bob, alice.address_id, "direct")
    client = make_client(alice)

    messages = list(client.conversation.get_messages(page_size=3))  # five pages
    assert len(messages) == 13
    names = {m.user_id: m.user_name for m in messages}
    assert names == {alice.address_id: "Alice", bob.address_id: "Bob", carol.address_id: "Carol"}
    assert emu.request_count("GET", LOOKUPS) == 3  # once per sender, whatever the pages
    direct = list(client.conversation.get_conversation_messages(bob.address_id))
    assert [(m.user_name, m.text) for m in direct] == [("Bob", "direct")]
    assert emu.request_count("GET", LOOKUPS) == 3  # cached across listings
    assert client.names is not None and client.names.stats["lookups"] == 3


def test_display_name_else_name(emu: Emulator, alice: Subscriber, make_client: ClientFactory) -> None:
    dora = emu.add_subscriber("dora", display_name="Dora the Explorer")
    emu.send_message(dora, alice.address_id, "hola")
    client = make_client(alice)
    assert [m.user_name for m in client.conversation.get_messages()] == ["Dora the Explorer"]


def test_a_failed_lookup_leaves_none_and_the_listing_works(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    emu.send_message(bob, alice.address_id, "one")
    emu.send_message(alice, bob.address_id, "two")
    client = make_client(alice)
    emu.fail_next(500, times=2, method="GET", path=LOOKUPS)
    messages = list(client.conversation.get_messages())
    assert [(m.text, m.user_name) for m in messages] == [("two", None), ("one", None)]
    assert emu.request_count("GET", LOOKUPS) == 2  # each sent once: no retries for a name
    # not asked again at once (remembered for failure_ttl seconds)
    assert [m.user_name for m in client.conversation.get_messages()] == [None, None]
    assert emu.request_count("GET", LOOKUPS) == 2
    assert client.names is not None and client.names.stats["failures"] == 2


def test_an_unknown_sender_has_no_name(emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory) -> None:
    emu.send_message(bob, alice.address_id, "hi")
    client = make_client(alice)
    assert client.names is not None
    assert client.names.name_of("no-such-address") is None
    assert client.names.name_of(bob.address_id) == "Bob"
    assert [e["status"] for e in emu.request_log if "/addresses/" in e["path"]] == [404, 200]


def test_resolve_names_false_sends_no_lookups(emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory) -> None:
    emu.send_message(bob, alice.address_id, "hi")
    client = make_client(alice, resolve_names=False)
    assert [m.user_name for m in client.conversation.get_messages()] == [None]
    assert client.names is None and emu.request_count("GET", LOOKUPS) == 0


def test_one_lookup_per_address_at_a_time(emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory) -> None:
    client = make_client(alice)
    assert client.names is not None
    names = client.names
    emu.latency = 0.2
    barrier = threading.Barrier(8)
    got: List[Optional[str]] = []

    def ask() -> None:
        barrier.wait(5)
        got.append(names.name_of(bob.address_id))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got == ["Bob"] * 8
    assert emu.request_count("GET", LOOKUPS) == 1


def _frame(emu: Emulator, sender: Subscriber, receiver: Subscriber, text: str, user_name: Optional[str]) -> str:
    payload = {
        "id": f"raw-{text}", "group_id": emu.group_id(receiver, sender.address_id),
        "from_fabric_address_id": sender.address_id, "ts": time.time(), "text": text,
        "type": "message", "subtype": "chat", "details": {}, "metadata": {},
    }
    if user_name is not None:
        payload["user_name"] = user_name
    return json.dumps({
        "jsonrpc": "2.0", "id": f"evt-{text}", "method": "signalwire.event",
        "params": {"event_type": "conversation.message", "event_channel": "conversation.x", "params": payload},
    })


def test_live_events_get_a_name_when_they_lack_one(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice, listener_options=FAST_LISTENER)
    got = Collector()
    client.conversation.subscribe(got)
    emu.wait_connected(alice)
    emu.send_raw(_frame(emu, bob, alice, "nameless", None), alice)
    emu.send_raw(_frame(emu, bob, alice, "named", "Robert"), alice)
    emu.send_message(bob, alice.address_id, "normal")  # the emulator sends user_name itself
    events = got.wait_for(3)
    assert [(e.text, e.user_name) for e in events] == [("nameless", "Bob"), ("named", "Robert"), ("normal", "Bob")]
    assert emu.request_count("GET", LOOKUPS) == 1  # only the nameless one needed a lookup


def test_recovered_events_carry_names(emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory) -> None:
    emu.ping_interval = 0.2  # restored by the fixture's reset
    client = make_client(alice, listener_options=dict(FAST_LISTENER, ping_timeout=0.5))
    got = Collector()
    client.conversation.subscribe(got)
    emu.wait_connected(alice)
    emu.send_message(bob, alice.address_id, "live")
    got.wait_for(1)
    emu.stop_pinging(alice)  # half-open: the next ones are recovered over REST after a reconnect
    for i in range(3):
        emu.send_message(bob, alice.address_id, f"missed {i}")
    events = got.wait_for(4)
    assert [(e.text, e.recovered, e.user_name) for e in events] == [
        ("live", False, "Bob"), ("missed 0", True, "Bob"), ("missed 1", True, "Bob"), ("missed 2", True, "Bob"),
    ]


# -- the resolver's cache, with a fake clock ------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_names_expire_after_the_ttl_and_the_cache_is_bounded(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)
    clock = _Clock()
    names = NameResolver(client._transport, clock=clock, max_entries=2)
    assert names.name_of(bob.address_id) == "Bob"
    clock.now += 179
    assert names.name_of(bob.address_id) == "Bob"
    assert emu.request_count("GET", LOOKUPS) == 1
    clock.now += 2  # 181 s after the lookup: stale
    assert names.name_of(bob.address_id) == "Bob"
    assert emu.request_count("GET", LOOKUPS) == 2
    names.name_of(carol.address_id)
    names.name_of(alice.address_id)  # three addresses, room for two: bob (oldest) is dropped
    names.name_of(bob.address_id)
    assert emu.request_count("GET", LOOKUPS) == 5
    # a failure is retried after failure_ttl (30 s), not before
    emu.fail_next(503, method="GET", path=LOOKUPS)
    names.forget()
    assert names.name_of(carol.address_id) is None
    clock.now += 29
    assert names.name_of(carol.address_id) is None
    clock.now += 2
    assert names.name_of(carol.address_id) == "Carol"


def test_fill_keeps_a_name_and_copies_otherwise(emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory) -> None:
    client = make_client(alice)
    assert client.names is not None
    named = ConversationMessage(id="1", user_id=bob.address_id, user_name="Robert")
    assert client.names.fill(named) is named
    bare = ConversationMessage(id="2", user_id=bob.address_id)
    filled = client.names.fill(bare)
    assert filled.user_name == "Bob" and bare.user_name is None and filled.id == "2"
    nobody = ConversationMessage(id="3")
    assert client.names.fill(nobody) is nobody


def test_a_slow_directory_costs_the_lookup_timeout_not_the_client_timeout(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory
) -> None:
    client = make_client(alice)
    names = NameResolver(client._transport, timeout=(1.0, 0.3))
    emu.latency = 1.0  # every answer waits 1 s: longer than the lookup may
    started = time.monotonic()
    assert names.name_of(bob.address_id) is None
    assert time.monotonic() - started < 0.9  # 0.3 s + 5 ms slack of the total deadline
    assert names.stats["failures"] == 1
