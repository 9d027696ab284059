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
    assert get_logger("http").name == "signalwire_conversation.http"
    assert len(get_logger("http").filters) == 1  # the filter is added once
