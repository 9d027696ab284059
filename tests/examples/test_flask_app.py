"""The Flask example, through Flask's test client, against the emulator."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Iterator

import pytest

from .conftest import EXAMPLES, People, needs_emulator

flask = pytest.importorskip("flask", reason="flask is not installed (it is in the 'test' extra)")
pytestmark = needs_emulator


@pytest.fixture
def app_module() -> Iterator[Any]:
    path = os.path.join(EXAMPLES, "flask_app", "app.py")
    spec = importlib.util.spec_from_file_location("example_flask_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    if module._client is not None:
        module._client.close()
    if module._clients is not None:
        module._clients.close()


def test_list_and_send(people: People, app_module: Any) -> None:
    http = app_module.app.test_client()  # the module-level app, whose client comes from the env

    answer = http.get(f"/conversations/{people.bob.address_id}/messages?limit=3")
    assert answer.status_code == 200
    assert [m["text"] for m in answer.get_json()] == ["history 5", "history 4", "history 3"]

    sent = http.post(f"/conversations/{people.bob.address_id}/messages", data={"text": "from flask"})
    assert sent.status_code == 201 and sent.get_json()["text"] == "from flask"

    sent = http.post(f"/conversations/{people.bob.address_id}/messages", json={"text": "as json"})
    assert sent.status_code == 201

    answer = http.get(f"/conversations/{people.bob.address_id}/messages?limit=2")
    assert [m["text"] for m in answer.get_json()] == ["as json", "from flask"]

    conversations = http.get("/conversations").get_json()
    assert len(conversations) == 1


def test_errors_become_http_answers(people: People, app_module: Any) -> None:
    from signalwire_conversation import Client

    with Client(token=people.alice.token, base_url=people.emulator.base_url) as client:
        http = app_module.create_app(client).test_client()
        assert http.post(f"/conversations/{people.bob.address_id}/messages", data={}).status_code == 400
        missing = http.get("/conversations/00000000-0000-4000-8000-000000000000/messages")
        assert missing.status_code in (404, 502) and "error" in missing.get_json()


def test_each_user_acts_as_themselves(people: People, app_module: Any) -> None:
    http = app_module.app.test_client()  # per-user clients from the project credentials
    emu = people.emulator
    url = f"/me/conversations/{people.bob.address_id}/messages"

    answer = http.get(url + "?limit=2", headers={"X-User": "alice"})
    assert answer.status_code == 200
    assert answer.get_json() == [
        {"from": "Bob", "text": "history 5", "ts": answer.get_json()[0]["ts"]},
        {"from": "Bob", "text": "history 4", "ts": answer.get_json()[1]["ts"]},
    ]
    # a user seen for the first time becomes a subscriber, and writes as themselves
    sent = http.post(url, data={"text": "hello from dave"}, headers={"X-User": "dave@example.com"})
    assert sent.status_code == 201
    dave = emu.subscriber("dave@example.com")
    assert sent.get_json()["user_id"] == dave.address_id
    assert http.get(url, headers={"X-User": "alice"}).get_json()[0]["text"] == "history 5"  # not alice's

    assert http.get(url).status_code == 401  # nobody signed in
    clients = app_module._clients
    assert "alice" in clients and "dave@example.com" in clients
    for _ in range(3):
        http.get(url, headers={"X-User": "alice"})
    assert emu.request_count("POST", "^/api/fabric/subscribers/tokens$") == 2  # one token per user
