"""``SubscriberTokens`` against the emulator's token endpoints, over real sockets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from pathlib import Path
from typing import List

import pytest

from signalwire_conversation import (
    AuthenticationError,
    Client,
    ConfigurationError,
    PermissionDeniedError,
    ServerError,
    SubscriberTokens,
    ValidationError,
)
from signalwire_conversation.testing import Emulator

from waiting import wait_until

MINT = "^/api/fabric/subscribers/tokens$"
REFRESH = "^/api/fabric/subscribers/tokens/refresh$"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def tokens(signalwire_emulator: Emulator) -> SubscriberTokens:
    emu = signalwire_emulator
    return SubscriberTokens(emu.project_id, emu.api_token, emu.space_url)


def _client(emu: Emulator, token: str) -> Client:
    return Client(token, base_url=emu.base_url, relay_url=emu.relay_url, resolve_names=False)


def test_mint_creates_the_subscriber_and_the_token_works(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    emu = signalwire_emulator
    token = tokens.token_for("alice@example.com", first_name="Alice", last_name="Liddell")
    (request,) = [e for e in emu.request_log if e["path"] == "/api/fabric/subscribers/tokens"]
    assert request["body"] == {"reference": "alice@example.com", "first_name": "Alice", "last_name": "Liddell"}
    assert request["status"] == 200
    alice = emu.subscriber("alice@example.com")
    assert alice.display_name == "Alice Liddell"
    with _client(emu, token) as client:
        assert client.conversation.get_subscriber_info().id == alice.subscriber_id
    # an existing subscriber gets a token of its own account (no second subscriber)
    bob = emu.add_subscriber("bob")
    with _client(emu, tokens.token_for("bob")) as client:
        assert client.conversation.get_subscriber_info().address_id == bob.address_id
    assert len(emu.subscribers) == 2


def test_fifty_calls_one_request(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    first = tokens.token_for("alice")
    assert all(tokens.token_for("alice") == first for _ in range(50))
    assert signalwire_emulator.request_count("POST", MINT) == 1
    assert tokens.stats == {"mint": 1, "refresh": 0, "guest": 0}


def test_renewed_with_the_refresh_token_before_expiry(signalwire_emulator: Emulator) -> None:
    emu = signalwire_emulator
    # a 3 s token; renewed at half its life (the margin is capped at half the lifetime)
    tokens = SubscriberTokens(emu.project_id, emu.api_token, emu.space_url, refresh_margin=600)
    first = tokens.token_for("alice", expire_at=time.time() + 3)
    minted_at = time.monotonic()
    wait_until(lambda: tokens.token_for("alice") != first, 10, "a renewed token")
    renewed_after = time.monotonic() - minted_at
    assert 1.0 <= renewed_after < 3.0  # before expiry, not long before
    assert emu.request_count("POST", MINT) == 1 and emu.request_count("POST", REFRESH) == 1
    (refresh,) = [e for e in emu.request_log if e["path"].endswith("/refresh")]
    assert refresh["status"] == 201 and set(refresh["body"]) == {"refresh_token"}
    # the first token was still valid when it was replaced; the new one works
    with _client(emu, tokens.token_for("alice")) as client:
        assert client.conversation.get_subscriber_info().id == emu.subscriber("alice").subscriber_id


def test_minted_again_when_the_refresh_token_expired_without_the_stale_expire_at(
    signalwire_emulator: Emulator,
) -> None:
    emu = signalwire_emulator
    tokens = SubscriberTokens(emu.project_id, emu.api_token, emu.space_url, refresh_margin=600)
    first = tokens.token_for("alice", expire_at=time.time() + 2.5, display_name="Alice")
    assert emu.identity.expire_refresh_tokens() == 1
    wait_until(lambda: tokens.token_for("alice") != first, 10, "a new token")
    statuses = [(e["path"], e["status"]) for e in emu.request_log]
    assert statuses == [
        ("/api/fabric/subscribers/tokens", 200),
        ("/api/fabric/subscribers/tokens/refresh", 422),
        ("/api/fabric/subscribers/tokens", 200),
    ]
    refused = emu.request_log[1]
    # the second mint keeps the fields but not the expire_at that has passed (it would be a 422)
    second_mint = emu.request_log[2]["body"]
    assert second_mint == {"reference": "alice", "display_name": "Alice"}
    assert refused["status"] == 422
    with _client(emu, tokens.token_for("alice")) as client:
        assert client.conversation.get_subscriber_info().display_name == "Alice"


def test_sixteen_threads_one_mint(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    emu = signalwire_emulator
    emu.latency = 0.2  # every caller arrives while the mint is in flight
    barrier = threading.Barrier(16)
    got: List[str] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait(5)
        token = tokens.token_for("alice")
        with lock:
            got.append(token)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(got) == 16 and len(set(got)) == 1
    assert emu.request_count("POST", MINT) == 1


def test_different_references_do_not_wait_for_each_other(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    emu = signalwire_emulator
    emu.latency = 0.3
    started = time.monotonic()
    threads = [threading.Thread(target=tokens.token_for, args=(f"user{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert emu.request_count("POST", MINT) == 4
    assert time.monotonic() - started < 4 * 0.3  # in parallel, not one after the other


def test_guest_token_is_limited_to_its_addresses(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    emu = signalwire_emulator
    support = emu.add_subscriber("support")
    other = emu.add_subscriber("other")
    guest = tokens.guest_token([support.address_id], expire_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    (request,) = [e for e in emu.request_log if e["path"] == "/api/fabric/guests/tokens"]
    assert request["status"] == 201 and request["body"]["allowed_addresses"] == [support.address_id]
    with _client(emu, guest) as client:
        client.conversation.send_message(support.address_id, "hello support")
        assert [m.text for m in client.conversation.get_conversation_messages(support.address_id)] == ["hello support"]
        with pytest.raises(PermissionDeniedError):
            client.conversation.send_message(other.address_id, "hello other")
    assert [m["text"] for m in emu.messages()] == ["hello support"]
    assert tokens.guest_token([support.address_id]) != guest  # never cached


def test_wrong_project_credentials_name_the_project_credentials(signalwire_emulator: Emulator) -> None:
    emu = signalwire_emulator
    wrong = "PT" + "0123456789abcdef" * 3
    tokens = SubscriberTokens(emu.project_id, wrong, emu.space_url)
    with pytest.raises(AuthenticationError) as info:
        tokens.token_for("alice")
    text = str(info.value)
    assert info.value.status_code == 401
    assert "project credentials" in text and "SIGNALWIRE_API_TOKEN" in text and emu.project_id in text
    assert "subscriber access token" not in text and "SAT" not in text
    assert wrong not in text and wrong not in repr(info.value)
    # a client made from them fails the same way, at construction (its first token)
    with pytest.raises(AuthenticationError, match="project credentials"):
        Client.for_subscriber("alice", tokens=tokens, base_url=emu.base_url)
    with pytest.raises(AuthenticationError, match="project credentials"):
        SubscriberTokens("not-the-project", emu.api_token, emu.space_url).guest_token(["x"])


def test_the_api_token_is_never_shown(
    signalwire_emulator: Emulator, tokens: SubscriberTokens, caplog: pytest.LogCaptureFixture
) -> None:
    emu = signalwire_emulator
    secret = emu.api_token
    with caplog.at_level(logging.DEBUG, logger="signalwire_conversation"):
        sat = tokens.token_for("alice", expire_at=time.time() + 2.5)
        tokens._entries["alice"].renew_at = 0.0  # due now: a refresh
        tokens.token_for("alice")
        emu.fail_next(500, method="POST", path=MINT)
        with pytest.raises(Exception) as failed:
            tokens.token_for("bob")
        source = tokens.source("alice")
        source()
    shown = [caplog.text, repr(tokens), str(tokens.__dict__.get("_transport")), repr(source),
             str(failed.value), repr(failed.value), json.dumps(failed.value.body)]  # type: ignore[attr-defined]
    for text in shown:
        assert secret not in text
        assert sat not in text
    assert "POST" in caplog.text  # the requests were logged (redacted), not silenced


def test_source_renews_when_asked_again_and_keeps_a_newer_cached_token(
    signalwire_emulator: Emulator, tokens: SubscriberTokens
) -> None:
    emu = signalwire_emulator
    source = tokens.source("alice")
    first = source()
    assert tokens.token_for("alice") == first
    second = source()  # a second call means "this one was refused": renewed at once
    assert second != first and tokens.token_for("alice") == second
    assert emu.request_count("POST", REFRESH) == 1
    other = tokens.source("alice")
    assert other() == second  # a new source starts from the cache
    tokens._entries["alice"].renew_at = 0.0
    third = tokens.token_for("alice")
    assert source() == third  # someone renewed meanwhile: no second renewal
    assert emu.request_count("POST", REFRESH) == 2


def test_a_client_whose_token_is_revoked_renews_on_the_401(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    emu = signalwire_emulator
    with Client.for_subscriber("alice", tokens=tokens, base_url=emu.base_url, relay_url=emu.relay_url) as client:
        client.conversation.get_subscriber_info()
        emu.revoke_token(tokens.token_for("alice"))
        client.conversation.get_conversations()  # 401, renewed, sent again
    assert [e["status"] for e in emu.request_log if e["path"] == "/api/fabric/conversations"] == [401, 200]
    assert emu.request_count("POST", REFRESH) == 1


def test_defaults_from_the_environment(signalwire_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = signalwire_emulator
    with pytest.raises(ConfigurationError, match="SIGNALWIRE_PROJECT_ID"):
        SubscriberTokens()
    for name, value in emu.environment().items():
        monkeypatch.setenv(name, value)
    tokens = SubscriberTokens()
    assert tokens.project_id == emu.project_id and tokens.space_url == emu.base_url
    with Client.for_subscriber("carol") as client:  # the process's default SubscriberTokens
        assert client.conversation.get_subscriber_info().id == emu.subscriber("carol").subscriber_id


def test_space_forms_and_refusals() -> None:
    kw = dict(project_id="p", api_token="t")
    assert SubscriberTokens(space="example.signalwire.com", **kw).space_url == "https://example.signalwire.com"
    assert SubscriberTokens(space="https://example.signalwire.com/", **kw).space_url == "https://example.signalwire.com"
    with pytest.raises(ConfigurationError, match="not encrypted"):
        SubscriberTokens(space="http://example.signalwire.com", **kw)
    with pytest.raises(ConfigurationError, match="space"):
        SubscriberTokens(space="example.signalwire.com/api", **kw)
    with pytest.raises(ConfigurationError, match="api_token"):
        SubscriberTokens(project_id="p", api_token="  ", space="example.signalwire.com")


def test_bad_input_is_refused_before_anything_is_sent(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    with pytest.raises(ValidationError, match="reference"):
        tokens.token_for("")
    with pytest.raises(ValidationError, match="reference"):
        tokens.source(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="nickname"):
        tokens.token_for("alice", nickname="Al")
    with pytest.raises(ValidationError, match="expire_at: must be in the future"):
        tokens.token_for("alice", expire_at=time.time() - 5)
    with pytest.raises(ValidationError, match="first_name"):
        tokens.token_for("alice", first_name=3)
    with pytest.raises(ValidationError, match="allowed_addresses"):
        tokens.guest_token("one-address")
    with pytest.raises(ValidationError, match="allowed_addresses"):
        tokens.guest_token([])
    with pytest.raises(ValidationError, match="token"):
        Client.for_subscriber("alice", tokens=tokens, token="x")
    assert signalwire_emulator.requests == []


def test_the_cache_is_bounded(signalwire_emulator: Emulator) -> None:
    emu = signalwire_emulator
    tokens = SubscriberTokens(emu.project_id, emu.api_token, emu.space_url, max_cached=3)
    for name in ("a", "b", "c", "d"):
        tokens.token_for(name)
    assert len(tokens) == 3
    tokens.token_for("b")  # still cached
    assert emu.request_count("POST", MINT) == 4
    tokens.token_for("a")  # evicted (least recently used): minted again
    assert emu.request_count("POST", MINT) == 5


def test_fixture_shapes_are_what_the_emulator_answers(signalwire_emulator: Emulator, tokens: SubscriberTokens) -> None:
    """The emulator's answers have the keys of SignalWire's reference examples."""
    import requests

    emu = signalwire_emulator
    auth = (emu.project_id, emu.api_token)
    mint = requests.post(emu.base_url + "/api/fabric/subscribers/tokens", json={"reference": "z"}, auth=auth, timeout=5)
    assert set(mint.json()) == set(json.loads((FIXTURES / "openapi-subscriber-token-response.json").read_text()))
    refreshed = requests.post(emu.base_url + "/api/fabric/subscribers/tokens/refresh",
                              json={"refresh_token": mint.json()["refresh_token"]}, auth=auth, timeout=5)
    assert refreshed.status_code == 201
    assert set(refreshed.json()) == set(json.loads((FIXTURES / "openapi-subscriber-refresh-token-response.json").read_text()))
    emu.identity.expire_refresh_tokens()
    expired = requests.post(emu.base_url + "/api/fabric/subscribers/tokens/refresh",
                            json={"refresh_token": refreshed.json()["refresh_token"]}, auth=auth, timeout=5)
    assert expired.status_code == 422
    assert expired.json() == json.loads((FIXTURES / "openapi-error-422-refresh-token-expired.json").read_text())
    header = json.loads((FIXTURES / "jwe-header-refresh-token.json").read_text())
    from signalwire_conversation.config import decode_token_header

    assert set(decode_token_header(mint.json()["refresh_token"])) == set(header)
    guest = requests.post(emu.base_url + "/api/fabric/guests/tokens",
                          json={"allowed_addresses": [emu.subscriber("z").address_id]}, auth=auth, timeout=5)
    assert guest.status_code == 201
    assert set(decode_token_header(guest.json()["token"])) == set(json.loads((FIXTURES / "jwe-header-guest-sat.json").read_text()))
    missing = requests.post(emu.base_url + "/api/fabric/subscribers/tokens", json={}, auth=auth, timeout=5)
    assert missing.status_code == 422
    assert missing.json() == json.loads((FIXTURES / "openapi-error-422-subscriber-token.json").read_text())
    assert requests.post(emu.base_url + "/api/fabric/subscribers/tokens", json={"reference": "z"}, timeout=5).status_code == 401
    past = requests.post(emu.base_url + "/api/fabric/subscribers/tokens",
                         json={"reference": "z", "expire_at": int(time.time()) - 10}, auth=auth, timeout=5)
    assert past.status_code == 422 and past.json()["errors"][0]["attribute"] == "expire_at"


def test_a_failed_renewal_ahead_of_time_keeps_the_current_token(
    signalwire_emulator: Emulator, tokens: SubscriberTokens, caplog: pytest.LogCaptureFixture
) -> None:
    emu = signalwire_emulator
    first = tokens.token_for("alice")  # lives 2 hours
    tokens._entries["alice"].renew_at = 0.0  # due for renewal now
    emu.fail_next(500, method="POST", path=REFRESH)
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.tokens"):
        assert tokens.token_for("alice") == first  # still valid: used, not an error
    assert "renewing the token of 'alice' failed" in caplog.text
    second = tokens.token_for("alice")  # tried again, and renewed
    assert second != first
    assert [e["status"] for e in emu.request_log if e["path"].endswith("/refresh")] == [500, 201]
    # an expired token is not handed out: the failure is raised
    tokens._entries["alice"].renew_at = tokens._entries["alice"].expires_at = 0.0
    emu.fail_next(500, method="POST", path=REFRESH)
    with pytest.raises(ServerError):
        tokens.token_for("alice")
