"""Every CLI command against the emulator: exit status and output, human and --json."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
from typing import Any, List

import pytest

from signalwire_conversation import cli
from signalwire_conversation.cli import local_time, main
from signalwire_conversation.cli._json import CONVERSATION_KEYS, EVENT_KEYS, JOIN_KEYS, MESSAGE_KEYS, SUBSCRIBER_KEYS
from signalwire_conversation.models import timestamp_to_datetime

from .conftest import REPO, EventStream, World, needs_emulator
from .test_cli_offline import assert_one_error_line

pytestmark = needs_emulator


def json_lines(out: str) -> List[Any]:
    return [json.loads(line) for line in out.splitlines()]


def test_whoami(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("whoami")) == 0
    out = capsys.readouterr().out
    assert world.alice.address_id in out and "address ids" in out
    assert main(world.args("whoami", "--json")) == 0
    (info,) = json_lines(capsys.readouterr().out)
    assert world.alice.address_id in info["address_ids"]


def test_conversations_table(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("conversations")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "LAST", "MESSAGE", "CREATED"]
    assert len(lines) == 3  # bob and carol
    group = world.emulator.group_id(world.alice, world.bob.address_id)
    assert any(group in line for line in lines[1:])


def test_conversations_json_and_limit(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("conversations", "--json")) == 0
    conversations = json_lines(capsys.readouterr().out)
    assert len(conversations) == 2 and all("id" in c for c in conversations)
    assert main(world.args("conversations", "--json", "--limit", "1")) == 0
    assert len(json_lines(capsys.readouterr().out)) == 1


def test_messages_of_a_conversation(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("messages", world.bob.address_id, "--limit", "5")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "FROM", "TEXT"]
    assert [line.rsplit("  ", 1)[-1].strip() for line in lines[1:]] == [f"message {n}" for n in (11, 10, 9, 8, 7)]
    newest = world.sent[-1]
    assert local_time(timestamp_to_datetime(newest["ts"])) in lines[1]


def test_messages_json_pages_through(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("--json", "messages", world.bob.address_id, "--page-size", "5")) == 0
    messages = json_lines(capsys.readouterr().out)
    assert [m["text"] for m in messages] == [f"message {n}" for n in range(11, -1, -1)]
    assert world.emulator.request_count("GET", r".*messages.*") >= 3  # 5 + 5 + 2


def test_messages_since_and_until(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("--json", "messages", world.bob.address_id)) == 0
    ts = [m["ts"] for m in json_lines(capsys.readouterr().out)]
    since, until = ts[6], ts[2]  # newest first
    assert main(world.args("--json", "messages", world.bob.address_id, "--since", str(since), "--until", str(until))) == 0
    texts = [m["text"] for m in json_lines(capsys.readouterr().out)]
    assert texts == [f"message {n}" for n in (9, 8, 7, 6, 5)]


def test_all_messages(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("messages")) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["TIME", "CONVERSATION", "FROM", "TEXT"]
    assert "hello from carol" in out and "message 0" in out


def test_messages_empty(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("messages", world.bob.address_id, "--since", "1w", "--until", "6d")) == 0
    assert capsys.readouterr().out.strip() == "no messages"


def test_send(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("send", world.bob.address_id, "sent from the CLI")) == 0
    assert capsys.readouterr().out.startswith("sent message ")
    assert main(world.args("send", world.bob.address_id, "again", "--json", "--metadata", '{"k": 1}')) == 0
    (sent,) = json_lines(capsys.readouterr().out)
    assert sent["text"] == "again"
    assert main(world.args("--json", "messages", world.bob.address_id, "--limit", "2")) == 0
    assert [m["text"] for m in json_lines(capsys.readouterr().out)] == ["again", "sent from the CLI"]


def test_join(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    group = world.emulator.group_id(world.alice, world.bob.address_id)
    assert main(world.args("join", world.bob.address_id)) == 0
    out = capsys.readouterr().out
    assert group in out and world.bob.address_id in out
    assert main(world.args("join", world.bob.address_id, "--json")) == 0
    (result,) = json_lines(capsys.readouterr().out)
    assert result["group_id"] == group


MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    "argv", [["messages", MISSING], ["send", MISSING, "hi"], ["join", MISSING], ["--json", "messages", MISSING]]
)
def test_unknown_address(argv: List[str], world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args(*argv)) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: no such address: {MISSING}\n"
    assert captured.out == ""


def test_unknown_address_on_tail(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(world.args("tail", "--address-id", MISSING)) == 1
    assert capsys.readouterr().err == f"error: no such address: {MISSING}\n"


def test_own_address(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    own = world.alice.address_id
    assert main(world.args("join", own)) == 1
    assert capsys.readouterr().err == (
        f"error: {own} is your own address: give the other party's (see 'signalwire-conversation conversations')\n"
    )


def test_json_shapes_are_one_per_model(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    def one(*argv: str) -> Any:
        assert main(world.args("--json", *argv)) == 0
        (line,) = json_lines(capsys.readouterr().out)
        return line

    sent = one("send", world.bob.address_id, "shape", "--metadata", '{"k": 1}')
    stored = one("messages", world.bob.address_id, "--limit", "1")
    assert tuple(sent) == tuple(stored) == MESSAGE_KEYS
    assert sent == stored  # what send printed is what the history holds
    assert stored["text"] == "shape" and stored["metadata"] == {"k": 1}
    assert stored["time"].endswith("+00:00")
    assert tuple(one("conversations", "--limit", "1")) == CONVERSATION_KEYS
    assert tuple(one("join", world.bob.address_id)) == JOIN_KEYS
    assert tuple(one("whoami")) == SUBSCRIBER_KEYS


def test_debug_prints_requests_and_responses(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """What the --debug help promises: each request and response, with the start of the body."""
    assert main(world.args("--debug", "messages", world.bob.address_id, "--limit", "1")) == 0
    err = capsys.readouterr().err
    assert "request POST " in err and "/api/fabric/conversations/join" in err
    assert "response GET " in err and "-> 200" in err and "message 11" in err
    assert world.alice.token not in err


def test_bad_token_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.revoke_token(world.alice.token)
    assert main(world.args("conversations")) == 1
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, "authentication failed", "401")
    assert world.alice.token not in captured.err


def test_bad_token_on_tail_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.revoke_token(world.alice.token)
    assert main(world.args("tail")) == 1
    assert_one_error_line(capsys.readouterr().err, "authentication failed")


def test_server_error_after_retries(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.fail_next(500, times=10)
    assert main(world.args("conversations", "--max-retries", "0")) == 1
    assert_one_error_line(capsys.readouterr().err, "500")


def test_progress_on_a_terminal_only(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli._output._Progress, "DELAY", 0.0)
    monkeypatch.setattr(cli._output._Progress, "INTERVAL", 0.0)

    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    for as_json, expect in ((False, True), (True, False)):
        out, err = io.StringIO(), TTY()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        argv = world.args("messages", world.bob.address_id) + (["--json"] if as_json else [])
        assert main(argv) == 0
        assert ("read 12 messages" in err.getvalue()) is expect, err.getvalue()
        assert "read " not in out.getvalue()


def _tail_in_thread(world: World, monkeypatch: pytest.MonkeyPatch, *argv: str) -> "tuple[threading.Thread, io.StringIO, List[int]]":
    out, err = EventStream("\n"), EventStream("listening")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    subscribed = threading.Event()
    real_subscribe = cli.tail._subscribe

    def subscribe(*args: Any) -> Any:  # a subscription delivers what is stored after it returned
        subscription = real_subscribe(*args)
        subscribed.set()
        return subscription

    monkeypatch.setattr(cli.tail, "_subscribe", subscribe)
    status: List[int] = []
    thread = threading.Thread(target=lambda: status.append(main(world.args("tail", *argv))), daemon=True)
    thread.start()
    assert subscribed.wait(10), err.getvalue()
    if "--json" not in argv:  # the note comes first
        assert err.event.wait(10), err.getvalue()
    return thread, out, status


def test_tail_prints_live_messages(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, out, status = _tail_in_thread(world, monkeypatch, "--count", "2")
    world.emulator.send_message(world.bob, world.alice.address_id, "live one")
    world.emulator.send_message(world.carol, world.alice.address_id, "live two")
    thread.join(10)
    assert not thread.is_alive() and status == [0]
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(": live one") and "bob" in lines[0].lower()
    assert lines[1].endswith(": live two")


def test_tail_json_and_address_filter(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, out, status = _tail_in_thread(world, monkeypatch, "--json", "--count", "1", "--address-id", world.bob.address_id)
    world.emulator.send_message(world.carol, world.alice.address_id, "not this one")
    world.emulator.send_message(world.bob, world.alice.address_id, "this one")
    thread.join(10)
    assert status == [0]
    (event,) = json_lines(out.getvalue())
    assert event["text"] == "this one"
    assert tuple(event) == EVENT_KEYS and event["is_author"] is False and event["recovered"] is False


def test_tail_ctrl_c_is_a_clean_exit(world: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalwire_conversation", "tail"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=world.env(),
        cwd=REPO,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "listening" in proc.stderr.readline()
        world.emulator.send_message(world.bob, world.alice.address_id, "before ctrl-c")
        assert proc.stdout.readline().rstrip().endswith(": before ctrl-c")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for needle in ("get_conversations()", "limit=5", "page_size=50", "since=", "join(", "subscribe(", "← live", "Are you there?", "Done in"):
        assert needle in out, needle


def test_emulator_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--help"]) == 0
    assert "signalwire-conversation emulator" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["relay", "relay-status", "consume"])
def test_fanout_commands_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert f"signalwire-conversation {command}" in capsys.readouterr().out
