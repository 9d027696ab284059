"""The error hierarchy: every class, where it sits, and its str()."""

from __future__ import annotations

import pytest

import signalwire_conversation.errors as errors
from signalwire_conversation import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RealtimeError,
    ResponseValidationError,
    ServerError,
    SignalWireError,
    UnprocessableEntityError,
    ValidationError,
)


@pytest.mark.parametrize(
    "cls, parent",
    [
        (ConfigurationError, SignalWireError),
        (ValidationError, SignalWireError),
        (ValidationError, ValueError),
        (APIError, SignalWireError),
        (AuthenticationError, APIError),
        (PermissionDeniedError, APIError),
        (NotFoundError, APIError),
        (UnprocessableEntityError, APIError),
        (RateLimitError, APIError),
        (ServerError, APIError),
        (APIConnectionError, SignalWireError),
        (APITimeoutError, APIConnectionError),
        (ResponseValidationError, SignalWireError),
        (RealtimeError, SignalWireError),
    ],
)
def test_hierarchy(cls: type, parent: type) -> None:
    assert issubclass(cls, parent)


def test_connection_errors_are_not_api_errors() -> None:
    assert not issubclass(APIConnectionError, APIError)


def test_every_class_is_exported() -> None:
    import signalwire_conversation

    for name in errors.__all__:
        assert getattr(signalwire_conversation, name) is getattr(errors, name)


def test_str_forms() -> None:
    assert str(SignalWireError("plain")) == "plain"
    assert str(ConfigurationError("no token: pass one")) == "no token: pass one"
    v = ValidationError("limit", "must be a positive int, got 0")
    assert str(v) == "limit: must be a positive int, got 0" and v.parameter == "limit"
    e = NotFoundError("Not Found", status_code=404, method="GET", url="https://h/x", request_id="r1")
    assert str(e) == "HTTP 404 (GET https://h/x): Not Found [request r1]"
    assert repr(e) == "NotFoundError(status_code=404, message='Not Found', request_id='r1')"
    assert str(APIError("teapot", status_code=418)) == "HTTP 418: teapot"
    r = RateLimitError("slow down", status_code=429, retry_after=2.5)
    assert r.retry_after == 2.5 and str(r) == "HTTP 429: slow down"
    assert str(APIConnectionError("could not connect", method="POST", url="https://h/m")) == (
        "could not connect (POST https://h/m)"
    )
    assert str(APITimeoutError("read timed out")) == "read timed out"
    assert str(ResponseValidationError("Conversation without 'id'")) == "Conversation without 'id'"
    assert str(RealtimeError("socket closed", code=-32000)) == "socket closed (code -32000)"
    assert RealtimeError("x").code is None


def test_422_errors_list() -> None:
    body = {"errors": [{"code": "c", "message": "m"}, "junk"]}
    assert UnprocessableEntityError("m", status_code=422, body=body).errors == [{"code": "c", "message": "m"}]
    assert APIError("x", status_code=500, body="text").errors == []
