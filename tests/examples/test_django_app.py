"""The Django example: the view through Django's test client, the ``listen`` management command
through ``call_command``, both against the emulator."""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import Iterator

import pytest

from .conftest import EXAMPLES, People, needs_emulator

django = pytest.importorskip("django", reason="django is not installed (it is in the 'test' extra)")
pytestmark = needs_emulator

PROJECT = os.path.join(EXAMPLES, "django_app")


@pytest.fixture(scope="module")
def django_project() -> Iterator[None]:
    sys.path.insert(0, PROJECT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    yield
    sys.path.remove(PROJECT)


@pytest.fixture
def site(django_project: None, people: People) -> Iterator[People]:
    from django.test import override_settings

    from chat.signalwire import close_client

    emu = people.emulator
    with override_settings(SIGNALWIRE_TOKEN=people.alice.token, SIGNALWIRE_BASE_URL=emu.base_url,
                           SIGNALWIRE_PROJECT_ID=emu.project_id, SIGNALWIRE_API_TOKEN=emu.api_token,
                           SIGNALWIRE_SPACE=emu.space_url):
        yield people
        close_client()


def test_view_lists_and_sends(site: People) -> None:
    from django.test import Client as HTTP

    http = HTTP()
    url = f"/conversations/{site.bob.address_id}/messages"
    answer = http.get(url, {"limit": "2"})
    assert answer.status_code == 200
    assert [m["text"] for m in answer.json()["messages"]] == ["history 5", "history 4"]

    sent = http.post(url, {"text": "from django"})
    assert sent.status_code == 201 and sent.json()["text"] == "from django"
    assert http.get(url, {"limit": "1"}).json()["messages"][0]["text"] == "from django"
    assert http.post(url, {}).status_code == 400


class _Out(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if "listening" in self.getvalue():
            self.listening.set()
        return n


def test_listen_command_handles_live_messages(site: People) -> None:
    from django.core.management import call_command

    out = _Out()
    errors: list = []

    def run() -> None:
        try:
            call_command("listen", count=2, timeout=15, stdout=out)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert out.listening.wait(10), out.getvalue()
    site.emulator.send_message(site.bob, site.alice.address_id, "first live")
    site.emulator.send_message(site.bob, site.alice.address_id, "second live")
    thread.join(20)
    assert not thread.is_alive() and not errors, errors
    lines = out.getvalue().splitlines()
    assert lines[0] == "listening"
    assert [line.split(": ", 1)[1] for line in lines[1:]] == ["first live", "second live"]


def test_listen_command_reports_a_bad_token(site: People) -> None:
    from django.core.management import CommandError, call_command

    site.emulator.revoke_token(site.alice.token)
    with pytest.raises(CommandError):
        call_command("listen", count=1, timeout=5, stdout=io.StringIO())


def test_each_user_acts_as_themselves(site: People) -> None:
    from django.test import Client as HTTP

    http = HTTP()
    url = f"/me/conversations/{site.bob.address_id}/messages"
    answer = http.get(url, {"limit": "2"}, headers={"X-User": "alice"})
    assert answer.status_code == 200
    assert [(m["from"], m["text"]) for m in answer.json()["messages"]] == [("Bob", "history 5"), ("Bob", "history 4")]
    sent = http.post(url, {"text": "hi from erin"}, headers={"X-User": "erin"})
    assert sent.status_code == 201 and sent.json()["user_id"] == site.emulator.subscriber("erin").address_id
    assert http.get(url).status_code == 401
    http.get(url, headers={"X-User": "alice"})
    assert site.emulator.request_count("POST", "^/api/fabric/subscribers/tokens$") == 2
