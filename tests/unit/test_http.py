"""The transport: decision functions first, then the request loop (retries, errors, bodies)."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from typing import Any, Iterator, List, Optional

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from signalwire_conversation import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    Client,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    SignalWireError,
    UnprocessableEntityError,
    ValidationError,
)
from signalwire_conversation.config import TokenProvider
from signalwire_conversation.transport import (
    NOT_GIVEN,
    Transport,
    classify_exception,
    make_status_error,
    parse_retry_after,
    should_retry_status,
    user_agent,
)

from .helpers import BASE, THEM, TOKEN, add_join, add_me, calls_to, make_token

URL = f"{BASE}/api/fabric/messages"


def connect_refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


def reset_after_send() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    )


# ---------------------------------------------------------------------------------------------
# Decision functions
# ---------------------------------------------------------------------------------------------


class TestShouldRetryStatus:
    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
    def test_get_retries(self, status: int) -> None:
        assert should_retry_status("GET", status)

    @pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 409, 422])
    def test_get_does_not_retry(self, status: int) -> None:
        assert not should_retry_status("get", status)

    @pytest.mark.parametrize("status", [429, 503])
    def test_post_retries_only_refusals(self, status: int) -> None:
        assert should_retry_status("POST", status)

    @pytest.mark.parametrize("status", [408, 500, 502, 504, 400, 404, 422])
    def test_post_does_not_retry(self, status: int) -> None:
        assert not should_retry_status("POST", status)


class TestClassifyException:
    def test_connect_timeout_is_retryable_for_post(self) -> None:
        err, retry = classify_exception("POST", URL, requests.exceptions.ConnectTimeout("x"))
        assert isinstance(err, APITimeoutError) and retry
        assert "connect timed out" in str(err) and URL in str(err)

    def test_connect_refused_is_retryable_for_post(self) -> None:
        err, retry = classify_exception("POST", URL, connect_refused())
        assert type(err) is APIConnectionError and retry
        assert "could not connect" in str(err)

    def test_reset_after_send_is_not_retryable_for_post(self) -> None:
        err, retry = classify_exception("POST", URL, reset_after_send())
        assert type(err) is APIConnectionError and not retry
        assert "connection lost" in str(err)

    def test_reset_after_send_is_retryable_for_get(self) -> None:
        _, retry = classify_exception("GET", URL, reset_after_send())
        assert retry

    def test_read_timeout(self) -> None:
        err, retry = classify_exception("POST", URL, requests.exceptions.ReadTimeout("x"))
        assert isinstance(err, APITimeoutError) and not retry
        _, retry = classify_exception("GET", URL, requests.exceptions.ReadTimeout("x"))
        assert retry

    def test_read_timeout_while_streaming_the_body(self) -> None:
        exc = requests.exceptions.ConnectionError(ReadTimeoutError(None, URL, "read timed out"))  # type: ignore[arg-type]
        err, retry = classify_exception("POST", URL, exc, sent=True)
        assert isinstance(err, APITimeoutError) and not retry

    def test_anything_while_reading_the_body_is_sent(self) -> None:
        # even a connect-looking error cannot be "unsent" once the body was being read
        _, retry = classify_exception("POST", URL, connect_refused(), sent=True)
        assert not retry

    def test_tls_error_is_never_retried(self) -> None:
        err, retry = classify_exception("GET", URL, requests.exceptions.SSLError("certificate verify failed"))
        assert type(err) is APIConnectionError and not retry
        assert "TLS" in str(err)

    def test_chunked_encoding_error(self) -> None:
        err, retry = classify_exception("GET", URL, requests.exceptions.ChunkedEncodingError("broken"))
        assert type(err) is APIConnectionError and retry

    def test_other_request_exception(self) -> None:
        err, retry = classify_exception("GET", URL, requests.exceptions.InvalidURL("bad"))
        assert type(err) is APIConnectionError and not retry

    def test_error_text_is_redacted(self) -> None:
        exc = requests.exceptions.ConnectionError(f"failed with Authorization: Bearer {TOKEN}")
        err, _ = classify_exception("GET", URL, exc)
        assert TOKEN not in str(err)


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        "headers, expected",
        [
            ({"Retry-After": "3"}, 3.0),
            ({"retry-after": "1.5"}, 1.5),
            ({"Retry-After": "-4"}, 0.0),
            ({"retry-after-ms": "250"}, 0.25),
            ({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0),
            ({"Retry-After": "soon"}, None),
            ({"Retry-After": "nan"}, None),
            ({"Retry-After": "inf"}, None),
            ({}, None),
        ],
    )
    def test_values(self, headers: dict, expected: Optional[float]) -> None:
        assert parse_retry_after(headers) == expected

    def test_http_date(self) -> None:
        now = 1_700_000_000.0
        date = email.utils.formatdate(now + 7, usegmt=True)
        assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(7.0)

    def test_http_date_in_the_past(self) -> None:
        date = email.utils.formatdate(1_000_000_000, usegmt=True)
        assert parse_retry_after({"Retry-After": date}, now=1_700_000_000.0) == 0.0


class TestRetryDelay:
    def make(self, **kw: Any) -> Transport:
        return Transport(base_url=BASE, tokens=TokenProvider(TOKEN), **kw)

    def test_exponential_capped_with_jitter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        t = self.make(backoff_initial=0.5, backoff_max=4.0)
        monkeypatch.setattr("signalwire_conversation.transport.random.random", lambda: 0.0)
        assert [t._retry_delay(a, None) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
        monkeypatch.setattr("signalwire_conversation.transport.random.random", lambda: 1.0)
        assert [t._retry_delay(a, None) for a in range(5)] == [0.375, 0.75, 1.5, 3.0, 3.0]

    def test_jitter_stays_in_bounds(self) -> None:
        t = self.make(backoff_initial=1.0, backoff_max=8.0)
        for attempt in range(6):
            base = min(8.0, 2.0 ** attempt)
            for _ in range(50):
                assert 0.75 * base <= t._retry_delay(attempt, None) <= base

    def test_retry_after_wins_within_cap(self) -> None:
        t = self.make(retry_after_cap=10.0)
        assert t._retry_delay(0, 7.0) == 7.0
        assert t._retry_delay(3, 0.0) == 0.0
        assert t._retry_delay(0, 99.0) == 10.0


def test_user_agent_names_package_python_and_requests() -> None:
    import platform

    from signalwire_conversation import __version__

    assert user_agent() == (
        f"signalwire-conversation/{__version__} python/{platform.python_version()} "
        f"requests/{requests.__version__}"
    )


# ---------------------------------------------------------------------------------------------
# Error mapping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, UnprocessableEntityError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, APIError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_status_to_class(status: int, cls: type) -> None:
    err = make_status_error(status, body={"error": "boom"}, headers={"X-Request-Id": "req_1"}, method="GET", url=URL)
    assert type(err) is cls
    assert isinstance(err, APIError) and isinstance(err, SignalWireError)
    assert err.status_code == status and err.request_id == "req_1" and err.body == {"error": "boom"}
    assert str(err) == f"HTTP {status} (GET {URL}): boom [request req_1]"


def test_422_errors_list_message(load_fixture: Any) -> None:
    body = load_fixture("openapi-error-422-subscriber-token.json")
    err = make_status_error(422, body=body, headers={}, reason="Unprocessable Entity")
    assert isinstance(err, UnprocessableEntityError)
    assert err.message == "Required parameter is missing (attribute reference, code missing_required_parameter)"
    assert err.errors[0]["code"] == "missing_required_parameter"
    assert err.request_id is None


@pytest.mark.parametrize(
    "body, reason, expected",
    [
        ({"error": "Unauthorized"}, "Unauthorized", "Unauthorized"),
        ({"error": {"message": "nested"}}, "", "nested"),
        ({"message": "plain"}, "", "plain"),
        ("Gateway exploded", "Bad Gateway", "Gateway exploded"),
        ("<html>huge page</html>", "Bad Gateway", "Bad Gateway"),
        (None, "Service Unavailable", "Service Unavailable"),
        (None, "", "no explanation given"),
    ],
)
def test_error_message_sources(body: Any, reason: str, expected: str) -> None:
    assert make_status_error(502, body=body, headers={}, reason=reason).message == expected


def test_rate_limit_error_carries_retry_after() -> None:
    err = make_status_error(429, body=None, headers={"Retry-After": "12"}, reason="Too Many Requests")
    assert isinstance(err, RateLimitError) and err.retry_after == 12.0


# ---------------------------------------------------------------------------------------------
# The loop, through the client
# ---------------------------------------------------------------------------------------------


def test_get_retries_5xx_then_succeeds(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    for status in (500, 502, 503):
        rsps.get(URL, status=status, json={"error": "nope"})
    rsps.get(URL, json={"data": [], "links": {}})
    c = Client(TOKEN, max_retries=3)
    assert c.conversation.get_messages().data == []
    assert len(rsps.calls) == 4 and len(sleeps) == 3
    c.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_get_retries_each_retryable_status(client: Client, rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(URL, status=status)
    rsps.get(URL, json={"data": [], "links": {}})
    client.conversation.get_messages()
    assert len(rsps.calls) == 2


def test_get_gives_up_after_max_retries(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    rsps.get(URL, status=503, json={"error": "Service Unavailable"}, headers={"X-Request-Id": "r9"})
    with pytest.raises(ServerError) as info:
        client.conversation.get_messages()
    assert len(rsps.calls) == 3  # first attempt + max_retries=2
    assert len(sleeps) == 2
    assert info.value.status_code == 503 and info.value.request_id == "r9"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_max_retries_zero_disables_retries(rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    rsps.get(URL, status=500)
    c = Client(TOKEN, max_retries=0)
    with pytest.raises(ServerError):
        c.conversation.get_messages()
    assert len(rsps.calls) == 1 and sleeps == []
    c.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_never_retried(client: Client, rsps: responses.RequestsMock, sleeps: List[float], status: int) -> None:
    rsps.get(URL, status=status, json={"error": "no"})
    with pytest.raises(APIError) as info:
        client.conversation.get_messages()
    assert info.value.status_code == status
    assert len(rsps.calls) == 1 and sleeps == []


def test_429_retry_after_seconds_honoured(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "3"})
    rsps.get(URL, json={"data": [], "links": {}})
    client.conversation.get_messages()
    assert sleeps == [3.0]


def test_429_retry_after_http_date_honoured(
    client: Client, rsps: responses.RequestsMock, sleeps: List[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_700_000_000.0
    monkeypatch.setattr("signalwire_conversation.transport.time.time", lambda: now)
    rsps.get(URL, status=429, headers={"Retry-After": email.utils.formatdate(now + 5, usegmt=True)})
    rsps.get(URL, json={"data": [], "links": {}})
    client.conversation.get_messages()
    assert sleeps == [pytest.approx(5.0)]


def test_retry_after_beyond_cap_raises_at_once(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "3600"}, json={"error": "slow down"})
    with pytest.raises(RateLimitError) as info:
        client.conversation.get_messages()
    assert info.value.retry_after == 3600.0
    assert len(rsps.calls) == 1 and sleeps == []


def test_backoff_without_retry_after_grows(rsps: responses.RequestsMock, sleeps: List[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("signalwire_conversation.transport.random.random", lambda: 0.0)
    rsps.get(URL, status=500)
    c = Client(TOKEN, max_retries=3)
    with pytest.raises(ServerError):
        c.conversation.get_messages()
    assert sleeps == [0.5, 1.0, 2.0]
    c.close()


def test_get_retries_connection_error(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    rsps.get(URL, body=reset_after_send())
    rsps.get(URL, json={"data": [], "links": {}})
    client.conversation.get_messages()
    assert len(rsps.calls) == 2 and len(sleeps) == 1


def test_get_retries_read_timeout(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.get(URL, json={"data": [], "links": {}})
    client.conversation.get_messages()
    assert len(rsps.calls) == 2


def test_get_connection_error_after_retries(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body=connect_refused())
    with pytest.raises(APIConnectionError) as info:
        client.conversation.get_messages()
    assert len(rsps.calls) == 3
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)


def _prime_send(rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)


def test_post_read_timeout_is_not_retried(client: Client, rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    _prime_send(rsps)
    rsps.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.post(URL, json={"id": "dup"})
    with pytest.raises(APITimeoutError):
        client.conversation.send_message(THEM, "once")
    assert len(calls_to(rsps, r"/api/fabric/messages$")) == 1 and sleeps == []


def test_post_reset_after_send_is_not_retried(client: Client, rsps: responses.RequestsMock) -> None:
    _prime_send(rsps)
    rsps.post(URL, body=reset_after_send())
    with pytest.raises(APIConnectionError, match="connection lost"):
        client.conversation.send_message(THEM, "once")
    assert len(calls_to(rsps, r"/api/fabric/messages$")) == 1


@pytest.mark.parametrize("exc", [requests.exceptions.ConnectTimeout("connect timed out"), connect_refused()])
def test_post_connect_failure_is_retried(client: Client, rsps: responses.RequestsMock, exc: Exception) -> None:
    _prime_send(rsps)
    rsps.post(URL, body=exc)
    rsps.post(URL, json={"id": "m1"})
    assert client.conversation.send_message(THEM, "hi").id == "m1"
    assert len(calls_to(rsps, r"/api/fabric/messages$")) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_post_refusal_is_retried(client: Client, rsps: responses.RequestsMock, status: int) -> None:
    _prime_send(rsps)
    rsps.post(URL, status=status, headers={"Retry-After": "1"})
    rsps.post(URL, json={"id": "m1"})
    assert client.conversation.send_message(THEM, "hi").id == "m1"


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_post_server_error_is_not_retried(client: Client, rsps: responses.RequestsMock, status: int) -> None:
    _prime_send(rsps)
    rsps.post(URL, status=status)
    with pytest.raises(APIError):
        client.conversation.send_message(THEM, "hi")
    assert len(calls_to(rsps, r"/api/fabric/messages$")) == 1


def test_join_post_follows_the_same_rules(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    rsps.post(f"{BASE}/api/fabric/conversations/join", body=requests.exceptions.ReadTimeout("x"))
    with pytest.raises(APITimeoutError):
        client.conversation.join(THEM)
    assert len(calls_to(rsps, "join")) == 1


# ---------------------------------------------------------------------------------------------
# Token refresh on 401
# ---------------------------------------------------------------------------------------------


def test_401_with_callable_token_refreshes_once_and_retries(rsps: responses.RequestsMock, sleeps: List[float]) -> None:
    tokens = iter([make_token(secret="first"), make_token(secret="second")])
    c = Client(lambda: next(tokens))
    rsps.get(URL, status=401, json={"error": "Unauthorized"})
    rsps.get(URL, json={"data": [], "links": {}})
    c.conversation.get_messages()
    first, second = rsps.calls
    assert first.request.headers["Authorization"] == f"Bearer {make_token(secret='first')}"
    assert second.request.headers["Authorization"] == f"Bearer {make_token(secret='second')}"
    assert sleeps == []
    c.close()


def test_401_twice_raises_after_one_refresh(rsps: responses.RequestsMock) -> None:
    calls = []

    def source() -> str:
        calls.append(1)
        return make_token(secret=f"t{len(calls)}")

    c = Client(source)
    rsps.get(URL, status=401, json={"error": "Unauthorized"})
    with pytest.raises(AuthenticationError, match="Unauthorized"):
        c.conversation.get_messages()
    assert len(rsps.calls) == 2 and len(calls) == 2  # initial token + one refresh
    c.close()


def test_401_with_static_token_is_not_retried(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=401, json={"error": "Unauthorized"})
    with pytest.raises(AuthenticationError) as info:
        client.conversation.get_messages()
    assert len(rsps.calls) == 1
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_401_on_post_refreshes_too(rsps: responses.RequestsMock) -> None:
    tokens = iter([make_token(secret="a"), make_token(secret="b")])
    c = Client(lambda: next(tokens))
    _prime_send(rsps)
    rsps.post(URL, status=401)
    rsps.post(URL, json={"id": "ok"})
    assert c.conversation.send_message(THEM, "hi").id == "ok"
    c.close()


def test_refresh_callable_failure_is_a_configuration_error(rsps: responses.RequestsMock) -> None:
    state = {"n": 0}

    def source() -> str:
        state["n"] += 1
        if state["n"] > 1:
            raise RuntimeError("vault down")
        return TOKEN

    c = Client(source)
    rsps.get(URL, status=401)
    with pytest.raises(ConfigurationError, match="vault down"):
        c.conversation.get_messages()
    c.close()


# ---------------------------------------------------------------------------------------------
# Bodies, URLs, timeouts
# ---------------------------------------------------------------------------------------------


def test_malformed_json_on_2xx(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body="{not json", headers={"X-Request-Id": "abc"})
    with pytest.raises(ResponseValidationError, match=r"not valid JSON \[request abc\]"):
        client.conversation.get_messages()
    assert len(rsps.calls) == 1


def test_error_body_that_is_not_json(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=404, body="nothing here")
    with pytest.raises(NotFoundError) as info:
        client.conversation.get_messages()
    assert info.value.body == "nothing here" and info.value.message == "nothing here"


def test_response_too_large_by_content_length(rsps: responses.RequestsMock) -> None:
    c = Client(TOKEN)
    c._transport.max_response_bytes = 1000
    rsps.get(URL, body="x" * 1001)
    with pytest.raises(ResponseValidationError, match="larger than 1000 bytes"):
        c.conversation.get_messages()
    c.close()


def test_response_too_large_while_streaming(rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(TOKEN)
    c._transport.max_response_bytes = 100_000
    monkeypatch.setattr("signalwire_conversation.transport._CHUNK", 10_000)
    rsps.get(URL, body=b"x" * 300_000, auto_calculate_content_length=False)
    with pytest.raises(ResponseValidationError, match="larger than 100000 bytes"):
        c.conversation.get_messages()
    c.close()


def test_default_cap_is_16_mib() -> None:
    t = Transport(base_url=BASE, tokens=TokenProvider(TOKEN))
    assert t.max_response_bytes == 16 * 1024 * 1024


def test_absolute_urls_verbatim_relative_joined() -> None:
    t = Transport(base_url="https://api.h.example/prefix", tokens=TokenProvider(TOKEN))
    assert t.url_for("https://space.h.example/x?a=1") == "https://space.h.example/x?a=1"
    with pytest.raises(ResponseValidationError, match="not following it with your token"):
        t.url_for("https://other.example/x?a=1")  # D6: the token stays on the base URL's site
    t = Transport(base_url="https://h.example/prefix", tokens=TokenProvider(TOKEN))
    assert t.url_for("/api/fabric/messages") == "https://h.example/prefix/api/fabric/messages"
    assert t.url_for("api/x") == "https://h.example/prefix/api/x"


class RecordingTransport(Transport):
    def __init__(self, **kw: Any) -> None:
        super().__init__(base_url=BASE, tokens=TokenProvider(TOKEN), **kw)
        self.timeouts: List[Any] = []

    def _send(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kw["timeout"])
        r = requests.Response()
        r.status_code = 200
        r.raw = __import__("io").BytesIO(b"{}")
        return r


def test_default_timeouts_are_5_and_30() -> None:
    t = RecordingTransport()
    t.get("/x")
    assert t.timeouts == [(5.0, 30.0)]


def test_timeout_per_client_and_per_call() -> None:
    t = RecordingTransport(timeout=2.5)
    t.get("/x")
    t.get("/x", timeout=(1, 9))
    t.get("/x", timeout=None)
    t.get("/x", timeout=NOT_GIVEN)
    assert t.timeouts == [(2.5, 2.5), (1.0, 9.0), None, (2.5, 2.5)]


@pytest.mark.parametrize("bad", [0, -1, "5", True, (1,), (1, 0)])
def test_bad_timeout_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        Client(TOKEN, timeout=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None])
def test_bad_max_retries_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="max_retries"):
        Client(TOKEN, max_retries=bad)


def test_per_call_max_retries() -> None:
    attempts = []

    class Failing(Transport):
        def _send(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
            attempts.append(1)
            raise requests.exceptions.ConnectTimeout("x")

        def _sleep(self, seconds: float) -> None:
            pass

    t = Failing(base_url=BASE, tokens=TokenProvider(TOKEN), max_retries=5)
    with pytest.raises(APITimeoutError):
        t.get("/x", max_retries=1)
    assert len(attempts) == 2


def test_closed_transport_refuses(client: Client) -> None:
    client.close()
    with pytest.raises(SignalWireError, match="closed"):
        client.conversation.get_messages()


def test_user_session_is_used_and_not_closed(rsps: responses.RequestsMock) -> None:
    session = requests.Session()
    closed = []
    session.close = lambda: closed.append(1)  # type: ignore[method-assign]
    rsps.get(URL, json={"data": [], "links": {}})
    c = Client(TOKEN, session=session)
    assert c._transport._session is session
    c.conversation.get_messages()
    c.close()
    assert closed == []


def test_verify_is_passed_through(rsps: responses.RequestsMock) -> None:
    seen = {}

    class Spy(Transport):
        def _send(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
            seen["verify"] = self.verify
            return super()._send(method, url, **kw)

    t = Spy(base_url=BASE, tokens=TokenProvider(TOKEN), verify="/tmp/ca.pem")
    rsps.get(f"{BASE}/x", json={})
    t.get("/x")
    assert seen["verify"] == "/tmp/ca.pem"
    assert rsps.calls[0].request.req_kwargs["verify"] == "/tmp/ca.pem"


# ---------------------------------------------------------------------------------------------
# Real sockets on loopback: the classifier against what requests really raises
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


class OneShotServer:
    """Accepts connections on loopback; each one is handled by ``mode``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: List[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stop.is_set():  # the wake-up connection from close()
                conn.close()
                return
            self.accepted += 1
            conn.settimeout(5.0)
            try:
                conn.recv(65536)
            except OSError:
                pass
            if self.mode == "silent":
                self.held.append(conn)  # never answer; closed by close()
            elif self.mode.startswith("trickle"):
                self._trickle(conn)
            else:
                conn.close()

    def _trickle(self, conn: socket.socket) -> None:
        """One byte every 20 ms (each read returns well within any read timeout), bounded."""
        if self.mode == "trickle-body":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            conn.sendall(head + b'{"data": [')
            stream = b" " * 2000
        else:
            stream = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 2000
        try:
            for i in range(len(stream)):
                if self.stop.wait(0.02):
                    break
                conn.sendall(stream[i:i + 1])
        except OSError:
            pass  # the client gave up: what the test wants
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        try:  # wake the blocked accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5.0)
        for conn in self.held:
            conn.close()


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: List[OneShotServer] = []

    def make(mode: str) -> OneShotServer:
        s = OneShotServer(mode)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _transport(port: int, **kw: Any) -> Transport:
    class NoSleep(Transport):
        def _sleep(self, seconds: float) -> None:
            pass

    return NoSleep(base_url=f"http://127.0.0.1:{port}", tokens=TokenProvider(TOKEN), **kw)


def test_real_connection_refused_post_is_retried(closed_port: int) -> None:
    t = _transport(closed_port, max_retries=2)
    attempts = []
    orig = t._send

    def counting(*a: Any, **kw: Any) -> requests.Response:
        attempts.append(1)
        return orig(*a, **kw)

    t._send = counting  # type: ignore[method-assign]
    with pytest.raises(APIConnectionError, match="could not connect"):
        t.post("/api/fabric/messages", json_body={"text": "x"})
    assert len(attempts) == 3
    t.close()


def test_real_reset_after_send_post_is_not_retried(server_factory: Any) -> None:
    server = server_factory("close")
    t = _transport(server.port, max_retries=2)
    with pytest.raises(APIConnectionError, match="connection lost"):
        t.post("/api/fabric/messages", json_body={"text": "x"})
    assert server.accepted == 1
    t.close()


def test_real_read_timeout_post_not_retried_get_retried(server_factory: Any) -> None:
    server = server_factory("silent")
    t = _transport(server.port, max_retries=1, timeout=(1.0, 0.2))
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match="read timed out"):
        t.post("/api/fabric/messages", json_body={"text": "x"})
    assert server.accepted == 1
    with pytest.raises(APITimeoutError):
        t.get("/api/fabric/messages")
    assert server.accepted == 3
    assert time.monotonic() - started < 5
    t.close()


@pytest.mark.parametrize("mode", ["trickle-head", "trickle-body"])
def test_trickling_server_hits_the_total_deadline(server_factory: Any, mode: str) -> None:
    """D3: requests' read timeout is per socket read; the attempt has a total deadline."""
    server = server_factory(mode)
    t = _transport(server.port, max_retries=1, timeout=(0.2, 0.3))
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match=r"did not finish its answer within 0.5 s"):
        t.get("/api/fabric/messages")
    elapsed = time.monotonic() - started
    assert server.accepted == 2  # a GET is retried after the deadline, like any timeout
    assert elapsed < 2.5, elapsed  # 2 attempts of 0.5 s (without the deadline: 40 s each)
    t.close()


def test_trickling_server_post_not_retried(server_factory: Any) -> None:
    server = server_factory("trickle-head")
    t = _transport(server.port, max_retries=2, timeout=(0.2, 0.3))
    with pytest.raises(APITimeoutError, match="did not finish"):
        t.post("/api/fabric/messages", json_body={"text": "x"})
    assert server.accepted == 1
    t.close()


class BrokenBodyTransport(Transport):
    """Answers 200 whose body breaks off with ``exc`` for the first ``breaks`` attempts."""

    def __init__(self, exc: Exception, breaks: int, **kw: Any) -> None:
        super().__init__(base_url=BASE, tokens=TokenProvider(TOKEN), **kw)
        self.exc = exc
        self.breaks = breaks
        self.attempts = 0

    def _send(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.attempts += 1
        r = requests.Response()
        r.status_code = 200
        r.raw = __import__("io").BytesIO(b"")
        if self.attempts <= self.breaks:
            exc = self.exc

            def broken(*a: Any, **k: Any) -> Any:
                raise exc

            r.iter_content = broken  # type: ignore[method-assign]
        else:
            r.raw = __import__("io").BytesIO(b'{"ok": true}')
        return r

    def _sleep(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ChunkedEncodingError("truncated"),
        requests.exceptions.ConnectionError(ReadTimeoutError(None, URL, "read timed out")),  # type: ignore[arg-type]
        reset_after_send(),
    ],
)
def test_get_body_broken_mid_way_is_retried(exc: Exception) -> None:
    t = BrokenBodyTransport(exc, breaks=1, max_retries=2)
    assert t.get("/x") == {"ok": True}
    assert t.attempts == 2


def test_get_body_broken_every_time_raises_after_retries() -> None:
    t = BrokenBodyTransport(requests.exceptions.ChunkedEncodingError("truncated"), breaks=10, max_retries=2)
    with pytest.raises(APIConnectionError, match="connection lost") as info:
        t.get("/x")
    assert t.attempts == 3
    assert isinstance(info.value.__cause__, requests.exceptions.ChunkedEncodingError)


def test_post_body_broken_mid_way_is_not_retried() -> None:
    t = BrokenBodyTransport(connect_refused(), breaks=1, max_retries=2)
    with pytest.raises(APIConnectionError):
        t.post("/x", json_body={"text": "once"})
    assert t.attempts == 1
