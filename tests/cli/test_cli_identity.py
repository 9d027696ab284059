"""The command line with project credentials: ``--subscriber REFERENCE`` on every command, the
``token`` command, and sender names in ``messages`` and ``tail``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List

import pytest

from signalwire_conversation.cli import main

from .conftest import REPO, World, needs_emulator
from .test_cli_commands import _tail_in_thread

pytestmark = needs_emulator
PROG = "signalwire-conversation"


@pytest.fixture
def project(world: World, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """The emulator's project credentials in the environment (no token anywhere)."""
    env = world.emulator.environment()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run(argv: List[str], capsys: pytest.CaptureFixture[str]) -> "tuple[int, str, str]":
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["whoami"],
        ["conversations"],
        ["messages", "BOB"],
        ["messages"],
        ["send", "BOB", "from the subscriber"],
        ["join", "BOB"],
    ],
)
def test_every_api_command_accepts_subscriber(
    argv: List[str], world: World, project: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [world.bob.address_id if a == "BOB" else a for a in argv]
    code, out, err = run(["--json", *argv, "--subscriber", "alice"], capsys)
    assert (code, err) == (0, ""), err
    assert out.strip()
    # alice is the emulator's own "alice": the commands act as her
    code, out, _ = run(["whoami", "--json", "--subscriber", "alice"], capsys)
    assert json.loads(out)["address_ids"] == [world.alice.address_id]


def test_subscriber_and_a_token_are_exclusive(world: World, project: Dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["whoami", "--subscriber", "alice", "--token-file", world.token_file], capsys)
    assert (code, err) == (2, "error: give --subscriber or a token (--token-file, --token), not both\n")


def test_subscriber_without_project_credentials(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", "x")
    monkeypatch.setenv("SIGNALWIRE_SPACE", "example.signalwire.com")
    code, _, err = run(["whoami", "--subscriber", "alice"], capsys)
    assert (code, err) == (
        2,
        "error: --subscriber needs the project credentials: no SIGNALWIRE_PROJECT_ID; set SIGNALWIRE_PROJECT_ID, "
        "SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE\n",
    )


def test_refused_project_credentials(
    world: World, project: Dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", "PTwrong")
    for argv in (["whoami", "--subscriber", "alice"], ["token", "alice"]):
        code, out, err = run(argv, capsys)
        assert (code, out) == (1, "")
        assert err.startswith("error: authentication failed: HTTP 401 (POST ") and err.count("\n") == 1, err
        assert "the project credentials were refused" in err
        assert "check SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE" in err
        assert "--token" not in err and "PTwrong" not in err


def test_token_prints_a_working_token_and_nothing_else(
    world: World, project: Dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(["token", "dora"], capsys)  # a new reference: the subscriber is created
    assert (code, err) == (0, "")
    assert out.count("\n") == 1 and out.endswith("\n")
    token = out.strip()
    assert token.count(".") == 4  # a JWE, alone on its line
    for name in ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_SPACE"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNALWIRE_TOKEN", token)
    code, out, err = run(["whoami", "--json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out)["address_ids"] == [world.emulator.subscriber("dora").address_id]


def test_token_in_a_pipeline(world: World, project: Dict[str, str]) -> None:
    """``SIGNALWIRE_TOKEN=$(signalwire-conversation token REF)``: stdout is the token alone."""
    env = dict(project)
    env["PYTHONPATH"] = REPO
    proc = subprocess.run(
        [sys.executable, "-m", "signalwire_conversation", "token", "alice", "--debug"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert proc.stdout == token + "\n"
    assert "/api/fabric/subscribers/tokens" in proc.stderr  # --debug goes to stderr ...
    assert token not in proc.stderr and project["SIGNALWIRE_API_TOKEN"] not in proc.stderr  # ... redacted


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["token"], "error: the following arguments are required: REFERENCE (see '{prog} token --help')\n"),
        (["token", " "], "error: argument REFERENCE: must not be empty (see '{prog} token --help')\n"),
        (["--json", "token", "alice"], "error: token has no --json output: it prints the token alone\n"),
    ],
)
def test_token_usage_errors(argv: List[str], expected: str, project: Dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (2, "", expected.format(prog=PROG))


def test_messages_show_sender_names(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(world.args("messages", world.bob.address_id, "--limit", "2"), capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "FROM", "TEXT"]
    bob, alice = world.bob.display_name, world.alice.display_name
    assert bob and alice
    assert bob in lines[2] and lines[2].endswith("message 10")  # bob sent the even ones
    assert alice in lines[1] and lines[1].endswith("message 11")
    assert world.bob.address_id not in out
    code, out, _ = run(world.args("--json", "messages", world.bob.address_id, "--limit", "1"), capsys)
    assert json.loads(out)["user_name"] == alice


def test_send_json_carries_the_sender_name(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world.args("--json", "send", world.bob.address_id, "named"), capsys)
    assert code == 0
    assert json.loads(out)["user_name"] == world.alice.display_name


def test_tail_shows_sender_names(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, out, status = _tail_in_thread(world, monkeypatch, "--count", "1")
    world.emulator.send_message(world.carol, world.alice.address_id, "who am I")
    thread.join(10)
    assert status == [0]
    (line,) = out.getvalue().splitlines()
    assert f"  {world.carol.display_name} → " in line and line.endswith(": who am I")


def test_tail_with_subscriber(world: World, project: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(world, "args", lambda *argv: list(argv) + ["--subscriber", "alice"])
    thread, out, status = _tail_in_thread(world, monkeypatch, "--json", "--count", "1")
    world.emulator.send_message(world.bob, world.alice.address_id, "to the subscriber")
    thread.join(10)
    assert status == [0]
    event = json.loads(out.getvalue())
    assert event["text"] == "to the subscriber" and event["user_name"] == world.bob.display_name
