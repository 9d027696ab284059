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
from signalwire_conversation.realtime import ConnectionState

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


def wait_active(emu: Any, subscriber: Any, relay: Relay, timeout: float = 10) -> None:
    """ACTIVE, its websocket authenticated at the emulator (ACTIVE alone can be seen a moment
    before the emulator counts the session: a message sent then reaches nobody live), and the
    activation's gap fill done (a message sent during it can be read over REST before its live
    copy arrives, and is then appended as the REST copy, ``recovered=True``, without names)."""
    assert relay.wait_for_state(RelayState.ACTIVE, timeout)
    emu.wait_connected(subscriber, count=1, timeout=timeout)
    wait_until(lambda: relay.gap_fills >= 1, timeout, "the activation's gap fill never finished")


def fanout_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sw-fanout")]


def test_live_messages_are_appended_with_the_full_event(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    states: List[RelayState] = []
    relay = Relay(client, redis_server.url, lease_ttl=2, on_state_change=states.append)
    with relay:
        wait_active(emu, alice, relay)
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
        wait_active(emu, alice, relay)
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
        wait_active(emu, alice, first)
        emu.send_messages(bob, alice.address_id, [f"a{i}" for i in range(5)])
        wait_until(lambda: r.xlen(first.stream) == 5, 10, "not appended")
    emu.send_messages(bob, alice.address_id, [f"b{i}" for i in range(7)])  # nobody listening
    second = Relay(client, redis_server.url, lease_ttl=2)
    with second:
        wait_active(emu, alice, second)
        wait_until(lambda: r.xlen(second.stream) == 12, 10, "the gap was not filled")
        emu.send_messages(bob, alice.address_id, ["c0"])
        wait_until(lambda: r.xlen(second.stream) == 13, 10, "live message after the gap fill missing")
    assert ids_in(r, second.stream) == [m["id"] for m in reversed(emu.messages())]
    assert second.recovered == 7


def test_the_first_relay_ever_starts_after_the_existing_history(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any) -> None:
    emu.send_messages(bob, alice.address_id, ["old1", "old2"])
    relay = Relay(client, redis_server.url, lease_ttl=2)
    with relay:
        wait_active(emu, alice, relay)
        emu.send_messages(bob, alice.address_id, ["new"])
        wait_until(lambda: r.xlen(relay.stream) == 1, 10, "not appended")
    [(_, fields)] = r.xrange(relay.stream)
    assert json.loads(fields["event"])["text"] == "new"


def test_buffer_stays_bounded_while_redis_is_down_and_nothing_is_lost(emu: Any, alice: Any, bob: Any, client: Client, make_redis_server: Any) -> None:
    server = make_redis_server(persistent=True)
    relay = Relay(client, server.url, lease_ttl=3, buffer_size=10, backoff=(0.05, 0.5))
    with relay:
        wait_active(emu, alice, relay)
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


def test_a_listener_that_dies_for_good_releases_the_lease_and_a_standby_takes_over(emu: Any, alice: Any, bob: Any, redis_server: Any, r: Any) -> None:
    """The relay's token is revoked mid-run: its listener dies for good. The relay notices by
    itself (no state hook wired here), releases the lease long before its TTL, and stops with
    the error; a standby holding another valid token of the same subscriber takes over and
    recovers what was sent meanwhile."""
    doomed = emu.issue_token(alice)
    dying_client = Client(doomed, base_url=emu.base_url)
    standby_client = Client(alice.token, base_url=emu.base_url)
    dying = Relay(dying_client, redis_server.url, lease_ttl=30)  # the lease would outlive the test
    standby = Relay(standby_client, redis_server.url, lease_ttl=30)
    try:
        dying.start()
        wait_active(emu, alice, dying)
        standby.start()
        assert standby.wait_for_state(RelayState.STANDBY, 10)
        stream = dying.stream
        emu.send_messages(bob, alice.address_id, [f"a{i}" for i in range(5)])
        wait_until(lambda: r.xlen(stream) == 5, 10, "not appended")
        emu.refuse_resume()
        emu.revoke_token(doomed)
        emu.drop_connections(alice)  # revoke_token drops it already; a second drop is harmless
        emu.send_messages(bob, alice.address_id, [f"b{i}" for i in range(5)])  # live to nobody
        assert dying.wait_for_state(RelayState.STOPPED, 5), "the relay kept going with a dead listener"
        assert isinstance(dying.error, AuthenticationError)
        assert dying.join(5)
        wait_active(emu, alice, standby, 5)  # STANDBY_POLL (1 s) after the release, not the TTL
        assert r.get(f"{stream}:lease") == standby.token
        wait_until(lambda: r.xlen(stream) == 10, 10, "messages sent while no listener lived were lost")
        emu.send_messages(bob, alice.address_id, ["c0"])
        wait_until(lambda: r.xlen(stream) == 11, 10, "live message after the handover missing")
        assert ids_in(r, stream) == [m["id"] for m in reversed(emu.messages())]
        wait_until(lambda: standby.recovered == 5, 5, f"recovered {standby.recovered}, not 5")
    finally:
        dying.stop()
        standby.stop()
        dying_client.close()
        standby_client.close()
    assert fanout_threads() == []


def test_a_client_closed_under_a_running_relay_stops_it(emu: Any, alice: Any, redis_server: Any, r: Any) -> None:
    client = Client(alice.token, base_url=emu.base_url)
    relay = Relay(client, redis_server.url, lease_ttl=30)
    relay.on_connection_state(ConnectionState.CONNECTED)  # nothing to do
    with relay:
        wait_active(emu, alice, relay)
        client.close()
        assert relay.wait_for_state(RelayState.STOPPED, 5)
        assert "closed" in str(relay.error)
    assert r.get(f"{relay.stream}:lease") is None


def test_bad_arguments(client: Client, redis_server: Any) -> None:
    with pytest.raises(ValueError):
        Relay(client, redis_server.url, lease_ttl=0)
    with pytest.raises(ValueError):
        Relay(client, redis_server.url, buffer_size=0)


def test_redis_refusing_appends_is_retried_not_fatal(emu: Any, alice: Any, bob: Any, client: Client, redis_server: Any, r: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    relay = Relay(client, redis_server.url, lease_ttl=5, backoff=(0.05, 0.2))
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.fanout"), relay:
        wait_active(emu, alice, relay)
        r.set(relay.stream, "not a stream")  # XADD now fails with WRONGTYPE
        emu.send_messages(bob, alice.address_id, ["one", "two"])
        wait_until(lambda: "refused the append" in caplog.text, 10, "no warning")
        r.delete(relay.stream)
        wait_until(lambda: r.exists(relay.stream) and r.xlen(relay.stream) == 2, 10, "appends did not resume")
        assert relay.state is RelayState.ACTIVE
