"""The fleet in one process: share arithmetic, the command line's refusals, two fleets sharing
subscribers minted from project credentials, relay-status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from .conftest import wait_until

testing = pytest.importorskip("signalwire_conversation.testing")
pytestmark = pytest.mark.redis

from signalwire_conversation import Client, SubscriberTokens  # noqa: E402
from signalwire_conversation.fanout import Fleet, FleetKeys, fleet_status, format_status  # noqa: E402
from signalwire_conversation.fanout.commands import main  # noqa: E402
from signalwire_conversation.fanout.fleet import default_slack, fair_share  # noqa: E402


def test_share_and_slack() -> None:
    assert fair_share(300, 3) == 100 and fair_share(61, 4) == 16 and fair_share(5, 0) == 5
    assert default_slack(100) == 5 and default_slack(10) == 1
    assert FleetKeys("a").relays == "signalwire:fleet:{a}:relays"
    assert FleetKeys("a").record("h:1:x") == "signalwire:fleet:{a}:relay:h:1:x"
    with pytest.raises(ValueError, match="braces"):
        FleetKeys("{x}")
    client: Any = object()  # refused before any client is used
    for kwargs, message in [
        ({"lease_ttl": 0}, "lease_ttl must be positive"),
        ({"heartbeat_ttl": -1.0}, "heartbeat_ttl must be positive"),
        ({"slack": -1}, "slack must be 0 or more"),
    ]:
        with pytest.raises(ValueError, match=message):
            Fleet([client], "redis://127.0.0.1:1/0", **kwargs)
    with pytest.raises(ValueError, match="at least one subscriber"):
        Fleet([], "redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tokens-file", "/nonexistent/tokens"], "cannot read --tokens-file '/nonexistent/tokens'"),
        (["--tokens-file", "EMPTY"], "has no entries"),
        (["--tokens-file", "EMPTY", "--token", "x"], "--token and --token-file run one subscriber"),
        (["--subscriber", "a", "--token-file", "EMPTY"], "--token and --token-file run one subscriber"),
        (["--subscriber", "a", "--stream", "s"], "--stream names one subscriber's stream"),
        (["--subscriber", " "], "--subscriber needs a subscriber reference"),
    ],
)
def test_the_command_line_refuses(
    extra: List[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_server: Any
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    argv = ["relay", "--redis", redis_server.url] + [str(empty) if a == "EMPTY" else a for a in extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def emu() -> Iterator[Any]:
    with testing.Emulator() as emulator:
        yield emulator


def test_two_fleets_share_subscribers_from_project_credentials(emu: Any, r: Any, redis_server: Any) -> None:
    bob = emu.add_subscriber("bob")
    agents = [emu.add_subscriber(f"agent{i}") for i in range(4)]
    tokens = SubscriberTokens(emu.project_id, emu.api_token, emu.space_url)

    def fleet() -> Fleet:
        clients = [Client.for_subscriber(f"agent{i}", tokens=tokens, base_url=emu.base_url,
                                         resolve_names=False) for i in range(4)]
        return Fleet(clients, redis_server.url, name="unit", lease_ttl=1.0)

    a = fleet().start()
    b = fleet()
    try:
        wait_until(lambda: a.held() == 4, 10, "the first fleet holding every lease")
        b.start()
        wait_until(lambda: a.held() == 2 and b.held() == 2, 10, "two leases each")
        for agent in agents:
            emu.wait_connected(agent, count=1, timeout=10)
            emu.send_message(bob, agent.address_id, f"to {agent.name}")
        streams = [f"signalwire:conversation:{{{agent.address_id}}}" for agent in agents]
        wait_until(lambda: all(r.xlen(s) == 1 for s in streams), 10, "one entry per stream")
        # lease ages come from the relays' records, renewed every heartbeat (TTL / 3)
        wait_until(lambda: all(s["lease_age"] is not None for s in fleet_status(redis_server.url, "unit")["streams"]),
                   5, "every lease age")
        status = fleet_status(redis_server.url, "unit")
        assert status["live_relays"] == 2 and status["subscribers"] == 4 and status["share"] == 2
        assert status["unheld"] == 0
        assert {s["holder"] for s in status["streams"]} == {a.id, b.id}
        assert all(s["length"] == 1 and s["lease_age"] >= 0 and 0 <= s["lease_ttl"] <= 1.0
                   and s["checkpoint_lag"] >= 0 for s in status["streams"])
        table = format_status(status)
        assert "2 live relay(s), 4 subscriber(s), share 2, 0 stream(s) without a holder" in table
        assert a.id in table and streams[0] in table
        assert main(["relay-status", "--redis", redis_server.url, "--fleet", "unit"]) == 0
    finally:
        a.stop()
        b.stop()
        for f in (a, b):
            for relay in f.relays:
                relay.client.close()
    assert all(r.get(f"{s}:lease") is None for s in streams), "a clean stop releases every lease"
    assert fleet_status(redis_server.url, "unit")["live_relays"] == 0


def test_relay_status_of_an_empty_fleet_and_of_no_redis(redis_server: Any, r: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relay-status", "--redis", redis_server.url, "--fleet", "nobody"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fleet 'nobody': 0 live relay(s), 0 subscriber(s), share -, 0 stream(s) without a holder\n")
    assert "RELAY" in out and "STREAM" in out and "CHECKPOINT LAG" in out
    assert main(["relay-status", "--redis", redis_server.url, "--fleet", "nobody", "--json"]) == 0
    assert '"relays": []' in capsys.readouterr().out
    from .conftest import free_port

    assert main(["relay-status", "--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach Redis: ConnectionError")


def test_subscribers_without_project_credentials_are_refused(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["relay", "--redis", redis_server.url, "--subscriber", "agent"]) == 2
    assert "SIGNALWIRE_PROJECT_ID" in capsys.readouterr().err


def test_a_refused_token_stops_its_relay_only(emu: Any, r: Any, redis_server: Any) -> None:
    good = emu.add_subscriber("good")
    bad = emu.add_subscriber("bad")
    bad_token = emu.issue_token(bad, ttl=-1)  # already expired: refused
    clients = [Client(token=t, base_url=emu.base_url, resolve_names=False) for t in (good.token, bad_token)]
    fleet = Fleet(clients, redis_server.url, name="refused", lease_ttl=1.0).start()
    try:
        wait_until(lambda: len(fleet.errors) == 1 and fleet.held() == 1, 10, "one relay stopped, one holding")
        (error,) = fleet.errors.values()
        assert type(error).__name__ == "AuthenticationError"
        assert fleet.relays[0].holds_lease
    finally:
        fleet.stop()
        for client in clients:
            client.close()


@pytest.mark.parametrize("slack", [0, 2])
def test_share_then_slack_for_leases_nobody_else_takes(emu: Any, r: Any, redis_server: Any, slack: int) -> None:
    """A live relay at its share that takes no more (a ghost record, as a relay whose
    subscribers' relays are busy): the share is ceil(4 / 2) = 2; the other two leases are taken
    only as slack, after SLACK_GRACE, and kept (nobody under their share to hand them to)."""
    from signalwire_conversation.fanout.relay import SLACK_GRACE

    keys = FleetKeys(f"slack{slack}")
    now_ms = int(r.time()[0]) * 1000
    r.set(keys.record("ghost:1:x"), '{"subscribers": 4, "streams": [], "held": {"x": 0, "y": 0}}', px=60_000)
    r.zadd(keys.relays, {"ghost:1:x": now_ms + 60_000})
    agents = [emu.add_subscriber(f"s{slack}-{i}") for i in range(4)]
    clients = [Client(token=a.token, base_url=emu.base_url, resolve_names=False) for a in agents]
    fleet = Fleet(clients, redis_server.url, name=keys.name, lease_ttl=1.0, slack=slack).start()
    try:
        wait_until(lambda: fleet.held() >= 2, 10, "the share")
        took_share = time.monotonic()
        assert fleet.live_relays == 2 and fleet.share == 2
        if slack:
            wait_until(lambda: fleet.held() == 4, 10, "the slack")
            assert time.monotonic() - took_share >= SLACK_GRACE - 0.5
            handovers = sum(relay.handovers for relay in fleet.relays)
            time.sleep(SLACK_GRACE + 1.0)  # a span in which nothing may happen: no event to wait for
            assert fleet.held() == 4 and sum(relay.handovers for relay in fleet.relays) == handovers == 0
        else:
            time.sleep(SLACK_GRACE + 1.0)  # a span in which nothing may happen: no event to wait for
            assert fleet.held() == 2
    finally:
        fleet.stop()
        for client in clients:
            client.close()


def test_relay_takes_subscriber_repeatedly() -> None:
    import argparse

    from signalwire_conversation.cli.fanout_args import add_relay_arguments

    parser = argparse.ArgumentParser()
    add_relay_arguments(parser)
    args = parser.parse_args(["--subscriber", "a", "--subscriber", "b", "--tokens-file", "t"])
    assert args.subscriber == ["a", "b"] and args.tokens_file == "t" and args.fleet == "default"
    assert parser.parse_args([]).subscriber == []
