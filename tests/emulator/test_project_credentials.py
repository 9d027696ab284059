"""The ``emulator`` command's project credentials: printed as lines to paste, and they work."""

from __future__ import annotations

import argparse
import io
import json
import threading
from typing import Dict, List

import pytest

from signalwire_conversation import Client, SubscriberTokens
from signalwire_conversation.testing import Emulator, add_emulator_arguments, run_emulator

from waiting import wait_until


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    return parser.parse_args(["--ping-interval", "0", *argv])


def test_the_printed_lines_are_a_working_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    stop = threading.Event()
    result: List[int] = []
    t = threading.Thread(
        target=lambda: result.append(run_emulator(_args("--subscriber", "bob"), out=out, stop=stop))
    )
    t.start()
    try:
        wait_until(lambda: "Ctrl+C" in out.getvalue(), 10, "the emulator's banner")
        lines = out.getvalue().splitlines()
        pasted: Dict[str, str] = {}
        for line in lines:  # whole lines "NAME=value", as a .env file or a shell takes them
            name, sep, value = line.partition("=")
            if sep and name.startswith("SIGNALWIRE_") and " " not in line:
                pasted[name] = value
        assert set(pasted) == {"SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_SPACE",
                               "SIGNALWIRE_BASE_URL", "SIGNALWIRE_RELAY_URL"}
        for name, value in pasted.items():
            monkeypatch.setenv(name, value)
        bob_line = next(line for line in lines if line.strip().startswith("bob "))
        bob_address = bob_line.split("address", 1)[1].strip()
        with Client.for_subscriber("ann") as ann, Client.for_subscriber("bob") as bob:
            assert ann.conversation.get_subscriber_info().display_name == "ann"  # created on first mint, named by its reference
            assert bob.conversation.get_subscriber_info().address_id == bob_address  # the existing bob
            ann.conversation.send_message(bob_address, "hi bob")
            (message,) = bob.conversation.get_messages()
            assert (message.text, message.user_name) == ("hi bob", "ann")
    finally:
        stop.set()
        t.join(10)
    assert result == [0]


def test_fixed_project_credentials() -> None:
    out = io.StringIO()
    stop = threading.Event()
    t = threading.Thread(target=run_emulator, args=(_args("--json", "--project-id", "p-1", "--api-token", "PTabc123"),),
                         kwargs={"out": out, "stop": stop})
    t.start()
    try:
        wait_until(lambda: out.getvalue().endswith("\n"), 10, "the JSON line")
        info = json.loads(out.getvalue())
        assert info["project_id"] == "p-1" and info["api_token"] == "PTabc123"
        assert info["space"] == info["base_url"]
        assert SubscriberTokens("p-1", "PTabc123", info["space"]).token_for("zed")
    finally:
        stop.set()
        t.join(10)


def test_a_guest_sees_only_its_allowed_addresses(signalwire_emulator: Emulator) -> None:
    import requests

    emu = signalwire_emulator
    support, other = emu.add_subscriber("support"), emu.add_subscriber("other")
    auth = (emu.project_id, emu.api_token)
    answer = requests.post(emu.base_url + "/api/fabric/guests/tokens",
                           json={"allowed_addresses": [support.address_id]}, auth=auth, timeout=5)
    assert answer.status_code == 201
    bearer = {"Authorization": f"Bearer {answer.json()['token']}"}

    def get(path: str) -> "requests.Response":
        return requests.get(emu.base_url + path, headers=bearer, timeout=5)

    assert get(f"/api/fabric/addresses/{support.address_id}").json()["display_name"] == "Support"
    assert get(f"/api/fabric/addresses/{other.address_id}").status_code == 403
    listed = {a["id"] for a in get("/api/fabric/addresses").json()["data"]}
    me = get("/api/fabric/subscriber/info").json()["fabric_addresses"][0]["id"]
    assert listed == {support.address_id, me}
    join = requests.post(emu.base_url + "/api/fabric/conversations/join", headers=bearer, timeout=5,
                         json={"fabric_address_ids": [other.address_id]})
    assert join.status_code == 403
    unknown = requests.post(emu.base_url + "/api/fabric/guests/tokens",
                            json={"allowed_addresses": ["nope"]}, auth=auth, timeout=5)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["attribute"] == "allowed_addresses"
