"""Bad input: a ValidationError naming the parameter, raised before any request."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable

import pytest
import responses

from signalwire_conversation import Client, ValidationError

from .helpers import BASE, THEM, FakeListener, add_join, add_me, body_of

BAD_ADDRESS = [None, 123, "", "   ", b"addr", ["a"]]
BAD_COUNT = [0, -1, 1.5, "10", True, False, [1]]
BAD_TIME = ["yesterday", True, [1], {"t": 1}, math.nan, math.inf, -1, dt.date(2024, 1, 1),
            # D5: no epoch timestamp (ValueError/OverflowError from datetime.timestamp()), or
            # before the epoch (as -1 is refused, so is a datetime of 1960)
            dt.datetime.min, dt.datetime.max, dt.datetime.min.replace(tzinfo=dt.timezone.utc),
            dt.datetime(1960, 1, 1, tzinfo=dt.timezone.utc),
            1e14, 1e300]  # past the year 5138 even when read as milliseconds


def _deep(n: int) -> "dict[str, Any]":
    d: "dict[str, Any]" = {}
    for _ in range(n):
        d = {"a": d}
    return d


def no_requests(rsps: responses.RequestsMock) -> None:
    assert list(rsps.calls) == [], f"requests were sent: {[c.request.url for c in rsps.calls]}"


def check(rsps: responses.RequestsMock, call: Callable[[], Any], parameter: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.parameter == parameter
    assert str(info.value).startswith(f"{parameter}: ")
    assert isinstance(info.value, ValueError)
    no_requests(rsps)
    return info.value


@pytest.mark.parametrize("bad", BAD_ADDRESS)
def test_address_id(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    api = client.conversation
    check(rsps, lambda: api.join(bad), "address_id")
    check(rsps, lambda: api.get_conversation_messages(bad), "address_id")
    check(rsps, lambda: api.send_message(bad, "hi"), "address_id")
    if bad is not None:  # None means "every conversation"
        check(rsps, lambda: api.subscribe(address_id=bad), "address_id")


@pytest.mark.parametrize("bad", [None, 5, "", b"x", ["t"]])
def test_text(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.send_message(THEM, bad), "text")


@pytest.mark.parametrize("bad", BAD_COUNT)
def test_limit(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.get_messages(limit=bad), "limit")
    check(rsps, lambda: client.conversation.get_conversation_messages(THEM, limit=bad), "limit")
    check(rsps, lambda: client.conversation.get_conversations(limit=bad), "limit")


@pytest.mark.parametrize("bad", BAD_COUNT)
def test_page_size(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.get_messages(page_size=bad), "page_size")
    check(rsps, lambda: client.conversation.get_conversations(page_size=bad), "page_size")
    check(rsps, lambda: client.conversation.get_conversation_messages(THEM, page_size=bad), "page_size")


@pytest.mark.parametrize("bad", BAD_TIME)
def test_since_until_types(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.get_messages(since=bad), "since")
    check(rsps, lambda: client.conversation.get_messages(until=bad), "until")
    check(rsps, lambda: client.conversation.get_conversation_messages(THEM, since=bad), "since")


def test_since_after_until(client: Client, rsps: responses.RequestsMock) -> None:
    err = check(rsps, lambda: client.conversation.get_messages(since=200, until=100), "since")
    assert "later than until" in str(err)
    early = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    check(rsps, lambda: client.conversation.get_messages(since=early + dt.timedelta(1), until=early), "since")


def test_since_equal_until_is_fine(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get("https://fabric.swire.io/api/fabric/messages", json={"data": [], "links": {}})
    client.conversation.get_messages(since=100, until=100)


def test_milliseconds_read_as_wire_timestamps_are(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get("https://fabric.swire.io/api/fabric/messages", json={"data": [], "links": {}})
    client.conversation.get_messages(since=1708192187729)  # e.g. a message's ts in ms
    assert "since=1708192187.729" in rsps.calls[0].request.url


def test_naive_datetime_is_local_time(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get("https://fabric.swire.io/api/fabric/messages", json={"data": [], "links": {}})
    naive = dt.datetime(2024, 1, 1, 12, 0, 0)
    client.conversation.get_messages(since=naive)
    expected = naive.timestamp()  # the stdlib reading: local time
    assert f"since={int(expected)}" in rsps.calls[0].request.url


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        "x",
        {1: "int key"},
        {"obj": object()},
        {"set": {1, 2}},
        {"nan": math.nan},
        {"b": b"bytes"},
        _deep(5000),  # D5: json.dumps raised RecursionError
    ],
)
def test_metadata_and_details(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.send_message(THEM, "hi", metadata=bad), "metadata")
    check(rsps, lambda: client.conversation.send_message(THEM, "hi", details=bad), "details")


def _levels_of_dicts(n: int) -> "dict[str, Any]":
    return _deep(n - 1)  # n dicts, the innermost empty


def _levels_of_lists(n: int) -> "dict[str, Any]":
    inner: Any = []
    for _ in range(n - 2):
        inner = [inner]
    return {"a": inner}  # a dict around n - 1 lists


@pytest.mark.parametrize("make", [_levels_of_dicts, _levels_of_lists], ids=["dicts", "lists"])
def test_metadata_nesting_limit_is_explicit(client: Client, rsps: responses.RequestsMock, make: Any) -> None:
    """MAX_JSON_DEPTH levels pass and one more is refused, whatever the recursion limit allows."""
    from signalwire_conversation.conversation import MAX_JSON_DEPTH

    too_deep = make(MAX_JSON_DEPTH + 1)
    for name in ("metadata", "details"):
        error = check(rsps, lambda: client.conversation.send_message(THEM, "hi", **{name: too_deep}), name)
        assert str(error) == f"{name}: must not nest dicts and lists more than {MAX_JSON_DEPTH} levels deep"
    add_me(rsps)
    add_join(rsps)
    rsps.post(f"{BASE}/api/fabric/messages", body="")
    deepest = make(MAX_JSON_DEPTH)
    client.conversation.send_message(THEM, "hi", metadata=deepest, details=deepest)
    assert body_of(rsps.calls[-1])["metadata"] == deepest


@pytest.mark.parametrize("bad", [0, -1, "5", True, None])
def test_subscribe_timeout(client: Client, rsps: responses.RequestsMock, bad: Any) -> None:
    check(rsps, lambda: client.conversation.subscribe(timeout=bad), "timeout")


def test_subscribe_timeout_infinite_means_no_bound(client: Client, rsps: responses.RequestsMock) -> None:
    """D10: inf passes validation and reaches the listener, which waits without a bound."""
    client.conversation.subscribe(timeout=math.inf)
    (listener,) = FakeListener.instances
    assert listener.subscribed[0]["timeout"] == math.inf
    check(rsps, lambda: client.conversation.subscribe(timeout=math.nan), "timeout")
    check(rsps, lambda: client.conversation.subscribe(timeout=-math.inf), "timeout")


def test_subscribe_callback(client: Client, rsps: responses.RequestsMock) -> None:
    check(rsps, lambda: client.conversation.subscribe("not callable"), "callback")  # type: ignore[arg-type]


def test_validation_happens_before_the_lazy_join(client: Client, rsps: responses.RequestsMock) -> None:
    # a valid address but a bad option: nothing (not even subscriber/info or join) is sent
    check(rsps, lambda: client.conversation.get_conversation_messages(THEM, limit=0), "limit")
    check(rsps, lambda: client.conversation.send_message(THEM, "hi", metadata={"x": object()}), "metadata")
