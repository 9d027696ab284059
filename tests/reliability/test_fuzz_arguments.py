"""Random invalid arguments to every public method: a ``ValidationError``, never a request.

Requests are counted by a ``responses`` mock that matches nothing: any request at all shows up
in ``rsps.calls`` (and fails the call), so "zero calls" proves nothing was sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Iterator, Tuple

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from signalwire_conversation import Client, ConfigurationError, SignalWireError, ValidationError

from .conftest import FUZZ
from .helpers import make_token

BASE = "http://127.0.0.1:9"  # never reached: the responses mock intercepts everything


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(token=make_token(), base_url=BASE, max_retries=0) as c:
        yield c


# -- invalid values per parameter ----------------------------------------------------------

not_a_string = st.one_of(
    st.none(), st.integers(), st.floats(), st.booleans(), st.binary(max_size=5),
    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
)
blank = st.sampled_from(["", " ", "\t\n", "   \r\n  "])


class _Weird:
    def __repr__(self) -> str:
        return "<weird>"


def _circular() -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    d["self"] = d
    return d


bad_json_value = st.one_of(
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")), st.builds(_Weird),
    st.builds(set), st.binary(min_size=1, max_size=4), st.just(dt.datetime(2024, 1, 1)),
    st.builds(object), st.just(complex(1, 2)),
)
bad_mapping = st.one_of(
    st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2), st.booleans(),
    st.tuples(st.integers()),
    st.dictionaries(st.integers() | st.none() | st.tuples(st.integers()), st.integers(), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), bad_json_value, min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), st.lists(bad_json_value, min_size=1, max_size=2), min_size=1, max_size=2),
    st.builds(_circular),
)
bad_count = st.one_of(
    st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=3),
    st.just([1]), st.just(1.0), st.just(5.5), st.just(complex(1, 0)),
)
bad_time = st.one_of(
    st.text(max_size=5), st.booleans(), st.just(float("nan")), st.just(float("inf")),
    st.just(float("-inf")), st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False),
    st.just([1]), st.just({"ts": 1}), st.dates(), st.just(b"1"),
)
bad_timeout = st.one_of(
    st.floats(max_value=0.0), st.integers(max_value=0), st.just(float("nan")), st.booleans(),
    st.text(max_size=3), st.none(), st.just([1]),
)
bad_callback = st.one_of(st.integers(), st.text(max_size=3), st.just([print]), st.just({"a": 1}), st.booleans())

VALID: Dict[str, Any] = {
    "address_id": "addr-them", "text": "hello", "metadata": None, "details": None,
    "limit": None, "since": None, "until": None, "page_size": None, "callback": None,
    "timeout": 5.0,
}
INVALID = {
    "address_id": not_a_string | blank,
    "text": not_a_string | st.just(""),
    "metadata": bad_mapping,
    "details": bad_mapping,
    "limit": bad_count,
    "page_size": bad_count,
    "since": bad_time,
    "until": bad_time,
    "callback": bad_callback,
    "timeout": bad_timeout,
}
POSITIONAL = ("address_id", "text", "callback")

METHODS: Dict[str, Tuple[str, ...]] = {
    "join": ("address_id",),
    "send_message": ("address_id", "text", "metadata", "details"),
    "get_conversation_messages": ("address_id", "limit", "since", "until", "page_size"),
    "get_messages": ("limit", "since", "until", "page_size"),
    "get_conversations": ("page_size",),
    "subscribe": ("callback", "address_id", "timeout"),
}
# since > until is invalid too (both valid alone)
WINDOW_METHODS = ("get_conversation_messages", "get_messages")


def call(client: Client, method: str, values: Dict[str, Any]) -> Any:
    params = METHODS[method]
    args = [values[p] for p in params if p in POSITIONAL]
    kwargs = {p: values[p] for p in params if p not in POSITIONAL}
    if method == "subscribe":  # subscribe(callback=None, *, address_id=None, timeout=...)
        args = [values["callback"]]
        kwargs = {"address_id": values["address_id"], "timeout": values["timeout"]}
    return getattr(client.conversation, method)(*args, **kwargs)


def assert_refused_without_request(client: Client, method: str, values: Dict[str, Any]) -> ValidationError:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        try:
            call(client, method, values)
        except ValidationError as exc:
            err = exc
        else:
            raise AssertionError(f"{method}({values!r}) was accepted")
        assert len(rsps.calls) == 0, f"{method} sent {[c.request.url for c in rsps.calls]}"
    assert err.parameter in METHODS[method] or err.parameter in ("since", "until"), err
    assert str(err).startswith(err.parameter), str(err)
    return err


@pytest.mark.parametrize("method", sorted(METHODS))
@FUZZ
@given(data=st.data())
def test_invalid_arguments_raise_before_any_request(client: Client, method: str, data: st.DataObject) -> None:
    params = METHODS[method]
    broken = data.draw(st.lists(st.sampled_from(params), min_size=1, max_size=len(params), unique=True))
    values = dict(VALID)
    for name in broken:
        values[name] = data.draw(INVALID[name], label=name)
    if method == "subscribe" and values["address_id"] is None and "address_id" in broken:
        values["address_id"] = ""  # None is a valid address_id for subscribe
    err = assert_refused_without_request(client, method, values)
    assert err.parameter in broken, f"blamed {err.parameter!r}, broke {broken}"


@pytest.mark.parametrize("method", WINDOW_METHODS)
@FUZZ
@given(since=st.floats(min_value=1, max_value=2e9), gap=st.floats(min_value=1e-3, max_value=1e6))
def test_since_after_until(client: Client, method: str, since: float, gap: float) -> None:
    values = dict(VALID, since=since + gap, until=since)
    assert_refused_without_request(client, method, values)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_valid_arguments_do_reach_the_server(client: Client, method: str) -> None:
    """The counter works: with valid arguments the method does send (and fails to connect)."""
    if method == "subscribe":
        pytest.skip("subscribe opens a websocket, not a REST request")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        with pytest.raises(SignalWireError):
            call(client, method, dict(VALID))
        assert len(rsps.calls) >= 1


# -- former gaps (defects D4, D5), guarded ---------------------------------------------------

# D5 (fixed upstream): these escaped as RecursionError/ValueError/OverflowError, or were sent.


def _deep(n: int) -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    for _ in range(n):
        d = {"a": d}
    return d


@pytest.mark.parametrize("method,values", [
    pytest.param("send_message", dict(VALID, metadata=_deep(5000)), id="metadata-nested-5000"),
    pytest.param("send_message", dict(VALID, details=_deep(5000)), id="details-nested-5000"),
    pytest.param("get_messages", dict(VALID, since=dt.datetime.min), id="since-datetime.min-naive"),
    pytest.param("get_messages", dict(VALID, until=dt.datetime.max), id="until-datetime.max-naive"),
    pytest.param("get_messages", dict(VALID, since=dt.datetime(1960, 1, 1, tzinfo=dt.timezone.utc)),
                 id="since-before-epoch-datetime"),
])
def test_known_unvalidated_arguments(client: Client, method: str, values: Dict[str, Any]) -> None:
    assert_refused_without_request(client, method, values)


# D4: Client() accepted arguments it cannot use (non-callable hooks, verify/session of the
# wrong type, unknown listener_options, a non-bool allow_insecure, an infinite timeout).


def _client_kwargs_ok() -> Dict[str, Any]:
    return {"token": make_token(), "base_url": BASE}


@pytest.mark.parametrize("kwargs,expected", [
    pytest.param({"token": 5}, ConfigurationError, id="token-int"),
    pytest.param({"token": ""}, ConfigurationError, id="token-empty"),
    pytest.param({"token": "a.b"}, ConfigurationError, id="token-2-parts"),
    pytest.param({"token": "!!!.b.c.d.e"}, ConfigurationError, id="token-bad-base64"),
    pytest.param({"token": lambda: 5}, ConfigurationError, id="token-callable-returns-int"),
    pytest.param({"token": lambda: 1 / 0}, ConfigurationError, id="token-callable-raises"),
    pytest.param({"base_url": 5}, ConfigurationError, id="base_url-int"),
    pytest.param({"base_url": "ftp://x"}, ConfigurationError, id="base_url-ftp"),
    pytest.param({"base_url": "http://example.com"}, ConfigurationError, id="base_url-insecure-remote"),
    pytest.param({"relay_url": "ws://example.com"}, ConfigurationError, id="relay_url-insecure-remote"),
    pytest.param({"relay_url": "http://127.0.0.1:1"}, ConfigurationError, id="relay_url-http-scheme"),
    pytest.param({"timeout": 0}, ValidationError, id="timeout-0"),
    pytest.param({"timeout": -1}, ValidationError, id="timeout-negative"),
    pytest.param({"timeout": float("nan")}, ValidationError, id="timeout-nan"),
    pytest.param({"timeout": "5"}, ValidationError, id="timeout-str"),
    pytest.param({"timeout": (1, 2, 3)}, ValidationError, id="timeout-triple"),
    pytest.param({"max_retries": -1}, ValidationError, id="max_retries-negative"),
    pytest.param({"max_retries": 1.5}, ValidationError, id="max_retries-float"),
    pytest.param({"max_retries": True}, ValidationError, id="max_retries-bool"),
])
def test_client_constructor_refuses(kwargs: Dict[str, Any], expected: type) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        with pytest.raises(expected) as info:
            Client(**{**_client_kwargs_ok(), **kwargs})
        assert len(rsps.calls) == 0
    assert str(info.value)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"on_error": 5}, id="on_error-int"),
    pytest.param({"on_state_change": "x"}, id="on_state_change-str"),
    pytest.param({"verify": 5}, id="verify-int"),
    pytest.param({"session": 5}, id="session-int"),
    pytest.param({"listener_options": {"bogus": 1}}, id="listener_options-unknown-key"),
    pytest.param({"listener_options": {"ping_timeout": -1}}, id="listener_options-bad-value"),
    pytest.param({"listener_options": [1]}, id="listener_options-list"),
    pytest.param({"allow_insecure": "no", "base_url": "http://example.com"}, id="allow_insecure-str"),
    pytest.param({"timeout": float("inf")}, id="timeout-inf"),
])
def test_client_constructor_refuses_unusable(kwargs: Dict[str, Any]) -> None:
    with pytest.raises((ValidationError, ConfigurationError)):
        Client(**{**_client_kwargs_ok(), **kwargs})


def test_lone_surrogate_text_is_not_a_crash(client: Client) -> None:
    """Not invalid, but must not crash the encoder: it goes out as a JSON escape."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{BASE}/api/fabric/subscriber/info",
                 json={"id": "s", "fabric_addresses": [{"id": "addr-me"}]})
        rsps.add(responses.POST, f"{BASE}/api/fabric/conversations/join", json={"group_id": "g"})
        rsps.add(responses.POST, f"{BASE}/api/fabric/messages", json={"id": "m1"})
        sent = client.conversation.send_message("addr-them", "\ud800 \x00 \u202e")
        assert sent.id == "m1"
        assert len(rsps.calls) == 3
