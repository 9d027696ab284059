"""Each ConversationAPI method: the request on the wire and the decoded result."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from signalwire_conversation import (
    Client,
    Conversation,
    ConversationMessage,
    JoinResult,
    ResponseValidationError,
    SentMessage,
)

from .helpers import BASE, GROUP, ME, THEM, TOKEN, add_join, add_me, body_of, calls_to, message


def query(call: Any) -> dict:
    return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def assert_common_headers(call: Any, *, has_body: bool) -> None:
    h = call.request.headers
    assert h["Authorization"] == f"Bearer {TOKEN}"
    assert h["Accept"] == "application/json"
    assert h["User-Agent"].startswith("signalwire-conversation/")
    assert " python/" in h["User-Agent"] and " requests/" in h["User-Agent"]
    if has_body:
        assert h["Content-Type"] == "application/json"
    else:
        assert "Content-Type" not in h


def test_get_conversations_request_and_result(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(
        f"{BASE}/api/fabric/conversations",
        json={
            "data": [
                {"group_id": "g1", "from_fabric_address_id": ME, "name": "one", "metadata": {"a": 1},
                 "created_at": 1708192187729, "last_message_at": 1708192187823, "new_field": 7},
            ],
            "links": {},
        },
    )
    page = client.conversation.get_conversations(page_size=5)
    (call,) = rsps.calls
    assert call.request.method == "GET"
    assert urlsplit(call.request.url).path == "/api/fabric/conversations"
    assert query(call) == {"page_size": "5"}
    assert_common_headers(call, has_body=False)
    assert call.request.body is None
    assert page.has_next is False and page.has_prev is False
    (conv,) = page.data
    assert isinstance(conv, Conversation)
    assert conv.id == "g1" and conv.group_id == "g1" and conv.name == "one"
    assert conv.metadata == {"a": 1}
    assert conv.extra == {"new_field": 7}
    assert conv.created_datetime == dt.datetime(2024, 2, 17, 17, 49, 47, 729000, tzinfo=dt.timezone.utc)


def test_get_conversations_without_page_size_sends_no_query(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/conversations", json={"data": [], "links": {}})
    page = client.conversation.get_conversations()
    assert urlsplit(rsps.calls[0].request.url).query == ""
    assert page.data == []


def test_get_conversations_limit_caps_the_iteration_and_the_page_size(
    client: Client, rsps: responses.RequestsMock
) -> None:
    url = f"{BASE}/api/fabric/conversations"
    rsps.get(url, json={"data": [{"group_id": "g1"}, {"group_id": "g2"}], "links": {"next": f"{url}?p=2"}},
             match=[responses.matchers.query_param_matcher({"page_size": "3"})])
    rsps.get(url, json={"data": [{"group_id": "g3"}, {"group_id": "g4"}], "links": {"next": f"{url}?p=3"}},
             match=[responses.matchers.query_param_matcher({"p": "2", "page_size": "3"})])
    page = client.conversation.get_conversations(limit=3)
    assert query(rsps.calls[0]) == {"page_size": "3"}  # as for the message listings: min(limit, 100)
    assert [c.id for c in page] == ["g1", "g2", "g3"]
    assert len(rsps.calls) == 2  # the budget is spent on the second page: no third request
    assert query(rsps.calls[1]) == {"p": "2", "page_size": "3"}


def test_get_conversations_limit_alone_caps_the_page_size_at_100(
    client: Client, rsps: responses.RequestsMock
) -> None:
    rsps.get(f"{BASE}/api/fabric/conversations", json={"data": [], "links": {}})
    client.conversation.get_conversations(limit=1000, page_size=None)
    assert query(rsps.calls[0]) == {"page_size": "100"}
    client.conversation.get_conversations(limit=3, page_size=50)
    assert query(rsps.calls[1]) == {"page_size": "50"}


def test_join_request_body_and_result(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    result = client.conversation.join(THEM)
    info, join = rsps.calls
    assert info.request.method == "GET" and urlsplit(info.request.url).path == "/api/fabric/subscriber/info"
    assert join.request.method == "POST"
    assert urlsplit(join.request.url).path == "/api/fabric/conversations/join"
    assert_common_headers(join, has_body=True)
    assert body_of(join) == {"from_fabric_address_id": ME, "fabric_address_ids": [THEM, ME]}
    assert isinstance(result, JoinResult)
    assert result.group_id == GROUP and result.conversation_id == GROUP
    assert result.address_ids == (THEM, ME)
    assert result.raw["group_id"] == GROUP


def test_join_always_posts_but_subscriber_info_is_cached(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    client.conversation.join(THEM)
    client.conversation.join(THEM)
    assert len(calls_to(rsps, "subscriber/info")) == 1
    assert len(calls_to(rsps, "conversations/join")) == 2


def test_join_without_group_id_is_a_clear_error(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    rsps.post(f"{BASE}/api/fabric/conversations/join", json={"unexpected": True})
    with pytest.raises(ResponseValidationError, match="group_id"):
        client.conversation.join(THEM)


def test_subscriber_without_address_is_a_clear_error(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/subscriber/info", json={"id": "s", "fabric_addresses": []})
    with pytest.raises(ResponseValidationError, match="fabric_addresses"):
        client.conversation.join(THEM)
    assert calls_to(rsps, "join") == []


def test_get_conversation_messages_joins_lazily_then_reads(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.get(
        f"{BASE}/api/fabric/conversations/{GROUP}/messages",
        json={"data": [message(1, 1700000002.5), message(2, 1700000001)], "links": {}},
    )
    page = client.conversation.get_conversation_messages(THEM, page_size=2)
    assert [c.request.method for c in rsps.calls] == ["GET", "POST", "GET"]
    read = rsps.calls[2]
    assert urlsplit(read.request.url).path == f"/api/fabric/conversations/{GROUP}/messages"
    assert query(read) == {"page_size": "2"}
    assert_common_headers(read, has_body=False)
    first, second = page.data
    assert isinstance(first, ConversationMessage)
    assert (first.id, first.conversation_id, first.user_id, first.ts, first.text) == (
        "m1", GROUP, THEM, 1700000002.5, "text 1",
    )
    assert second.id == "m2"
    # second read: group cached, no new join
    client.conversation.get_conversation_messages(THEM)
    assert len(calls_to(rsps, "conversations/join")) == 1
    assert len(calls_to(rsps, "subscriber/info")) == 1


def test_group_id_is_quoted_in_the_path(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps, group="a/b c")
    rsps.get(f"{BASE}/api/fabric/conversations/a%2Fb%20c/messages", json={"data": [], "links": {}})
    client.conversation.get_conversation_messages(THEM)
    assert urlsplit(rsps.calls[-1].request.url).path == "/api/fabric/conversations/a%2Fb%20c/messages"


def test_get_messages_sends_filters(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json={"data": [message(1, 1700000050)], "links": {}})
    since = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)  # 1700000000
    page = client.conversation.get_messages(limit=3, since=since, until=1700000100.5)
    (call,) = rsps.calls
    assert urlsplit(call.request.url).path == "/api/fabric/messages"
    assert query(call) == {"page_size": "3", "since": "1700000000", "until": "1700000100.5"}
    assert [m.id for m in page] == ["m1"]


def test_limit_alone_caps_the_page_size_at_100(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json={"data": [], "links": {}})
    client.conversation.get_messages(limit=1000)
    assert query(rsps.calls[0]) == {"page_size": "100"}


def test_explicit_page_size_wins_over_limit(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json={"data": [], "links": {}})
    client.conversation.get_messages(limit=3, page_size=50)
    assert query(rsps.calls[0]) == {"page_size": "50"}


def test_send_message_body_and_result(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.post(
        f"{BASE}/api/fabric/messages",
        json={"id": "m9", "group_id": GROUP, "from_fabric_address_id": ME, "text": "hello"},
    )
    sent = client.conversation.send_message(THEM, "hello")
    post = rsps.calls[-1]
    assert post.request.method == "POST" and urlsplit(post.request.url).path == "/api/fabric/messages"
    assert_common_headers(post, has_body=True)
    assert body_of(post) == {"group_id": GROUP, "from_fabric_address_id": ME, "text": "hello"}
    assert isinstance(sent, SentMessage)
    assert (sent.id, sent.conversation_id, sent.user_id, sent.text) == ("m9", GROUP, ME, "hello")


def test_send_message_with_metadata_and_details(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.post(f"{BASE}/api/fabric/messages", body="")
    sent = client.conversation.send_message(THEM, "hi", metadata={"k": [1, 2]}, details={"d": None})
    assert body_of(rsps.calls[-1]) == {
        "group_id": GROUP, "from_fabric_address_id": ME, "text": "hi",
        "metadata": {"k": [1, 2]}, "details": {"d": None},
    }
    # an empty answer: the result is filled from the request
    assert (sent.id, sent.conversation_id, sent.user_id, sent.text) == (None, GROUP, ME, "hi")
    assert sent.raw == {}


def test_send_message_decodes_the_old_table_answer(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.post(f"{BASE}/api/fabric/messages", json={"table": {"text": "hi", "conversation_id": "cx"}})
    sent = client.conversation.send_message(THEM, "hi")
    assert sent.conversation_id == "cx" and sent.text == "hi"


def test_repeated_sends_join_once(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.post(f"{BASE}/api/fabric/messages", json={"id": "x"})
    for _ in range(3):
        client.conversation.send_message(THEM, "again")
    assert len(calls_to(rsps, "conversations/join")) == 1
    assert len(calls_to(rsps, r"/api/fabric/messages$")) == 3


def test_explicit_join_refreshes_the_cached_group(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    rsps.post(f"{BASE}/api/fabric/conversations/join", json={"group_id": "old"})
    rsps.post(f"{BASE}/api/fabric/conversations/join", json={"group_id": "new"})
    rsps.post(f"{BASE}/api/fabric/messages", json={})
    client.conversation.join(THEM)
    client.conversation.join(THEM)
    client.conversation.send_message(THEM, "x")
    assert body_of(rsps.calls[-1])["group_id"] == "new"


def test_get_subscriber_info(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    info = client.conversation.get_subscriber_info()
    assert info.address_id == ME and info.id == "sub-1" and info.display_name == "Me"
    assert client.conversation.get_subscriber_info() is info
    assert len(rsps.calls) == 1


def test_bad_message_item_is_a_clear_error(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json={"data": ["not an object"], "links": {}})
    with pytest.raises(ResponseValidationError, match="ConversationMessage"):
        client.conversation.get_messages()


@pytest.mark.parametrize(
    "body, match",
    [([1, 2], "JSON object"), ({"links": {}}, "no 'data'"), ({"data": {"a": 1}}, "not a list")],
)
def test_bad_envelope_is_a_clear_error(client: Client, rsps: responses.RequestsMock, body: Any, match: str) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json=body)
    with pytest.raises(ResponseValidationError, match=match):
        client.conversation.get_messages()


def test_conversation_repr(client: Client) -> None:
    assert "fabric.swire.io" in repr(client.conversation)
    assert TOKEN not in repr(client.conversation)


def test_json_bodies_are_compact_utf8(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.post(f"{BASE}/api/fabric/messages", json={})
    client.conversation.send_message(THEM, "héllo ✓")
    raw: Any = rsps.calls[-1].request.body
    assert isinstance(raw, bytes)
    assert json.loads(raw.decode("utf-8"))["text"] == "héllo ✓"


def test_per_call_timeout_reaches_every_request(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    rsps.get(
        f"{BASE}/api/fabric/conversations/{GROUP}/messages",
        json={"data": [], "links": {"next": f"{BASE}/api/fabric/conversations/{GROUP}/messages?p=2"}},
        match=[responses.matchers.query_string_matcher("")],
    )
    rsps.get(
        f"{BASE}/api/fabric/conversations/{GROUP}/messages",
        json={"data": [], "links": {}},
        match=[responses.matchers.query_string_matcher("p=2")],
    )
    list(client.conversation.get_conversation_messages(THEM, timeout=(1, 2)))
    assert [c.request.req_kwargs["timeout"] for c in rsps.calls] == [(1.0, 2.0)] * 4
    rsps.post(f"{BASE}/api/fabric/messages", json={})
    client.conversation.send_message(THEM, "x", timeout=None)
    client.conversation.send_message(THEM, "y")
    assert [c.request.req_kwargs["timeout"] for c in rsps.calls[4:]] == [None, (5.0, 30.0)]


def test_bad_per_call_timeout_is_rejected_before_any_request(client: Client, rsps: responses.RequestsMock) -> None:
    from signalwire_conversation import ValidationError

    for call in (
        lambda: client.conversation.get_messages(timeout=0),
        lambda: client.conversation.get_conversations(timeout="1"),
        lambda: client.conversation.get_conversation_messages(THEM, timeout=-1),
        lambda: client.conversation.send_message(THEM, "x", timeout=(1, 2, 3)),
        lambda: client.conversation.join(THEM, timeout=True),
    ):
        with pytest.raises(ValidationError, match="^timeout: "):
            call()
    assert list(rsps.calls) == []
