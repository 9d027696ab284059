"""The ``signalwire-conversation`` command line: a thin layer over the public API.

::

    signalwire-conversation demo                      # a tour against a local emulator
    signalwire-conversation conversations             # needs SIGNALWIRE_TOKEN or --token
    signalwire-conversation messages ADDRESS_ID --limit 20 --since 2h
    signalwire-conversation send ADDRESS_ID "hello"
    signalwire-conversation tail                      # live messages until Ctrl+C

Human output is an aligned table with local times; ``--json`` prints one JSON object per line
for scripts (and nothing else on stdout). Expected failures print one ``error: ...`` line on
stderr and exit non-zero: 1 when the server or the network failed, 2 for a bad argument or
configuration, 130 when interrupted. ``--debug`` shows the SDK's logs (tokens redacted) and the
traceback of an unexpected error.

The commands that need an optional extra (``emulator``, ``relay``, ``consume``, ``demo``) import
it only when they run, so ``--help`` and the plain API commands stay light.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import logging
import os
import queue
import re
import shutil
import sys
import time
from types import ModuleType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    TextIO,
    Tuple,
)

from ._timestamps import MILLISECONDS_THRESHOLD
from ._version import __version__
from .errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    SignalWireError,
    ValidationError,
)

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    from .client import Client

__all__ = [
    "main",
    "build_parser",
    "parse_time",
    "CLIError",
    "UsageError",
    "add_connection_arguments",
    "client_from_args",
    "token_from_args",
    "positive_int",
    "non_negative_int",
    "positive_seconds",
]

PROG = "signalwire-conversation"
LOGGER_NAME = "signalwire_conversation"

#: Exit codes.
EXIT_OK = 0
EXIT_FAILURE = 1  # the server or the network failed
EXIT_USAGE = 2  # a bad argument or configuration (argparse's own convention)
EXIT_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT)

# Commands that hand their arguments to a parser defined by an optional subpackage.
# command -> (module, adder, runner, extra, what it is)
_DELEGATED: Dict[str, Tuple[str, str, str, str, str]] = {
    "emulator": (
        "signalwire_conversation.testing",
        "add_emulator_arguments",
        "run_emulator",
        "emulator",
        "run a local SignalWire Conversation emulator (REST + websocket on one loopback port)",
    ),
    "relay": (
        "signalwire_conversation.fanout",
        "add_relay_arguments",
        "run_relay",
        "redis",
        "run one listener for a token and publish every message to Redis (scaling out)",
    ),
    "consume": (
        "signalwire_conversation.fanout",
        "add_consume_arguments",
        "run_consume",
        "redis",
        "read the messages a relay published to Redis and print them",
    ),
}

# The optional dependency behind each extra, for the "pip install" hint.
_EXTRA_MODULES = {"emulator": ("websockets",), "redis": ("redis",)}


class CLIError(Exception):
    """An expected failure of a command: printed as one ``error:`` line, then exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CLIError):
    """A bad command line (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, raised instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = re.compile(r"^\s*[+-]?\d+(?:\.\d+)?\s*$")


def parse_time(value: str, *, now: Optional[float] = None) -> float:
    """Seconds since the epoch from a command-line time.

    Accepts epoch seconds (``1714564800``; milliseconds are recognised too), ISO 8601
    (``2024-05-01``, ``2024-05-01T12:00:00Z``, ``2024-05-01 14:00+02:00``; without an offset the
    local time zone is assumed), or a duration meaning "that long ago" (``90s``, ``15m``,
    ``2h``, ``7d``, ``1w``).

    >>> parse_time("1714564800")
    1714564800.0
    >>> parse_time("2024-05-01T12:00:00Z")
    1714564800.0
    >>> parse_time("2h", now=1714564800.0)
    1714557600.0
    """
    text = value.strip()
    if _NUMBER.match(text):
        number = float(text)
        return number / 1000.0 if abs(number) >= MILLISECONDS_THRESHOLD else number
    duration = _DURATION.match(text)
    if duration:
        amount, unit = float(duration.group(1)), duration.group(2)
        return (time.time() if now is None else now) - amount * _UNITS[unit]
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        parsed = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {value!r} (use epoch seconds, ISO 8601 such as "
            f"2024-05-01T12:00:00Z, or a duration such as 15m, 2h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive: the local time zone
    return parsed.timestamp()


def non_negative_int(value: str) -> int:
    """An argparse ``type``: a whole number, 0 or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def positive_int(value: str) -> int:
    """An argparse ``type``: a whole number, 1 or more."""
    number = non_negative_int(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return number


def positive_seconds(value: str) -> float:
    """An argparse ``type``: a number of seconds, more than 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {value}")
    return number


def _json_object(value: str) -> Dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {value!r}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {value!r}")
    return data


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

_EPILOG = """\
Token: --token or the SIGNALWIRE_TOKEN environment variable (a subscriber access token).
Hosts come from the token; --base-url / --relay-url (or SIGNALWIRE_BASE_URL /
SIGNALWIRE_RELAY_URL) override them, e.g. for the local emulator.

Times (--since, --until): epoch seconds, ISO 8601 (2024-05-01T12:00:00Z; local time without
an offset) or a duration meaning that long ago (90s, 15m, 2h, 7d).

Exit status: 0 success, 1 the server or the network failed, 2 bad usage or configuration,
130 interrupted. New here? Run: signalwire-conversation demo
"""


def add_connection_arguments(
    parser: "argparse._ActionsContainer",
    *,
    suppress_defaults: bool = False,
    token_help: str = "subscriber access token (default: $SIGNALWIRE_TOKEN)",
) -> None:
    """``--token``, ``--base-url`` and ``--relay-url`` (read back by :func:`client_from_args`),
    on a parser or an argument group; also used by the commands of optional subpackages.

    ``suppress_defaults``: leave an option out of the namespace unless given (subcommands, so
    a value given before the command name is not overwritten).
    """
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument("--token", default=default, metavar="TOKEN", help=token_help)
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help="REST base URL (default: from the token, or $SIGNALWIRE_BASE_URL)",
    )
    parser.add_argument(
        "--relay-url",
        default=default,
        metavar="URL",
        help="websocket URL (default: from --base-url or the token, or $SIGNALWIRE_RELAY_URL)",
    )


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every API command takes, before or after the command name.

    On the subcommands their default is ``SUPPRESS`` so a value given before the command name
    is not overwritten by the subcommand's default.
    """

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    add_connection_arguments(group, suppress_defaults=not top)
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=default(None),
        metavar="SECONDS",
        help="per-request timeout in seconds (default: the SDK's, 5 s connect / 30 s read)",
    )
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=default(None),
        metavar="N",
        help="retries after the first attempt of a failed request (default: the SDK's)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON object per line instead of a table",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show the SDK's logs on stderr (tokens redacted) and tracebacks",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``signalwire-conversation`` (the delegated commands' options are
    added by their own packages when they run)."""
    parser = _Parser(
        prog=PROG,
        description="Talk to the SignalWire Conversation API from a terminal.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, description: Optional[str] = None) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text[:1].upper() + help_text[1:] + ".",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(p, top=False)
        return p

    command("whoami", "show the subscriber the token belongs to and its address")

    p = command("conversations", "list the conversations of the token's subscriber")
    p.add_argument("--limit", type=positive_int, metavar="N", help="show at most N conversations")
    p.add_argument("--page-size", type=positive_int, metavar="N", help="items per request")

    p = command(
        "messages",
        "show stored messages, newest first",
        "Show the stored messages of one conversation (ADDRESS_ID is the other party's address)"
        " or, without ADDRESS_ID, of every conversation. Newest first.",
    )
    p.add_argument("address_id", nargs="?", metavar="ADDRESS_ID", help="the conversation's address")
    p.add_argument("--limit", type=positive_int, metavar="N", help="show at most N messages")
    p.add_argument("--since", type=parse_time, metavar="T", help="only messages at or after T")
    p.add_argument("--until", type=parse_time, metavar="T", help="only messages at or before T")
    p.add_argument("--page-size", type=positive_int, metavar="N", help="items per request")

    p = command("send", "send a text message to an address")
    p.add_argument("address_id", metavar="ADDRESS_ID", help="the address to send to")
    p.add_argument("text", metavar="TEXT", help="the message text")
    p.add_argument("--metadata", type=_json_object, metavar="JSON", help="a JSON object")
    p.add_argument("--details", type=_json_object, metavar="JSON", help="a JSON object")

    p = command("join", "join the conversation with an address and show its id and members")
    p.add_argument("address_id", metavar="ADDRESS_ID")

    p = command(
        "tail",
        "print new messages live as they arrive, until Ctrl+C",
        "Print new messages live as they arrive over the websocket, until Ctrl+C (a clean exit)."
        " Messages missed during a network blip are recovered and printed in order.",
    )
    p.add_argument("--address-id", metavar="A", help="only the conversation with address A")
    p.add_argument("-n", "--count", type=positive_int, metavar="N", help="exit after N messages")

    p = command(
        "demo",
        "a tour of the SDK against an in-process emulator (nothing leaves this machine)",
        "Start a local emulator, seed it and walk through the SDK: conversations, history and"
        " pagination, join, a live subscription over the websocket, sending. Needs the"
        ' "emulator" extra: pip install "signalwire-conversation[emulator]".',
    )

    for name, (_, _, _, extra, help_text) in _DELEGATED.items():
        sub.add_parser(
            name,
            help=f"{help_text} [needs the {extra!r} extra]",
            add_help=False,  # --help goes to the command's own parser
            prefix_chars="\0",  # every argument is left over, for that parser
        )
    return parser


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


def local_time(value: Optional[_dt.datetime]) -> str:
    """A readable local time (``2024-05-01 14:00:00``), or ``-`` for none."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _one_line(text: Optional[str]) -> str:
    if not text:
        return ""
    return " ".join(text.split())


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, width: Optional[int] = None) -> str:
    """Columns aligned on their widest cell; the last column is cut to ``width`` if given."""
    table = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        line = "  ".join(cells + [row[-1]]).rstrip()
        if width is not None and len(line) > width > 10:
            line = line[: width - 1] + "…"
        lines.append(line)
    return "\n".join(lines)


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=False)


class _Output:
    """Where a command writes: stdout for results, stderr for progress and notes."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, as_json: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.as_json = as_json

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def json(self, data: Any) -> None:
        self.line(_to_json(data))

    def note(self, text: str) -> None:
        """A human note on stderr (never in ``--json`` mode)."""
        if not self.as_json:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        width: Optional[int] = None
        if _isatty(self.stdout):
            width = shutil.get_terminal_size((120, 24)).columns
        self.line(format_table(headers, rows, width=width))

    def progress(self, noun: str) -> "_Progress":
        enabled = not self.as_json and _isatty(self.stderr)
        return _Progress(self.stderr, noun, enabled=enabled)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _Progress:
    """``read 1,250 messages…`` on a terminal's stderr while a long read runs."""

    DELAY = 0.5  # nothing is shown for reads quicker than this
    INTERVAL = 0.2

    def __init__(self, stream: TextIO, noun: str, *, enabled: bool) -> None:
        self.stream = stream
        self.noun = noun
        self.enabled = enabled
        self.count = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def tick(self) -> None:
        self.count += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start >= self.DELAY and now - self.last >= self.INTERVAL:
            self.last = now
            self.shown = True
            self.stream.write(f"\rread {self.count:,} {self.noun}…")
            self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _collect(items: Iterable[Any], limit: Optional[int], progress: _Progress) -> Iterator[Any]:
    try:
        for n, item in enumerate(items):
            if limit is not None and n >= limit:
                break
            progress.tick()
            yield item
    finally:
        progress.done()


def _message_text(message: Any) -> str:
    text = getattr(message, "text", None)
    if text:
        return _one_line(text)
    kind = getattr(message, "kind", None) or getattr(message, "subtype", None)
    return f"[{kind}]" if kind else ""


def _message_row(message: Any, *, with_conversation: bool) -> List[str]:
    row = [local_time(message.datetime)]
    if with_conversation:
        row.append(message.conversation_id or "-")
    row += [message.user_id or "-", _message_text(message)]
    return row


def format_event(event: Any, names: Optional[Dict[str, str]] = None) -> str:
    """One line for a live message: ``2024-05-01 14:00:00  bob → Alice & Bob: hi``.

    ``names`` remembers the user and conversation names seen so far, for the messages recovered
    over REST after a reconnect (which carry ids only).
    """
    names = {} if names is None else names
    if event.user_id and event.user_name:
        names[event.user_id] = event.user_name
    if event.conversation_id and event.conversation_name:
        names[event.conversation_id] = event.conversation_name
    who = event.user_name or names.get(event.user_id or "") or event.user_id or "?"
    where = (
        event.conversation_name
        or names.get(event.conversation_id or "")
        or event.conversation_id
        or "?"
    )
    flags = " (you)" if event.is_author else ""
    recovered = " [recovered]" if getattr(event, "recovered", False) else ""
    return f"{local_time(event.datetime)}  {who}{flags} → {where}: {_message_text(event)}{recovered}"


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def token_from_args(args: argparse.Namespace, *, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token of :func:`add_connection_arguments`' ``--token``, else ``$SIGNALWIRE_TOKEN``."""
    env = os.environ if environ is None else environ
    return getattr(args, "token", None) or env.get("SIGNALWIRE_TOKEN") or None


def client_from_args(
    args: argparse.Namespace,
    *,
    environ: Optional[Mapping[str, str]] = None,
    on_state_change: Optional[Callable[[Any], None]] = None,
) -> "Client":
    """A :class:`~signalwire_conversation.Client` from the options of
    :func:`add_connection_arguments` (and ``--timeout`` / ``--max-retries`` when the parser has
    them). No token: :class:`UsageError`."""
    token = token_from_args(args, environ=environ)
    if not token:
        raise UsageError(
            "no token: pass --token or set SIGNALWIRE_TOKEN to a subscriber access token "
            f"(or try '{PROG} demo', which needs none)"
        )
    from .client import Client

    options: Dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "max_retries", None) is not None:
        options["max_retries"] = args.max_retries
    if on_state_change is not None:
        options["on_state_change"] = on_state_change
    return Client(
        token=token,
        base_url=getattr(args, "base_url", None),
        relay_url=getattr(args, "relay_url", None),
        **options,
    )


def cmd_whoami(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        info = client.conversation.get_subscriber_info()
    if out.as_json:
        out.json(info.to_dict())
    else:
        out.table(
            ["FIELD", "VALUE"],
            [
                ["subscriber id", info.id or "-"],
                ["name", info.display_name or "-"],
                ["address ids", ", ".join(info.address_ids) or "-"],
            ],
        )
    return EXIT_OK


def cmd_conversations(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        page = client.conversation.get_conversations(page_size=args.page_size)
        items = _collect(page, args.limit, out.progress("conversations"))
        if out.as_json:
            for conversation in items:
                out.json(conversation.to_dict())
            return EXIT_OK
        rows = [
            [
                _one_line(c.name) or "-",
                c.id,
                local_time(c.last_message_datetime),
                local_time(c.created_datetime),
            ]
            for c in items
        ]
    if not rows:
        out.line("no conversations")
        return EXIT_OK
    out.table(["NAME", "ID", "LAST MESSAGE", "CREATED"], rows)
    return EXIT_OK


def cmd_messages(args: argparse.Namespace, out: _Output) -> int:
    filters: Dict[str, Any] = {
        "limit": args.limit,
        "since": args.since,
        "until": args.until,
        "page_size": args.page_size,
    }
    if args.since is not None and args.until is not None and args.since > args.until:
        raise UsageError("--since is later than --until")
    with client_from_args(args) as client:
        api = client.conversation
        if args.address_id:
            page = api.get_conversation_messages(args.address_id, **filters)
        else:
            page = api.get_messages(**filters)
        items = _collect(page, args.limit, out.progress("messages"))
        if out.as_json:
            for message in items:
                out.json(message.to_dict())
            return EXIT_OK
        with_conversation = not args.address_id
        rows = [_message_row(m, with_conversation=with_conversation) for m in items]
    if not rows:
        out.line("no messages")
        return EXIT_OK
    headers = ["TIME"] + (["CONVERSATION"] if with_conversation else []) + ["FROM", "TEXT"]
    out.table(headers, rows)
    return EXIT_OK


def cmd_send(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        sent = client.conversation.send_message(
            args.address_id, args.text, metadata=args.metadata, details=args.details
        )
    if out.as_json:
        out.json(sent.to_dict())
    else:
        where = f" in conversation {sent.conversation_id}" if sent.conversation_id else ""
        out.line(f"sent message {sent.id or '(no id returned)'} to {args.address_id}{where}")
    return EXIT_OK


def cmd_join(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        result = client.conversation.join(args.address_id)
    if out.as_json:
        out.json(result.to_dict())
    else:
        out.table(
            ["FIELD", "VALUE"],
            [["conversation (group) id", result.group_id], ["members", ", ".join(result.address_ids) or "-"]],
        )
    return EXIT_OK


class _StateNotes:
    """Notes on stderr when the live connection drops and comes back (human mode only)."""

    def __init__(self, out: _Output) -> None:
        self.out = out
        self.dropped = False

    def __call__(self, state: Any) -> None:
        name = getattr(state, "name", str(state))
        if name == "RECONNECTING" and not self.dropped:
            self.dropped = True
            self.out.note("connection lost; reconnecting (missed messages will be recovered)…")
        elif name == "CONNECTED" and self.dropped:
            self.dropped = False
            self.out.note("reconnected")


def cmd_tail(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args, on_state_change=_StateNotes(out)) as client:
        subscription = client.conversation.subscribe(address_id=args.address_id)
        where = f" with {args.address_id}" if args.address_id else ""
        out.note(f"listening for new messages{where} (Ctrl+C to stop)")
        received = 0
        names: Dict[str, str] = {}
        try:
            while args.count is None or received < args.count:
                try:
                    event = subscription.get(timeout=0.5)
                except queue.Empty:
                    if not subscription.active or _state_name(client) == "CLOSED":
                        _listener_ended(client)
                    continue
                received += 1
                if out.as_json:
                    out.json(event.to_dict())
                else:
                    out.line(format_event(event, names))
        except KeyboardInterrupt:
            out.note("stopped")
        finally:
            subscription.unsubscribe()
    return EXIT_OK


def _state_name(client: "Client") -> str:
    return str(getattr(client.connection_state, "name", ""))


def _listener_ended(client: "Client") -> NoReturn:
    """The listener closed by itself (say, the token was revoked): surface why."""
    client.run_forever()  # returns once it is stopped; re-raises its fatal error, if any
    raise CLIError("the live connection closed")


def cmd_demo(args: argparse.Namespace, out: _Output) -> int:
    demo = _import_optional(f"{__package__}.demo", "demo", "emulator")
    if out.as_json:
        raise UsageError("demo has no --json output: it is a tour for people")
    return int(demo.run_demo(out=out.stdout))


_COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {
    "whoami": cmd_whoami,
    "conversations": cmd_conversations,
    "messages": cmd_messages,
    "send": cmd_send,
    "join": cmd_join,
    "tail": cmd_tail,
    "demo": cmd_demo,
}


# ---------------------------------------------------------------------------------------------
# Optional subpackages
# ---------------------------------------------------------------------------------------------


def _import_optional(module: str, command: str, extra: str) -> ModuleType:
    """Import ``module``; a missing optional dependency becomes the ``pip install`` line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        if missing and missing != "signalwire_conversation":
            raise CLIError(
                f"'{PROG} {command}' needs the optional dependency {missing!r}; install it with: "
                f'pip install "signalwire-conversation[{extra}]"',
                EXIT_USAGE,
            ) from None
        if "pip install" in str(exc):  # the subpackage's own message for a missing extra
            raise CLIError(_missing_extra_line(command, exc), EXIT_USAGE) from None
        raise CLIError(
            f"'{PROG} {command}' is not available in this installation ({exc})", EXIT_USAGE
        ) from None


def _missing_extra_line(command: str, exc: ImportError) -> str:
    extra = _DELEGATED[command][3] if command in _DELEGATED else "emulator"
    missing = (getattr(exc, "name", None) or "").split(".")[0]
    if not missing or missing == "signalwire_conversation":
        for candidates in _EXTRA_MODULES.values():
            missing = next((m for m in candidates if m in str(exc)), missing)
    what = f"the optional dependency {missing!r}" if missing else "an optional dependency"
    return (
        f"'{PROG} {command}' needs {what}; install it with: "
        f'pip install "signalwire-conversation[{extra}]"'
    )


def _run_delegated(command: str, argv: List[str], stdout: TextIO) -> int:
    module, adder, runner, extra, help_text = _DELEGATED[command]
    package = _import_optional(module, command, extra)
    add = getattr(package, adder, None)
    run = getattr(package, runner, None)
    if add is None or run is None:
        raise CLIError(f"'{PROG} {command}' is not available in this installation", EXIT_USAGE)
    parser = _Parser(prog=f"{PROG} {command}", description=help_text[:1].upper() + help_text[1:] + ".")
    add(parser)
    args = parser.parse_args(argv)
    return int(run(args) or 0)


# ---------------------------------------------------------------------------------------------
# Logging and the entry point
# ---------------------------------------------------------------------------------------------


def _configure_logging(debug: bool, stderr: TextIO) -> Callable[[], None]:
    """``--debug``: every SDK log record on stderr. Otherwise none: the command reports what
    matters itself (one error line; ``tail`` notes reconnects). Returns an undo."""
    logger = logging.getLogger(LOGGER_NAME)
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s")
        )
        handler.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()  # also keeps logging's last-resort handler quiet
    previous_level = logger.level
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    return undo


def _error_line(exc: BaseException) -> Tuple[str, int]:
    """The one line and exit code for an expected error."""
    if isinstance(exc, CLIError):
        return exc.message, exc.code
    if isinstance(exc, AuthenticationError):
        return (
            f"authentication failed: {exc} (check --token or SIGNALWIRE_TOKEN: the token may be "
            "wrong, expired or revoked)",
            EXIT_FAILURE,
        )
    if isinstance(exc, PermissionDeniedError):
        return f"permission denied: {exc}", EXIT_FAILURE
    if isinstance(exc, NotFoundError):
        return f"not found: {exc}", EXIT_FAILURE
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the server: {exc}", EXIT_FAILURE
    if isinstance(exc, (ValidationError, ConfigurationError)):
        return str(exc), EXIT_USAGE
    return str(exc) or type(exc).__name__, EXIT_FAILURE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (``sys.argv[1:]`` when ``argv`` is None)."""
    stdout, stderr = sys.stdout, sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in arguments
    try:
        args, extra = parser.parse_known_args(arguments)
    except UsageError as exc:
        stderr.write(f"error: {exc.message}\n")
        return exc.code
    except SystemExit as exc:  # --help, --version
        return _exit_code(exc.code)
    debug = bool(getattr(args, "debug", False)) or debug
    command: Optional[str] = args.command
    if command is None:
        parser.print_help(stdout)
        return EXIT_USAGE
    if command not in _DELEGATED and extra:
        stderr.write(
            f"error: unrecognized arguments: {' '.join(extra)} (see '{PROG} {command} --help')\n"
        )
        return EXIT_USAGE
    undo_logging = _configure_logging(debug, stderr)
    try:
        if command in _DELEGATED:
            return _run_delegated(command, [a for a in extra if a != "--debug"], stdout)
        out = _Output(stdout, stderr, as_json=bool(args.json))
        return _COMMANDS[command](args, out)
    except SystemExit as exc:  # a delegated parser's --help
        return _exit_code(exc.code)
    except ImportError as exc:  # an optional dependency imported late, by the command itself
        stderr.write(f"error: {_missing_extra_line(command, exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, without a second error at exit.
        _silence_stdout()
        return EXIT_FAILURE
    except (CLIError, SignalWireError) as exc:
        message, code = _error_line(exc)
        if debug and isinstance(exc, SignalWireError):
            logging.getLogger(LOGGER_NAME).debug("error details", exc_info=exc)
        stderr.write(f"error: {message}\n")
        return code
    except Exception as exc:  # a bug: one line, unless --debug asks for the traceback
        if debug:
            raise
        stderr.write(
            f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for the "
            "traceback)\n"
        )
        return EXIT_FAILURE
    finally:
        undo_logging()


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return EXIT_FAILURE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
