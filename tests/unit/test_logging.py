"""Redaction helpers and the filter on the package loggers."""

from __future__ import annotations

import logging

import pytest

from signalwire_conversation._logging import get_logger, preview, redact, redact_data

from .helpers import TOKEN


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        f"{{'Authorization': 'Bearer {TOKEN}'}}",
        f'{{"jwt_token": "{TOKEN}"}}',
        f"token={TOKEN}&x=1",
        f"plain {TOKEN} in text",
        f'"authentication": {{"jwt_token": "{TOKEN}", "project": "p"}}',
    ],
)
def test_redact_removes_token(text: str) -> None:
    out = redact(text)
    assert TOKEN not in out and "<redacted>" in out
    assert TOKEN.split(".")[-1] not in out


def test_redact_keeps_ordinary_text() -> None:
    text = "GET /api/fabric/messages?page_size=10&page_token=PA1 -> 200"
    assert redact(text) == text
    assert redact("") == ""


def test_redact_data_recurses() -> None:
    data = {"a": [f"Bearer {TOKEN}", {"jwt_token": TOKEN}], "n": 1}
    out = redact_data(data)
    assert TOKEN not in repr(out) and out["n"] == 1


def test_preview_caps_length() -> None:
    assert preview("x" * 5000, 100).endswith("(5000 chars)")
    assert preview(b"bytes") == "bytes"


def test_filter_scrubs_records_even_with_args(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("signalwire_conversation.test")
    with caplog.at_level(logging.DEBUG, logger="signalwire_conversation"):
        log.debug("sending %s", {"Authorization": f"Bearer {TOKEN}"})
        log.info("token is %s", TOKEN)
    assert TOKEN not in caplog.text
    assert caplog.text.count("<redacted>") == 2


def test_get_logger_names() -> None:
    assert get_logger().name == "signalwire_conversation"
    assert get_logger("transport").name == "signalwire_conversation.transport"
    assert len(get_logger("transport").filters) == 1  # the filter is added once


@pytest.mark.parametrize(
    "text",
    [
        "the relay refused the token: signalwire.connect failed",
        "token=expired",
        "authorization: required",
        "'token': 'missing'",
        '{"token": "not-a-valid-one"}',
        "access_token=please_refresh_it_now",  # long, but a lowercase phrase
        "Token: reauthenticate_required_now",
    ],
)
def test_redact_keeps_words_after_a_token_key(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text,secret",
    [
        ("token=PT3f1c2e9a0b7d4c6e8f&x=1", "PT3f1c2e9a0b7d4c6e8f"),
        ('{"refresh_token": "r3Fr35h-T0k3n_AbCdEf"}', "r3Fr35h-T0k3n_AbCdEf"),
        ("authorization: dGhpc0lzQVNlY3JldFZhbHVl", "dGhpc0lzQVNlY3JldFZhbHVl"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("access_token=abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxyz0123"),
    ],
)
def test_redact_removes_opaque_credentials(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "<redacted>" in out
