"""The relay in-process, against the emulator and a real Redis: live appends, fencing by the
append script, gap fill between relay runs, a bounded buffer while Redis is down, bad tokens."""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator, List

import pytest

from signalwire_conversation import AuthenticationError, Client
from signalwire_conversation.fanout import Relay, RelayState, default_stream_name
from signalwire_conversation.models import decode_event

from .conftest import wait_until

testing = pytest.importorskip("signalwire_conversation.testing")
pytestmark = pytest.mark.redis


@pytest.fixture
def emu() -> Iterator[Any]:
    with testing.Emulator() as emulator:
        yield emulator


@pytest.fixture
def alice(emu: Any) -> Any:
    return emu.add_subscriber("alice")


@pytest.fixture
def bob(emu: Any) -> Any:
    return emu.add_subscriber("bob")


@pytest.fixture
def client(emu: Any, alice: Any) -> Iterator[Client]:
    c = Client(alice.token, base_url=emu.base_url)
    try:
        yield c
    finally:
        c.close()


def ids_in(r: Any, stream: str) -> List[str]:
    return [f["id"] for _, f in r.xrange(stream)]


def fanout_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sw-fanout")]


def test_live_messages_are_appended_with_the_full_event(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    states: List[RelayState] = []
    relay = Relay(client, redis_server.url, lease_ttl=2, on_state_change=states.append)
    with relay:
        assert relay.wait_for_state(RelayState.ACTIVE, 10)
        assert relay.stream == default_stream_name(alice.address_id)
        sent = emu.send_messages(bob, alice.address_id, ["one", "two", "three"])
        wait_until(lambda: r.xlen(relay.stream) == 3, 10, "not appended")
        [(_, fields)] = r.xrange(relay.stream, count=1)
        event = decode_event(json.loads(fields["event"]))
        assert event.id == sent[0]["id"] and event.text == "one"
        assert event.user_name == "Bob" and event.recovered is False
        assert r.get(f"{relay.stream}:lease") == relay.token
    assert relay.state is RelayState.STOPPED
    assert states[-1] is RelayState.STOPPED and RelayState.ACTIVE in states
    assert r.get(f"{relay.stream}:lease") is None
    assert fanout_threads() == []


def test_the_append_script_fences_a_relay_that_believes_it_leads(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    relay = Relay(client, redis_server.url, lease_ttl=30)  # it would believe for 30 s
    with relay:
        assert relay.wait_for_state(RelayState.ACTIVE, 10)
        emu.send_messages(bob, alice.address_id, ["before"])
        wait_until(lambda: r.xlen(relay.stream) == 1, 10, "not appended")
        r.set(f"{relay.stream}:lease", "usurper", px=60_000)  # taken over behind its back
        emu.send_messages(bob, alice.address_id, ["after"])
        assert relay.wait_for_state(RelayState.STANDBY, 10)
        assert r.xlen(relay.stream) == 1
        assert r.get(f"{relay.stream}:lease") == "usurper"  # and it did not delete it on stop
    assert r.get(f"{relay.stream}:lease") == "usurper"


def test_messages_sent_while_no_relay_runs_are_recovered_by_the_next(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    first = Relay(client, redis_server.url, lease_ttl=2)
    with first:
        assert first.wait_for_state(RelayState.ACTIVE, 10)
        emu.send_messages(bob, alice.address_id, [f"a{i}" for i in range(5)])
        wait_until(lambda: r.xlen(first.stream) == 5, 10, "not appended")
    emu.send_messages(bob, alice.address_id, [f"b{i}" for i in range(7)])  # nobody listening
    second = Relay(client, redis_server.url, lease_ttl=2)
    with second:
        assert second.wait_for_state(RelayState.ACTIVE, 10)
        wait_until(lambda: r.xlen(second.stream) == 12, 10, "the gap was not filled")
        emu.send_messages(bob, alice.address_id, ["c0"])
        wait_until(lambda: r.xlen(second.stream) == 13, 10, "live message after the gap fill missing")
    assert ids_in(r, second.stream) == [m["id"] for m in reversed(emu.messages())]
    assert second.recovered == 7


def test_the_first_relay_ever_starts_after_the_existing_history(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    emu.send_messages(bob, alice.address_id, ["old1", "old2"])
    relay = Relay(client, redis_server.url, lease_ttl=2)
    with relay:
        assert relay.wait_for_state(RelayState.ACTIVE, 10)
        emu.send_messages(bob, alice.address_id, ["new"])
        wait_until(lambda: r.xlen(relay.stream) == 1, 10, "not appended")
    [(_, fields)] = r.xrange(relay.stream)
    assert json.loads(fields["event"])["text"] == "new"


def test_buffer_stays_bounded_while_redis_is_down_and_nothing_is_lost(emu: Any, alice: Any, bob: Any, client: Client, make_redis_server: Any) -> None:
    server = make_redis_server(persistent=True)
    relay = Relay(client, server.url, lease_ttl=3, buffer_size=10, backoff=(0.05, 0.5))
    with relay:
        assert relay.wait_for_state(RelayState.ACTIVE, 10)
        stream = relay.stream
        emu.send_messages(bob, alice.address_id, [f"a{i}" for i in range(20)])
        wait_until(lambda: server.client().xlen(stream) == 20, 10, "not appended")
        server.stop()
        emu.send_messages(bob, alice.address_id, [f"b{i}" for i in range(100)])
        wait_until(lambda: relay.dropped > 0, 10, "the buffer never filled")
        assert len(relay._buffer) <= 10
        server.start()
        wait_until(lambda: server.client().xlen(stream) == 120, 20, "messages lost across the outage")
    r = server.client()
    assert ids_in(r, stream) == [m["id"] for m in reversed(emu.messages())]


def test_a_revoked_token_stops_the_relay_with_a_clear_error(emu: Any, alice: Any, client: Client, redis_server: Any) -> None:
    emu.revoke_token(alice.token)
    relay = Relay(client, redis_server.url, lease_ttl=2, backoff=(0.05, 0.2))
    with pytest.raises(AuthenticationError):
        relay.run()
    assert relay.state is RelayState.STOPPED


def test_bad_arguments(client: Client, redis_server: Any) -> None:
    with pytest.raises(ValueError):
        Relay(client, redis_server.url, lease_ttl=0)
    with pytest.raises(ValueError):
        Relay(client, redis_server.url, buffer_size=0)


def test_redis_refusing_appends_is_retried_not_fatal(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    relay = Relay(client, redis_server.url, lease_ttl=5, backoff=(0.05, 0.2))
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.fanout"), relay:
        assert relay.wait_for_state(RelayState.ACTIVE, 10)
        r.set(relay.stream, "not a stream")  # XADD now fails with WRONGTYPE
        emu.send_messages(bob, alice.address_id, ["one", "two"])
        wait_until(lambda: "refused the append" in caplog.text, 10, "no warning")
        r.delete(relay.stream)
        wait_until(lambda: r.exists(relay.stream) and r.xlen(relay.stream) == 2, 10, "appends did not resume")
        assert relay.state is RelayState.ACTIVE
