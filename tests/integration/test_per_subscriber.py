"""``Client.for_subscriber`` and ``SubscriberClients`` against the emulator, over real sockets."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

from signalwire_conversation import Client, SignalWireError, SubscriberClients, SubscriberTokens, ValidationError
from signalwire_conversation.testing import Emulator

from .conftest import FAST_LISTENER
from .test_realtime import Collector

REFRESH = "^/api/fabric/subscribers/tokens/refresh$"
MINT = "^/api/fabric/subscribers/tokens$"


@pytest.fixture
def tokens(signalwire_emulator: Emulator) -> SubscriberTokens:
    emu = signalwire_emulator
    return SubscriberTokens(emu.project_id, emu.api_token, emu.space_url, refresh_margin=600)


def test_live_messages_keep_coming_while_the_token_expires(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    """A 3-second token: renewed on the live socket before it expires, then a drop after the
    expiry forces a reconnect, which needs the renewed token. Every message arrives once, in
    order, and a REST call after the expiry works."""
    emu = signalwire_emulator
    expires = time.time() + 3.0
    first = tokens.token_for("alice", expire_at=expires)
    bob = emu.add_subscriber("bob")
    alice = emu.subscriber("alice")
    client = Client.for_subscriber(
        "alice", tokens=tokens, base_url=emu.base_url, relay_url=emu.relay_url, listener_options=FAST_LISTENER
    )
    got = Collector()
    try:
        client.conversation.subscribe(got)
        emu.wait_connected(alice)
        sent: List[str] = []
        dropped = False
        pace = threading.Event()  # never set: a 10 ms pause between messages (traffic, not sync)
        for i in range(3000):  # each message is awaited before the next; ends ~4 s in
            text = f"m{i}"
            emu.send_message(bob, alice.address_id, text)
            sent.append(text)
            got.wait_for(len(sent))
            pace.wait(0.01)
            if time.time() > expires + 0.3:
                if dropped:
                    break
                assert emu.drop_connections(alice) == 1  # the reconnect needs a valid token
                dropped = True
                emu.wait_connected(alice)
        assert dropped and time.time() > expires
        assert got.texts == sent  # in order, none missing, none twice
        assert emu.request_count("POST", REFRESH) >= 1
        assert tokens.token_for("alice") != first
        authenticated = [c for c in emu.all_connections if c.subscriber is not None and c.subscriber.name == "alice"]
        assert len(authenticated) == 2 and authenticated[-1].connect_params is not None
        assert authenticated[0].reauthentications >= 1  # renewed on the live socket, before expiry
        assert authenticated[-1].connect_params["authentication"]["jwt_token"] != first
        assert client.conversation.get_conversations().data  # REST with the renewed token
        assert client.listener_error is None
    finally:
        client.close()


def test_subscriber_clients_share_one_pool_and_close_what_they_evict(
    signalwire_emulator: Emulator, tokens: SubscriberTokens
) -> None:
    emu = signalwire_emulator
    with SubscriberClients(tokens, max_clients=2, base_url=emu.base_url, relay_url=emu.relay_url) as clients:
        a = clients.get("ann")
        assert clients.get("ann") is a  # one client per subscriber, reused
        b = clients.get("ben")
        assert a._transport._session is b._transport._session  # one connection pool
        a.conversation.get_subscriber_info()
        b.conversation.get_subscriber_info()
        clients.get("ann")  # now ben is the least recently used
        c = clients.get("cat")
        assert b.closed and not a.closed and not c.closed
        assert "ben" not in clients and len(clients) == 2
        a.conversation.get_conversations()  # the shared session is still open
        with clients.borrow("ann") as borrowed:
            clients.get("dan")
            clients.get("eve")  # ann evicted while borrowed: not closed yet
            assert "ann" not in clients and not borrowed.closed
            borrowed.conversation.get_conversations()
        assert borrowed.closed
        assert clients.get("ben") is not b  # made again (its token is still cached)
        assert emu.request_count("POST", MINT) == 5
    with pytest.raises(SignalWireError, match="closed"):
        clients.get("ann")
    assert all(x.closed for x in (a, b, c))


def test_sixteen_requests_for_a_new_subscriber_make_one_client(
    signalwire_emulator: Emulator, tokens: SubscriberTokens
) -> None:
    emu = signalwire_emulator
    emu.latency = 0.1
    made: List[Client] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)
    with SubscriberClients(tokens, base_url=emu.base_url, relay_url=emu.relay_url) as clients:

        def view() -> None:
            barrier.wait(5)
            client = clients.get("ann")
            with lock:
                made.append(client)

        threads = [threading.Thread(target=view) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(made) == 16 and len({id(c) for c in made}) == 1
    assert emu.request_count("POST", MINT) == 1


def test_subscriber_clients_refuse_what_they_set_themselves(tokens: SubscriberTokens) -> None:
    with pytest.raises(ValidationError, match="session"):
        SubscriberClients(tokens, session=object())
    with pytest.raises(ValidationError, match="max_clients"):
        SubscriberClients(tokens, max_clients=0)
