"""The Flask example, through Flask's test client, against the emulator."""

from __future__ import annotations

import importlib.util
import os
import sys
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
