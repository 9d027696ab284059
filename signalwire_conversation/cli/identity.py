"""``token``: a fresh subscriber access token minted from the project credentials, printed alone
on stdout (for scripts: ``SIGNALWIRE_TOKEN=$(signalwire-conversation token alice)``)."""

from __future__ import annotations

import argparse
from typing import Callable, Dict

from ._args import identifier
from ._client import PROJECT_ENV, project_tokens
from ._errors import EXIT_OK, UsageError
from ._output import _Output

__all__ = ["add_commands", "COMMANDS"]

EPILOG = f"""\
The project credentials come from {PROJECT_ENV} (the space: a host such as
example.signalwire.com, or a URL). Every API command takes --subscriber REFERENCE to act as
that subscriber with such a token, renewed while it runs.

Exit status: 0 success, 1 the server or the network failed (refused credentials included), 2
bad usage or configuration, 130 interrupted.
"""


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``token``; ``command(name, help, description=None, connection=...)`` makes a parser."""
    p = command(
        "token",
        "print a fresh subscriber access token for a subscriber reference",
        "Mint a subscriber access token (SAT) for the subscriber REFERENCE (created on its first "
        f"token) from the project credentials in {PROJECT_ENV}, and print it alone on stdout.",
        connection=False,
        epilog=EPILOG,
    )
    p.add_argument(
        "reference", type=identifier, metavar="REFERENCE", help="the subscriber's reference (e.g. your user id)"
    )


def cmd_token(args: argparse.Namespace, out: _Output) -> int:
    if out.as_json:
        raise UsageError("token has no --json output: it prints the token alone")
    out.line(project_tokens(args).token_for(args.reference))
    return EXIT_OK


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {"token": cmd_token}
