"""Retries driven by the emulator's ``fail_next``, over real sockets.

The only thing patched is the transport's documented sleep seam (``sleeps`` fixture), so the
retry waits are recorded instead of slept; every request still reaches the emulator.
"""

from __future__ import annotations

import threading
from typing import List

import pytest

from signalwire_conversation import (
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import ClientFactory

ALL_MESSAGES = "^/api/fabric/messages$"
JOIN = "^/api/fabric/conversations/join$"


def test_503_twice_with_retry_after_on_a_get_then_success(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    emu.send_message(bob, alice.address_id, "hello")
    client = make_client(alice, resolve_names=False)  # the request log holds the listing only
    emu.fail_next(503, times=2, retry_after=1, method="GET", path=ALL_MESSAGES)

    messages = list(client.conversation.get_messages())

    assert [m.text for m in messages] == ["hello"]
    assert emu.request_count("GET", ALL_MESSAGES) == 3
    assert sleeps == [1.0, 1.0]  # Retry-After honoured exactly
    assert [e["status"] for e in emu.request_log] == [503, 503, 200]


def test_5xx_exhausting_the_retries_raises_server_error(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice, max_retries=2)
    emu.fail_next(502, times=5, method="GET", path=ALL_MESSAGES)

    with pytest.raises(ServerError) as info:
        client.conversation.get_messages()

    assert info.value.status_code == 502
    assert emu.request_count("GET", ALL_MESSAGES) == 3  # first attempt + max_retries
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


def test_500_on_send_message_is_not_retried_and_nothing_is_stored_twice(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice)
    client.conversation.join(bob.address_id)
    group = emu.group_id(alice, bob.address_id)
    emu.fail_next(500, method="POST", path=ALL_MESSAGES)

    with pytest.raises(ServerError) as info:
        client.conversation.send_message(bob.address_id, "maybe")

    assert info.value.status_code == 500
    assert emu.request_count("POST", ALL_MESSAGES) == 1
    assert sleeps == []
    # the emulator answered 500 without storing: stored 0 times, and never twice
    assert [m["text"] for m in emu.messages(group)].count("maybe") == 0

    client.conversation.send_message(bob.address_id, "surely")
    assert [m["text"] for m in emu.messages(group)] == ["surely"]


def test_a_read_timeout_on_send_message_is_not_retried_the_message_is_stored_once(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice, timeout=(5.0, 0.2))
    client.conversation.join(bob.address_id)
    group = emu.group_id(alice, bob.address_id)
    emu.latency = 0.6  # the emulator stores the message, then answers too late

    with pytest.raises(APITimeoutError):
        client.conversation.send_message(bob.address_id, "once")

    assert emu.request_count("POST", ALL_MESSAGES) == 1
    assert sleeps == []
    assert [m["text"] for m in emu.messages(group)] == ["once"]
    emu.latency = 0.0


@pytest.mark.parametrize("status", [429, 503])
def test_a_refused_send_message_is_retried_and_stored_once(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float], status: int
) -> None:
    client = make_client(alice)
    client.conversation.join(bob.address_id)
    group = emu.group_id(alice, bob.address_id)
    emu.fail_next(status, method="POST", path=ALL_MESSAGES)

    sent = client.conversation.send_message(bob.address_id, "after a refusal")

    assert emu.request_count("POST", ALL_MESSAGES) == 2
    assert len(sleeps) == 1
    stored = emu.messages(group)
    assert [m["text"] for m in stored] == ["after a refusal"]
    assert sent.id == stored[0]["id"]


def test_429_on_join_is_retried(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice)
    emu.fail_next(429, retry_after=2, method="POST", path=JOIN)

    sent = client.conversation.send_message(bob.address_id, "joined late")

    assert emu.request_count("POST", JOIN) == 2
    assert sleeps == [2.0]
    assert sent.conversation_id == emu.group_id(alice, bob.address_id)


def test_a_retry_after_beyond_the_cap_is_raised_at_once(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice)
    emu.fail_next(429, retry_after=3600, method="GET", path=ALL_MESSAGES)

    with pytest.raises(RateLimitError) as info:
        client.conversation.get_messages()

    assert info.value.retry_after == 3600
    assert emu.request_count("GET", ALL_MESSAGES) == 1
    assert sleeps == []


def test_404_is_not_retried(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice)
    emu.fail_next(404, method="GET", path=ALL_MESSAGES)

    with pytest.raises(NotFoundError) as info:
        client.conversation.get_messages()

    assert info.value.status_code == 404
    assert info.value.request_id  # the emulator's X-Request-Id
    assert emu.request_count("GET", ALL_MESSAGES) == 1
    assert sleeps == []


def test_max_retries_zero_disables_retries(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice, max_retries=0)
    emu.fail_next(503, method="GET", path=ALL_MESSAGES)

    with pytest.raises(ServerError):
        client.conversation.get_messages()

    assert emu.request_count("GET", ALL_MESSAGES) == 1 and sleeps == []


def test_a_reset_connection_on_a_get_is_retried(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    emu.send_message(bob, alice.address_id, "after a reset")
    client = make_client(alice)
    emu.fail_next("reset", method="GET", path=ALL_MESSAGES)

    assert [m.text for m in client.conversation.get_messages()] == ["after a reset"]
    assert emu.request_count("GET", ALL_MESSAGES) == 2
    assert len(sleeps) == 1


def test_401_with_a_callable_token_refreshes_once_and_succeeds(
    emu: Emulator, alice: Subscriber, bob: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    emu.send_message(bob, alice.address_id, "for alice")
    lock = threading.Lock()
    calls: List[str] = []
    current = [alice.token]

    def token() -> str:
        with lock:
            calls.append(current[0])
            return current[0]

    client = make_client(token)
    assert len(calls) == 1  # read once at construction
    emu.revoke_token(alice.token)
    current[0] = emu.issue_token(alice)

    messages = list(client.conversation.get_messages())

    assert [m.text for m in messages] == ["for alice"]
    assert calls == [alice.token, current[0]]  # refreshed exactly once
    assert [e["status"] for e in emu.request_log if e["path"] == "/api/fabric/messages"] == [401, 200]
    assert sleeps == []  # a refresh is not a retry


def test_401_with_a_callable_token_that_stays_bad_is_raised_after_one_refresh(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    calls: List[int] = []

    def token() -> str:
        calls.append(1)
        return alice.token

    client = make_client(token)
    emu.revoke_token(alice.token)

    with pytest.raises(AuthenticationError) as info:
        client.conversation.get_messages()

    assert info.value.status_code == 401
    assert len(calls) == 2  # construction + one refresh, no loop
    assert emu.request_count("GET", ALL_MESSAGES) == 2


def test_401_with_a_static_token_is_raised_at_once(
    emu: Emulator, alice: Subscriber, make_client: ClientFactory, sleeps: List[float]
) -> None:
    client = make_client(alice)
    emu.fail_next(401, method="GET", path=ALL_MESSAGES)

    with pytest.raises(AuthenticationError):
        client.conversation.get_messages()

    assert emu.request_count("GET", ALL_MESSAGES) == 1 and sleeps == []
