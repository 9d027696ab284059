"""REST endpoints of docs/protocol.md §1, over real sockets with ``requests``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import Api

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,method",
    [
        ("/api/fabric/subscriber/info", "GET"),
        ("/api/fabric/conversations", "GET"),
        ("/api/fabric/messages", "GET"),
        ("/api/fabric/messages", "POST"),
        ("/api/fabric/conversations/join", "POST"),
        ("/api/fabric/conversations/x/messages", "GET"),
        ("/api/fabric/addresses", "GET"),
    ],
)
def test_every_endpoint_needs_a_bearer_token(emu: Emulator, alice: Subscriber, path: str, method: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {alice.token}"}):
        r = requests.request(method, emu.base_url + path, headers=headers, json={} if method == "POST" else None,
                             timeout=5)
        assert r.status_code == 401
        assert r.json() == fixture("openapi-error-401.json")
        assert r.headers["Content-Type"] == "application/json"


def test_expired_tampered_and_revoked_tokens_get_401(emu: Emulator, alice: Subscriber,
                                                      api_factory: Callable[[str], Api]) -> None:
    expired = emu.issue_token(alice, ttl=-1)
    assert api_factory(expired).get("/api/fabric/subscriber/info").status_code == 401
    parts = alice.token.split(".")
    parts[3] = ("y" if parts[3][0] == "x" else "x") + parts[3][1:]  # (always a change)
    assert api_factory(".".join(parts)).get("/api/fabric/subscriber/info").status_code == 401
    other = emu.issue_token(alice)
    api = api_factory(other)
    assert api.get("/api/fabric/subscriber/info").status_code == 200
    emu.revoke_token(other)
    assert api.get("/api/fabric/subscriber/info").status_code == 401
    assert api_factory(alice.token).get("/api/fabric/subscriber/info").status_code == 200


def test_token_is_a_sat_shaped_jwe_naming_the_emulator(emu: Emulator, alice: Subscriber) -> None:
    import base64

    parts = alice.token.split(".")
    assert len(parts) == 5 and parts[1] == "" and all(parts[i] for i in (0, 2, 3, 4))
    header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    assert header == {"alg": "dir", "enc": "A256GCM", "ch": emu.ch, "typ": "SAT"}
    assert list(header) == list(fixture("jwe-header-sat-with-ch.json"))
    assert emu.ch == f"puc.localhost:{emu.port}"


# -- subscriber info and addresses ------------------------------------------------------------


def test_subscriber_info_has_the_fixture_shape(emu: Emulator, alice: Subscriber, api_factory: Callable[[str], Api]) -> None:
    r = api_factory(alice.token).get("/api/fabric/subscriber/info")
    assert r.status_code == 200
    body = r.json()
    expected = fixture("v4-test-subscriber-info.json")
    assert set(expected) <= set(body)
    assert body["id"] == alice.subscriber_id
    address = body["fabric_addresses"][0]
    assert set(expected["fabric_addresses"][0]) <= set(address)
    assert address["id"] == alice.address_id and address["type"] == "subscriber"
    assert set(address["channels"]) == {"audio", "messaging", "video"}


def test_addresses_lookup(emu: Emulator, alice: Subscriber, bob: Subscriber, api_factory: Callable[[str], Api]) -> None:
    api = api_factory(alice.token)
    r = api.get(f"/api/fabric/addresses/{bob.address_id}")
    assert r.status_code == 200 and r.json()["display_name"] == "Bob"
    assert api.get("/api/fabric/addresses/nope").json() == fixture("openapi-error-404.json")
    listed = api.get("/api/fabric/addresses", name="bob").json()
    assert [a["id"] for a in listed["data"]] == [bob.address_id]
    assert set(listed["links"]) >= {"self", "first"}


# -- join ---------------------------------------------------------------------------------------


def test_join_answers_a_group_and_is_idempotent_from_both_sides(
    emu: Emulator, alice: Subscriber, bob: Subscriber, api_factory: Callable[[str], Api]
) -> None:
    a, b = api_factory(alice.token), api_factory(bob.token)
    r = a.post("/api/fabric/conversations/join",
               {"from_fabric_address_id": alice.address_id, "fabric_address_ids": [bob.address_id, alice.address_id]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == set(fixture("v3-client-test-join-response.json"))
    assert body["from_fabric_address_id"] == alice.address_id
    assert set(body["fabric_address_ids"]) == {alice.address_id, bob.address_id}
    assert a.join(alice, bob.address_id) == body["group_id"]
    assert b.join(bob, alice.address_id) == body["group_id"]
    assert emu.group_id(alice, bob.address_id) == body["group_id"]
    # without our own address in the list, and without from_fabric_address_id: same group
    r = b.post("/api/fabric/conversations/join", {"fabric_address_ids": [alice.address_id]})
    assert r.json()["group_id"] == body["group_id"]


def test_join_errors(emu: Emulator, alice: Subscriber, bob: Subscriber, api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    only_me = a.post("/api/fabric/conversations/join",
                     {"from_fabric_address_id": alice.address_id, "fabric_address_ids": [alice.address_id]})
    assert only_me.status_code == 422
    err = only_me.json()
    assert set(err) == set(fixture("openapi-error-422-subscriber-token.json"))
    assert err["statusCode"] == 422 and set(err["errors"][0]) == {"type", "code", "message", "attribute", "url"}
    assert err["errors"][0]["attribute"] == "fabric_address_ids"
    assert a.post("/api/fabric/conversations/join", {"fabric_address_ids": ["nobody"]}).status_code == 422
    assert a.post("/api/fabric/conversations/join", {"fabric_address_ids": []}).status_code == 422
    assert a.post("/api/fabric/conversations/join", {}).json()["errors"][0]["code"] == "missing_required_parameter"
    not_me = a.post("/api/fabric/conversations/join",
                    {"from_fabric_address_id": bob.address_id, "fabric_address_ids": [bob.address_id]})
    assert not_me.status_code == 403 and not_me.json() == {"error": "Forbidden"}
    bad = a.session.post(a.url("/api/fabric/conversations/join"), data="{nope",
                         headers={"Content-Type": "application/json"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "invalid_json"


# -- send ---------------------------------------------------------------------------------------


def test_send_stores_and_answers_the_message(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                              api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    gid = a.join(alice, bob.address_id)
    r = a.send(alice, gid, "hello", metadata={"k": 1}, details={"d": True})
    assert r.status_code == 201
    m = r.json()
    assert m["group_id"] == gid and m["from_fabric_address_id"] == alice.address_id and m["text"] == "hello"
    assert m["type"] == "message" and m["subtype"] == "chat" and m["kind"] is None
    assert m["metadata"] == {"k": 1} and m["details"] == {"d": True} and isinstance(m["ts"], float)
    # the v3 (@signalwire/client 0.0.1) sender field is accepted too
    assert a.post("/api/fabric/messages", {"group_id": gid, "from_address_id": alice.address_id, "text": "v3"}).status_code == 201
    assert [x["text"] for x in emu.messages(gid)] == ["v3", "hello"]
    one = a.get(f"/api/fabric/conversations/{gid}/messages/{m['id']}")
    assert one.status_code == 200 and one.json() == m


def test_send_errors(emu: Emulator, alice: Subscriber, bob: Subscriber, api_factory: Callable[[str], Api]) -> None:
    carol = emu.add_subscriber("carol")
    a, c = api_factory(alice.token), api_factory(carol.token)
    gid = a.join(alice, bob.address_id)
    assert a.send(alice, "no-such-group", "x").status_code == 404
    assert c.send(carol, gid, "x").status_code == 404  # not a member
    assert a.post("/api/fabric/messages", {"group_id": gid}).status_code == 422
    assert a.send(alice, gid, "").status_code == 422
    assert a.send(alice, gid, "x", metadata="nope").status_code == 422
    assert a.post("/api/fabric/messages", {"group_id": gid, "from_fabric_address_id": bob.address_id,
                                           "text": "spoof"}).status_code == 403
    assert emu.messages(gid) == []


# -- lists --------------------------------------------------------------------------------------


def _texts(page: Dict[str, Any]) -> List[str]:
    return [m["text"] for m in page["data"]]


def test_message_pages_are_newest_first_with_absolute_links(
    emu: Emulator, alice: Subscriber, bob: Subscriber, api_factory: Callable[[str], Api]
) -> None:
    a = api_factory(alice.token)
    gid = emu.group_id(alice, bob.address_id)
    emu.send_messages(bob, gid, [f"m{i}" for i in range(7)])
    p1 = a.get(f"/api/fabric/conversations/{gid}/messages", page_size=3).json()
    assert _texts(p1) == ["m6", "m5", "m4"]
    links = p1["links"]
    assert set(links) == {"self", "first", "next"}
    for url in links.values():
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == emu.base_url and parts.path.endswith(f"/{gid}/messages")
    assert parse_qs(urlsplit(links["next"]).query)["page_size"] == ["3"]
    p2 = a.get(links["next"]).json()
    assert _texts(p2) == ["m3", "m2", "m1"] and set(p2["links"]) == {"self", "first", "next", "prev"}
    p3 = a.get(p2["links"]["next"]).json()
    assert _texts(p3) == ["m0"] and "next" not in p3["links"] and "prev" in p3["links"]
    assert _texts(a.get(p3["links"]["prev"]).json()) == ["m3", "m2", "m1"]
    assert _texts(a.get(p2["links"]["prev"]).json()) == ["m6", "m5", "m4"]
    assert _texts(a.get(p3["links"]["first"]).json()) == ["m6", "m5", "m4"]
    assert a.get(p2["links"]["self"]).json() == p2
    # a message posted while paging shifts nothing: the cursor is a keyset
    emu.send_message(bob, gid, "late")
    assert _texts(a.get(links["next"]).json()) == ["m3", "m2", "m1"]


def test_default_and_invalid_page_sizes(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                        api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    gid = emu.group_id(alice, bob.address_id)
    emu.send_messages(alice, gid, [str(i) for i in range(60)])
    assert len(a.get(f"/api/fabric/conversations/{gid}/messages").json()["data"]) == 50
    emu.default_page_size = 7
    assert len(a.get("/api/fabric/messages").json()["data"]) == 7
    for bad in ("0", "-1", "x", "100000"):
        r = a.get("/api/fabric/messages", page_size=bad)
        assert r.status_code == 422 and r.json()["errors"][0]["attribute"] == "page_size"
    r = a.get("/api/fabric/messages", page_token="garbage")
    assert r.status_code == 422 and r.json()["errors"][0]["attribute"] == "page_token"


def test_since_and_until_are_honoured_or_ignored(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                                 api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    gid = emu.group_id(alice, bob.address_id)
    t = 1_700_000_000.0
    for i in range(4):
        emu.send_message(bob, gid, f"t{i}", ts=t + 1000 * i)
    path = f"/api/fabric/conversations/{gid}/messages"
    assert _texts(a.get(path, since=t + 1000).json()) == ["t3", "t2", "t1"]  # since and until are inclusive
    assert _texts(a.get(path, until=t + 1000).json()) == ["t1", "t0"]
    assert _texts(a.get(path, since=t + 1000, until=t + 2000).json()) == ["t2", "t1"]
    assert _texts(a.get(path, since=int((t + 1000) * 1000)).json()) == ["t3", "t2", "t1"]  # milliseconds
    page = a.get(path, since=t + 500, page_size=1).json()
    assert f"since={t + 500}" in page["links"]["next"]
    assert _texts(a.get(page["links"]["next"]).json()) == ["t2"]
    assert _texts(a.get("/api/fabric/messages", until=t).json()) == ["t0"]
    assert a.get(path, since="yesterday").status_code == 422
    emu.honour_time_filters = False
    assert _texts(a.get(path, since=t + 1000, until=t + 2000).json()) == ["t3", "t2", "t1", "t0"]


def test_backdated_messages_are_listed_by_ts(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                             api_factory: Callable[[str], Api]) -> None:
    gid = emu.group_id(alice, bob.address_id)
    emu.send_message(bob, gid, "now")
    emu.send_message(bob, gid, "old", ts=1000.0)
    assert _texts(api_factory(alice.token).get(f"/api/fabric/conversations/{gid}/messages").json()) == ["now", "old"]


def test_all_messages_spans_my_conversations_only(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                                  api_factory: Callable[[str], Api]) -> None:
    carol = emu.add_subscriber("carol")
    emu.send_message(alice, bob.address_id, "ab1")
    emu.send_message(carol, alice.address_id, "ca1")
    emu.send_message(bob, carol.address_id, "bc1")
    emu.send_message(bob, alice.address_id, "ab2")
    assert _texts(api_factory(alice.token).get("/api/fabric/messages").json()) == ["ab2", "ca1", "ab1"]
    assert _texts(api_factory(carol.token).get("/api/fabric/messages").json()) == ["bc1", "ca1"]


def test_conversations_newest_activity_first(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                             api_factory: Callable[[str], Api]) -> None:
    carol = emu.add_subscriber("carol")
    g_ab = emu.group_id(alice, bob.address_id)
    g_ac = emu.group_id(alice, carol.address_id)
    a = api_factory(alice.token)
    assert [c["group_id"] for c in a.get("/api/fabric/conversations").json()["data"]] == [g_ac, g_ab]
    emu.send_message(bob, g_ab, "bump")
    page = a.get("/api/fabric/conversations").json()
    assert [c["group_id"] for c in page["data"]] == [g_ab, g_ac]
    item = page["data"][0]
    assert set(item) == {"group_id", "from_fabric_address_id", "name", "metadata", "created_at", "last_message_at"}
    assert item["from_fabric_address_id"] == bob.address_id
    assert isinstance(item["created_at"], int) and item["last_message_at"] >= item["created_at"]
    p1 = a.get("/api/fabric/conversations", page_size=1).json()
    assert [c["group_id"] for c in p1["data"]] == [g_ab]
    assert [c["group_id"] for c in a.get(p1["links"]["next"]).json()["data"]] == [g_ac]
    assert a.get("/api/fabric/conversations").json()["links"].keys() == {"self", "first"}
    assert api_factory(emu.add_subscriber("zed").token).get("/api/fabric/conversations").json()["data"] == []


def test_group_conversation_and_v3_sender_field(alice: Subscriber) -> None:
    with Emulator(sender_field="from_address_id", ping_interval=None) as emu:
        a = emu.add_subscriber("a")
        b = emu.add_subscriber("b")
        c = emu.add_subscriber("c")
        gid = emu.join(a, [b.address_id, c.address_id])
        m = emu.send_message(c, gid, "to all")
        assert m["from_address_id"] == c.address_id and "from_fabric_address_id" not in m
        r = requests.get(f"{emu.base_url}/api/fabric/conversations/{gid}/messages",
                         headers={"Authorization": f"Bearer {b.token}"}, timeout=5)
        assert _texts(r.json()) == ["to all"]


def test_unknown_paths_and_methods(emu: Emulator, alice: Subscriber, api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    assert a.get("/api/fabric/nope").json() == fixture("openapi-error-404.json")
    assert requests.get(emu.base_url + "/", timeout=5).status_code == 404
    r = a.session.delete(a.url("/api/fabric/messages"), timeout=5)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert a.get("/api/fabric/conversations/join").status_code == 405


def test_keep_alive_and_chunked_bodies(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                       api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    for _ in range(5):
        assert a.get("/api/fabric/subscriber/info").status_code == 200
    body = json.dumps({"fabric_address_ids": [bob.address_id]}).encode()
    r = a.session.post(a.url("/api/fabric/conversations/join"), data=iter([body[:10], body[10:]]),
                       headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 200 and r.json()["group_id"]
    assert r.headers["X-Request-Id"]
