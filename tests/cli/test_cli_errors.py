"""The command line's errors, word for word: connection failures said as a person would, the
command line's flags instead of Python arguments, one wording per numeric rule, the token's
sources (``--token-file``, ``SIGNALWIRE_TOKEN``, ``--token`` with a warning)."""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from signalwire_conversation.cli import build_parser, client_from_args, main
from signalwire_conversation.cli._client import TOKEN_WARNING

from .conftest import REPO, needs_emulator
from .test_cli_offline import fake_token

PROG = "signalwire-conversation"


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = fake_token()
    monkeypatch.setenv("SIGNALWIRE_TOKEN", value)
    return value


def run(argv: List[str], capsys: pytest.CaptureFixture[str]) -> Tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_no_python_advice(err: str) -> None:
    for python in ("Client(", "allow_insecure", "=True", "token=..."):
        assert python not in err, err


# -- where the server is not ------------------------------------------------------------------


def test_connection_refused(token: str, closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["whoami", "--base-url", f"http://127.0.0.1:{closed_port}", "--max-retries", "0"], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n"


def test_unknown_host(token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    code, _, err = run(["whoami", "--base-url", "https://nowhere.example.test", "--max-retries", "0"], capsys)
    assert code == 1
    assert err == (
        "error: cannot connect to nowhere.example.test:443 (unknown host); check the host name in the URL or "
        "the token\n"
    )


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def plain_http_server() -> Iterator[int]:
    """A plain-HTTP server on loopback (it answers a TLS hello with an HTTP error page)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_https_against_a_plain_http_port(
    token: str, plain_http_server: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["whoami", "--base-url", f"https://127.0.0.1:{plain_http_server}", "--max-retries", "0"], capsys)
    assert code == 1
    assert err == (
        f"error: cannot connect to 127.0.0.1:{plain_http_server} (TLS handshake failed: the server does not "
        "speak TLS on this port); use http:// for a plain-HTTP server such as the local emulator\n"
    )


@pytest.fixture
def tls_world(tmp_path: Path) -> Iterator[Tuple[Any, Any, str]]:
    """An emulator serving https/wss with a certificate from a CA this machine does not trust."""
    trustme = pytest.importorskip("trustme")
    from signalwire_conversation.testing import Emulator

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with Emulator(ssl_context=context, ping_interval=None) as emu:
        yield emu, emu.add_subscriber("alice"), str(bundle)


@needs_emulator
def test_untrusted_certificate_and_the_hint_that_fixes_it(
    tls_world: Tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, alice, bundle = tls_world
    monkeypatch.setenv("SIGNALWIRE_TOKEN", alice.token)
    port = emu.base_url.rsplit(":", 1)[1]
    code, _, err = run(["whoami", "--base-url", emu.base_url, "--max-retries", "0"], capsys)
    assert code == 1
    assert err == (
        f"error: cannot connect to 127.0.0.1:{port} (TLS certificate not trusted: unable to get local issuer "
        "certificate); if your network inspects TLS, point REQUESTS_CA_BUNDLE at its CA certificate; for a "
        "local test server, pass its certificate the same way\n"
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)  # the hint, followed
    code, out, err = run(["whoami", "--base-url", emu.base_url, "--json"], capsys)
    assert (code, err) == (0, "")
    assert alice.address_id in out


@needs_emulator
def test_http_against_a_tls_port(
    tls_world: Tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, alice, _ = tls_world
    monkeypatch.setenv("SIGNALWIRE_TOKEN", alice.token)
    plain = "http://" + emu.base_url.split("://", 1)[1]
    code, _, err = run(["whoami", "--base-url", plain, "--max-retries", "0"], capsys)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert err.rstrip().endswith("; if the server uses TLS, use https://"), err


def test_tail_against_an_unreachable_relay_fails_once_and_stops(
    token: str, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("signalwire-")}
    code, out, err = run(["tail", "--relay-url", f"ws://127.0.0.1:{closed_port}", "--timeout", "2"], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n"
    # nothing keeps retrying behind the error: the listener's threads are gone
    leftover = {t for t in threading.enumerate() if t.name.startswith("signalwire-")} - before
    assert not [t for t in leftover if t.is_alive()], leftover


# -- the command line's words, not Python's ----------------------------------------------------


def test_plain_http_elsewhere_names_the_flag(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["whoami", "--base-url", "http://example.com"], capsys)
    assert code == 2
    assert err == (
        "error: --base-url 'http://example.com' is not encrypted and its host is not a loopback address; "
        "use https://, or pass --allow-insecure if you really mean it\n"
    )
    assert_no_python_advice(err)


def test_plain_http_from_the_environment_names_the_variable(
    token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", "http://example.com")
    code, _, err = run(["whoami"], capsys)
    assert code == 2
    assert err.startswith("error: SIGNALWIRE_BASE_URL 'http://example.com' is not encrypted"), err
    assert err.rstrip().endswith("pass --allow-insecure if you really mean it")


def test_allow_insecure_lets_plain_http_through(token: str) -> None:
    parser = build_parser()
    args = parser.parse_args(["whoami", "--base-url", "http://example.com", "--allow-insecure"])
    with client_from_args(args) as client:  # builds, sends nothing
        assert client.base_url == "http://example.com"
        assert client.relay_url == "ws://example.com"


@pytest.mark.parametrize(
    "source, expected_where",
    [("file", "--token-file {path}"), ("env", "SIGNALWIRE_TOKEN")],
)
def test_malformed_token_names_where_it_came_from(
    source: str, expected_where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_text("not-a-token\n")
    argv = ["whoami"]
    if source == "file":
        argv += ["--token-file", str(path)]
    else:
        monkeypatch.setenv("SIGNALWIRE_TOKEN", "not-a-token")
    code, _, err = run(argv, capsys)
    assert code == 2
    where = expected_where.format(path=path)
    assert err == (
        "error: the token is malformed: expected a JWE (5 dot-separated parts) or a JWT (3 parts), got 1 "
        f"part(s); check {where}: it must hold a subscriber access token (SAT)\n"
    )
    assert_no_python_advice(err)


def test_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["conversations"], capsys)
    assert code == 2
    assert err == (
        "error: no token: pass --token-file PATH or set SIGNALWIRE_TOKEN to a subscriber access token, or pass "
        "--subscriber REFERENCE with SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE set (or try "
        f"'{PROG} demo', which needs none)\n"
    )


# -- the token's sources -----------------------------------------------------------------------


def test_token_on_the_command_line_warns(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    token = fake_token()
    code, _, err = run(["whoami", "--token", token, "--base-url", f"http://127.0.0.1:{closed_port}", "--max-retries", "0"], capsys)
    assert code == 1
    assert err.splitlines() == [TOKEN_WARNING, f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)"]
    assert TOKEN_WARNING == (
        "warning: --token puts the token in the process list and the shell history; prefer --token-file PATH "
        "or SIGNALWIRE_TOKEN"
    )
    assert token not in err


def test_token_file_and_environment_do_not_warn(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_text("  " + fake_token() + "\n\n")  # surrounding whitespace is ignored
    url = ["--base-url", f"http://127.0.0.1:{closed_port}", "--max-retries", "0"]
    code, _, err = run(["whoami", "--token-file", str(path)] + url, capsys)
    assert (code, err) == (1, f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n")
    monkeypatch.setenv("SIGNALWIRE_TOKEN", fake_token())
    code, _, err = run(["whoami"] + url, capsys)
    assert (code, err) == (1, f"error: cannot connect to 127.0.0.1:{closed_port} (connection refused)\n")


def test_token_file_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from signalwire_conversation.cli import token_from_args

    path = tmp_path / "token"
    path.write_text("from-the-file")
    monkeypatch.setenv("SIGNALWIRE_TOKEN", "from-the-environment")
    assert token_from_args(argparse.Namespace(token_file=str(path))) == "from-the-file"
    assert token_from_args(argparse.Namespace()) == "from-the-environment"


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "error: cannot read --token-file {path}: No such file or directory\n"),
        ("  \n", "error: --token-file {path} is empty\n"),
    ],
)
def test_unusable_token_file(
    content: Any, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    code, _, err = run(["whoami", "--token-file", str(path)], capsys)
    assert (code, err) == (2, expected.format(path=path))


def test_token_given_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "token"
    path.write_text(fake_token())
    code, _, err = run(["whoami", "--token-file", str(path), "--token", fake_token()], capsys)
    assert (code, err) == (2, "error: give the token once: --token-file or --token, not both\n")


# -- numbers: one rule, one wording ------------------------------------------------------------


@pytest.mark.parametrize(
    "command, option, value",
    [
        ("messages", "--limit", "0"),
        ("messages", "--limit", "-1"),
        ("messages", "--page-size", "0"),
        ("messages", "--page-size", "-5"),
        ("conversations", "--limit", "0"),
        ("conversations", "--page-size", "-1"),
        ("tail", "-n", "0"),
        ("tail", "--count", "-1"),
    ],
)
def test_one_or_more(command: str, option: str, value: str, token: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([command, option, value], capsys)
    shown = "-n/--count" if option in ("-n", "--count") else option
    assert (code, out) == (2, "")
    assert err == f"error: argument {shown}: must be 1 or more, got {int(value)} (see '{PROG} {command} --help')\n"


def test_zero_or_more(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["whoami", "--max-retries", "-1"], capsys)
    assert (code, err) == (2, f"error: argument --max-retries: must be 0 or more, got -1 (see '{PROG} whoami --help')\n")


# -- help --------------------------------------------------------------------------------------


def _all_parsers() -> Iterator[argparse.ArgumentParser]:
    from signalwire_conversation.cli._args import _Parser
    from signalwire_conversation.cli.fanout_args import (
        add_consume_arguments,
        add_relay_arguments,
        add_relay_status_arguments,
    )

    parser = build_parser()
    yield parser
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, child in sub.choices.items():
        if name not in ("relay", "relay-status", "consume", "emulator"):  # those have their own parsers
            yield child
    for add in (add_relay_arguments, add_relay_status_arguments, add_consume_arguments):
        own = _Parser(prog=f"{PROG} x")
        add(own)
        yield own


def test_every_argument_has_help() -> None:
    for parser in _all_parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (parser.prog, action.option_strings or action.dest)


@pytest.mark.parametrize(
    "command", ["", "whoami", "conversations", "messages", "send", "join", "tail", "token", "demo", "relay", "relay-status", "consume"]
)
def test_help_fits_80_columns(command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(([command] if command else []) + ["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, too_long


@pytest.mark.parametrize("command", ["relay", "relay-status", "consume"])
def test_fanout_help_without_the_redis_extra(command: str) -> None:
    extra = ", '--group', 'g'" if command == "consume" else ""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from signalwire_conversation.cli import main\n"
        f"status = main([{command!r}, '--help'])\n"
        "assert 'redis' not in sys.modules or sys.modules['redis'] is None\n"
        f"sys.exit(status or main([{command!r}, '--redis', 'redis://127.0.0.1:1/0'{extra}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert f"usage: {PROG} {command}" in proc.stdout and "--redis URL" in proc.stdout, proc.stderr
    # and running it, rather than asking for help, says what to install
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"error: '{PROG} {command}' needs the optional dependency 'redis'; install it with: "
        'pip install "signalwire-conversation[redis]"\n'
    )


def test_fanout_defaults_in_the_help_are_the_fanout_defaults() -> None:
    pytest.importorskip("redis")
    from signalwire_conversation import fanout
    from signalwire_conversation.cli import fanout_args

    assert fanout_args.DEFAULT_LEASE_TTL == fanout.DEFAULT_LEASE_TTL
    assert fanout_args.DEFAULT_MAXLEN == fanout.DEFAULT_MAXLEN
    assert fanout_args.DEFAULT_SEEN_TTL == fanout.DEFAULT_SEEN_TTL


# -- times carry their zone --------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, expected",
    [("UTC0", "2024-05-01 12:00:00+00:00"), ("CET-1CEST,M3.5.0,M10.5.0/3", "2024-05-01 14:00:00+02:00")],
)
def test_local_times_show_their_offset(zone: str, expected: str) -> None:
    code = (
        "import datetime as dt\n"
        "from signalwire_conversation.cli import local_time\n"
        "print(local_time(dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)))\n"
    )
    env = dict(os.environ, TZ=zone)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


# -- bad values are refused before anything is sent, in the command line's names ---------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["send", "", "hi"], "argument ADDRESS_ID: must not be empty (see '{prog} send --help')"),
        (["send", "a", ""], "argument TEXT: must not be empty (see '{prog} send --help')"),
        (["messages", "  "], "argument ADDRESS_ID: must not be empty (see '{prog} messages --help')"),
        (["join", ""], "argument ADDRESS_ID: must not be empty (see '{prog} join --help')"),
        (["tail", "--address-id", ""], "argument --address-id: must not be empty (see '{prog} tail --help')"),
        (
            ["send", "a", "b", "--metadata", "[1]"],
            "argument --metadata: must be a JSON object, got '[1]' (see '{prog} send --help')",
        ),
        (
            ["messages", "--since", "100000000000000000"],
            "--since: must be seconds (below 1e11) or milliseconds (below 1e14) since the epoch, got 100000000000000.0",
        ),
    ],
)
def test_bad_values_in_command_line_names(
    argv: List[str], expected: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert err == "error: " + expected.format(prog=PROG) + "\n"


def test_json_nested_too_deeply_is_one_short_line(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    code, _, err = run(["send", "a", "b", "--details", deep], capsys)
    assert code == 2
    assert err.startswith("error: argument --details: nested too deeply: '{\"a\": [[[[") and err.count("\n") == 1
    assert len(err) < 200


@needs_emulator
def test_tail_with_an_untrusted_certificate(
    tls_world: Tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The websocket's certificate failure is fatal at once (not retried), and said the same way."""
    emu, alice, bundle = tls_world
    monkeypatch.setenv("SIGNALWIRE_TOKEN", alice.token)
    port = emu.relay_url.rsplit(":", 1)[1]
    code, out, err = run(["tail", "--base-url", emu.base_url, "--timeout", "10"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"error: cannot connect to 127.0.0.1:{port} (TLS certificate not trusted: unable to get local issuer "
        "certificate); if your network inspects TLS, point REQUESTS_CA_BUNDLE at its CA certificate; for a "
        "local test server, pass its certificate the same way\n"
    )
