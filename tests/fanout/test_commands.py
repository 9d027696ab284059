"""The relay/consume commands' argument handling and their errors (no traceback, exit codes)."""

from __future__ import annotations

import argparse
from typing import Any, List

import pytest

from signalwire_conversation.fanout import add_consume_arguments, add_relay_arguments, run_consume, run_relay
from signalwire_conversation.fanout._redis import Backoff, redact_url

from .conftest import wait_until


def relay_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_relay_arguments(parser)
    return parser.parse_args(argv)


def consume_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_consume_arguments(parser)
    return parser.parse_args(argv)


def test_relay_defaults() -> None:
    args = relay_args(["--redis", "redis://localhost:6379/0"])
    assert args.lease_ttl == 10.0 and args.stream is None and args.maxlen == 100_000


@pytest.mark.parametrize("bad", [["--lease-ttl", "0"], ["--lease-ttl", "x"], ["--maxlen", "-1"]])
def test_relay_rejects_bad_values(bad: List[str]) -> None:
    with pytest.raises(SystemExit):
        relay_args(["--redis", "redis://x"] + bad)


def test_relay_without_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_relay(relay_args(["--token", "a.b.c"])) == 2
    assert "--redis" in capsys.readouterr().err


def test_relay_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_relay(relay_args(["--redis", "redis://127.0.0.1:1/0"])) == 2
    assert "SIGNALWIRE_TOKEN" in capsys.readouterr().err


def test_relay_with_a_malformed_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALWIRE_TOKEN", "nonsense")
    assert run_relay(relay_args(["--redis", "redis://127.0.0.1:1/0"])) == 2
    assert capsys.readouterr().err == (
        "error: the token is malformed: expected a JWE (5 dot-separated parts) or a JWT (3 parts), got 1 "
        "part(s); check SIGNALWIRE_TOKEN: it must hold a subscriber access token (SAT)\n"
    )


def test_relay_with_an_unusable_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    token = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwiY2giOiJwdWMuc2lnbmFsd2lyZS5jb20iLCJ0eXAiOiJTQVQifQ.x.y.z.w"
    assert run_relay(relay_args(["--redis", "http://nope", "--token", token])) == 2
    assert "Redis URL" in capsys.readouterr().err


def test_consume_needs_a_group() -> None:
    with pytest.raises(SystemExit):
        consume_args(["--redis", "redis://x"])


def test_consume_needs_a_stream_or_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_consume(consume_args(["--redis", "redis://127.0.0.1:1/0", "--group", "g"])) == 2
    assert "--stream" in capsys.readouterr().err


def test_consume_start_position() -> None:
    assert consume_args(["--group", "g"]).start_id == "0"
    assert consume_args(["--group", "g", "--from-now"]).start_id == "$"


def test_redis_url_passwords_are_redacted() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://user:s3cret@host/0") == "redis://user:***@host/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_backoff_grows_to_its_cap_and_resets() -> None:
    b = Backoff(0.1, 1.0, jitter=False)
    assert [b.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == 0.1
    j = Backoff(0.1, 1.0)
    delays = [j.next_delay() for _ in range(8)]
    assert all(0 < d <= 1.0 for d in delays) and delays[-1] >= 0.5


def test_module_main_without_command(capsys: Any) -> None:
    from signalwire_conversation.fanout.commands import main

    assert main([]) == 2


def test_a_relay_that_never_held_the_lease_does_not_release_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down from the start: stopping says nothing about a lease the relay never had."""
    import logging
    import socket

    from signalwire_conversation import Client
    from signalwire_conversation.fanout import Relay

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    token = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwiY2giOiJwdWMuc2lnbmFsd2lyZS5jb20iLCJ0eXAiOiJTQVQifQ.x.y.z.w"
    caplog.set_level(logging.INFO, logger="signalwire_conversation.fanout")
    with Client(token=token, base_url=f"http://127.0.0.1:{port}") as client:
        relay = Relay(client, f"redis://127.0.0.1:{port}/0", stream="s", backoff=(0.01, 0.05)).start()
        wait_until(lambda: "cannot reach Redis" in caplog.text, 10, "a failed Redis connection")
        relay.stop()
        assert relay.join(10)
    assert "release the lease" not in caplog.text, caplog.text
    assert "stopped" in caplog.text


def test_consume_finds_its_stream_with_subscriber(signalwire_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """--subscriber works for the fan-out commands too (here: the default stream name)."""
    from signalwire_conversation.fanout.commands import _consumer_stream

    alice = signalwire_emulator.add_subscriber("alice")
    for name, value in signalwire_emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SIGNALWIRE_TOKEN", raising=False)
    args = consume_args(["--redis", "redis://127.0.0.1:1/0", "--group", "g", "--subscriber", "alice"])
    assert _consumer_stream(args) == f"signalwire:conversation:{{{alice.address_id}}}"
