"""The CLI without a backend: parsing, help, errors that happen before any request."""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys

import pytest

from signalwire_conversation import cli
from signalwire_conversation.cli import format_table, main, parse_time

from .conftest import REPO, run_cli

COMMANDS = ["whoami", "conversations", "messages", "send", "join", "tail", "demo", "emulator", "relay", "relay-status", "consume"]


def fake_token(ch: str = "puc.example.com") -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "dir", "typ": "SAT", "ch": ch}).encode()).decode().rstrip("=")
    return f"{header}..aXY.Y2lwaGVy.dGFn"


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "SIGNALWIRE_TOKEN" in out


@pytest.mark.parametrize("command", ["whoami", "conversations", "messages", "send", "join", "tail", "demo"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert f"signalwire-conversation {command}" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from signalwire_conversation import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["messages", "--limit", "x"], "--limit"),
        (["messages", "--limit", "0"], "--limit"),
        (["messages", "--since", "yesterday-ish"], "--since"),
        (["send", "only-an-address"], "TEXT"),
        (["send", "a", "b", "--metadata", "[1]"], "--metadata"),
        (["frobnicate"], "invalid choice"),
        (["conversations", "--bogus"], "--bogus"),
        (["tail", "--count", "-1"], "--count"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(argv: list, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv + ["--token", fake_token()]) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, needle)
    assert captured.out == ""


def test_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conversations"]) == 2
    assert_one_error_line(capsys.readouterr().err, "no token", "SIGNALWIRE_TOKEN")


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """A well-formed (fake) token in SIGNALWIRE_TOKEN."""
    value = fake_token()
    monkeypatch.setenv("SIGNALWIRE_TOKEN", value)
    return value


def test_since_after_until(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["messages", "--since", "2000", "--until", "1000"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--since")


def test_unreachable_host(token: str, closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["conversations", "--base-url", f"http://127.0.0.1:{closed_port}"]
    assert main(argv + ["--max-retries", "0", "--timeout", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n"
    assert captured.out == ""


def test_unreachable_host_json_prints_nothing_on_stdout(
    token: str, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--json", "messages", "--base-url", f"http://127.0.0.1:{closed_port}"]
    assert main(argv + ["--max-retries", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n"


def test_token_never_printed_on_error(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    token = fake_token()
    main(["conversations", "--debug", "--token", token, "--base-url", f"http://127.0.0.1:{closed_port}", "--max-retries", "0"])
    captured = capsys.readouterr()
    assert token not in captured.err + captured.out


def test_global_options_before_or_after_the_command(
    token: str, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert main(["--base-url", url, "--max-retries", "0", "whoami"]) == 1
    assert "cannot connect to" in capsys.readouterr().err
    assert main(["whoami", "--base-url", url, "--max-retries", "0"]) == 1
    assert "cannot connect to" in capsys.readouterr().err


def test_missing_extra_prints_the_pip_line() -> None:
    with pytest.raises(cli.CLIError) as info:
        cli.extras._import_optional("a_module_that_does_not_exist_xyz", "emulator", "emulator")
    assert 'pip install "signalwire-conversation[emulator]"' in info.value.message
    assert info.value.code == 2


def test_missing_websockets_end_to_end() -> None:
    code = (
        "import sys; sys.modules['websockets'] = None\n"
        "from signalwire_conversation.cli import main\n"
        "sys.exit(main(['emulator']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, 'pip install "signalwire-conversation[emulator]"')


def test_help_and_import_stay_light() -> None:
    code = (
        "import sys, signalwire_conversation.cli as c\n"
        "heavy = [m for m in ('signalwire_conversation.testing', 'signalwire_conversation.fanout',"
        " 'websockets', 'redis', 'signalwire_conversation.demo') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_python_dash_m() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: signalwire-conversation" in proc.stdout


def test_python_dash_m_on_the_cli_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "signalwire_conversation.cli", "--help"], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: signalwire-conversation" in proc.stdout


def test_demo_refuses_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--json")


# -- parse_time and the table -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1714564800", 1714564800.0),
        ("1714564800.5", 1714564800.5),
        ("1714564800000", 1714564800.0),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T14:00:00+02:00", 1714564800.0),
        ("2024-05-01 12:00:00+00:00", 1714564800.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == expected


def test_parse_time_naive_is_local() -> None:
    import datetime as dt

    assert parse_time("2024-05-01T12:00:00") == dt.datetime(2024, 5, 1, 12).timestamp()
    assert parse_time("2024-05-01") == dt.datetime(2024, 5, 1).timestamp()


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800)])
def test_parse_time_durations(text: str, seconds: float) -> None:
    assert parse_time(text, now=1_000_000.0) == 1_000_000.0 - seconds


@pytest.mark.parametrize("text", ["", "soon", "2024-13-01", "5y", "12:00"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time(text)


def test_format_table_aligns_and_cuts() -> None:
    table = format_table(["A", "LONG HEADER", "TEXT"], [["x", "y", "hello"], ["wide cell", "z", "t"]])
    lines = table.splitlines()
    assert lines[0] == "A          LONG HEADER  TEXT"
    assert lines[1] == "x          y            hello"
    assert lines[2] == "wide cell  z            t"
    cut = format_table(["A", "B"], [["a", "b" * 100]], width=20)
    assert all(len(line) <= 20 for line in cut.splitlines())
    assert cut.splitlines()[1].endswith("…")


def test_format_event_remembers_names_for_recovered_messages() -> None:
    from signalwire_conversation import ConversationMessageEvent
    from signalwire_conversation.cli import format_event

    names: dict = {}
    live = ConversationMessageEvent(id="1", conversation_id="g", user_id="u", ts=1714564800, text="hi",
                                    user_name="Bob", conversation_name="Alice, Bob")
    recovered = ConversationMessageEvent(id="2", conversation_id="g", user_id="u", ts=1714564801, text="again",
                                         recovered=True)
    assert format_event(live, names).endswith("Bob → Alice, Bob: hi")
    assert format_event(recovered, names).endswith("Bob → Alice, Bob: again [recovered]")
    assert "(you)" in format_event(ConversationMessageEvent(id="3", text="mine", is_author=True, user_id="me"))
