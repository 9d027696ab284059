"""The argument parser of ``signalwire-conversation``: the options every command shares, and
one subcommand per command (each command module adds its own)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from .._version import __version__
from . import extras, identity, rest, tail
from ._args import _Parser, non_negative_int, positive_seconds
from ._client import add_connection_arguments
from ._errors import PROG

__all__ = ["build_parser"]

_EPILOG = """\
Token: --token-file PATH or the SIGNALWIRE_TOKEN environment variable (a subscriber access
token). --token TOKEN works too, with a warning: a command line shows in ps and in the shell's
history. Or --subscriber REFERENCE: a token for that subscriber, minted from the project
credentials in SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and SIGNALWIRE_SPACE (see the token
command). Hosts come from the token; --base-url / --relay-url (or SIGNALWIRE_BASE_URL /
SIGNALWIRE_RELAY_URL) override them, e.g. for the local emulator.

Times (--since, --until): epoch seconds, ISO 8601 (2024-05-01T12:00:00Z; local time without
an offset) or a duration meaning that long ago (90s, 15m, 2h, 7d). Printed times are local,
with their UTC offset (2024-05-01 14:00:00+02:00); --json adds ISO 8601 times in UTC.

Exit status: 0 success, 1 the server or the network failed, 2 bad usage or configuration,
130 interrupted. New here? Run: signalwire-conversation demo
"""


def _add_common(parser: argparse.ArgumentParser, *, top: bool, connection: bool = True) -> None:
    """Options every API command takes, before or after the command name.

    On the subcommands their default is ``SUPPRESS`` so a value given before the command name
    is not overwritten by the subcommand's default.
    """

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output" if connection else "requests and output")
    if connection:
        add_connection_arguments(group, suppress_defaults=not top)
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=default(None),
        metavar="SECONDS",
        help="per-request timeout in seconds (default: the SDK's, 5 s connect / 30 s read); "
        "tail also waits this long for its live connection (default: 15 s)",
    )
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=default(None),
        metavar="N",
        help="retries after the first attempt of a failed request (default: the SDK's)",
    )
    if connection:
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
        help="show the SDK's log on stderr: every request and response with the start of its "
        "body (message texts and subscriber details included; tokens redacted), retries, "
        "connection states, and the traceback of an unexpected error",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``signalwire-conversation`` (the delegated commands' options are
    added by their own packages when they run)."""
    parser = _Parser(
        prog=PROG,
        description="Talk to the SignalWire Conversation API from a terminal.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str,
        help_text: str,
        description: Optional[str] = None,
        *,
        connection: bool = True,
        epilog: str = _EPILOG,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text[:1].upper() + help_text[1:] + ".",
            epilog=epilog,
            )
        _add_common(p, top=False, connection=connection)
        return p

    rest.add_commands(command)
    tail.add_commands(command)
    identity.add_commands(command)
    extras.add_commands(command, sub)
    return parser
