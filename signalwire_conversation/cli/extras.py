"""The commands that need an optional extra: ``demo`` (here) and ``emulator``, ``relay``,
``consume``, whose arguments are defined and run by their own subpackages. Each imports its
extra only when it runs, so ``--help`` and the plain API commands stay light."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Any, Callable, Dict, List, TextIO, Tuple

from ._args import _Parser
from ._errors import EXIT_USAGE, PROG, CLIError, UsageError
from ._output import _Output

__all__ = ["add_commands", "COMMANDS"]

# Commands whose arguments and runner come from elsewhere. The arguments are read first (so
# --help works without the extra), then the runner's module is imported.
# command -> (arguments' module, adder, runner's module, runner, extra, what it is)
_DELEGATED: Dict[str, Tuple[str, str, str, str, str, str]] = {
    "emulator": (
        "signalwire_conversation.testing",
        "add_emulator_arguments",
        "signalwire_conversation.testing",
        "run_emulator",
        "emulator",
        "run a local SignalWire Conversation emulator (REST + websocket on one loopback port)",
    ),
    "relay": (
        "signalwire_conversation.cli.fanout_args",
        "add_relay_arguments",
        "signalwire_conversation.fanout",
        "run_relay",
        "redis",
        "run one listener for a token and publish every message to Redis (scaling out)",
    ),
    "relay-status": (
        "signalwire_conversation.cli.fanout_args",
        "add_relay_status_arguments",
        "signalwire_conversation.fanout",
        "run_relay_status",
        "redis",
        "show a relay fleet: its relays, their subscribers, lease ages, stream lengths",
    ),
    "consume": (
        "signalwire_conversation.cli.fanout_args",
        "add_consume_arguments",
        "signalwire_conversation.fanout",
        "run_consume",
        "redis",
        "read the messages a relay published to Redis and print them",
    ),
}

# The optional dependency behind each extra, for the "pip install" hint.
_EXTRA_MODULES = {"emulator": ("websockets",), "redis": ("redis",)}


def add_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add ``demo`` (``command(name, help, description=None)`` makes a parser) and the
    delegated commands (on the subparsers action ``sub``: their arguments are left over for
    their own parser)."""
    command(
        "demo",
        "a tour of the SDK against an in-process emulator (nothing leaves this machine)",
        "Start a local emulator, seed it and walk through the SDK: conversations, history and"
        " pagination, join, a live subscription over the websocket, sending. Needs the"
        ' "emulator" extra: pip install "signalwire-conversation[emulator]".',
    )

    for name, (_, _, _, _, extra, help_text) in _DELEGATED.items():
        sub.add_parser(
            name,
            help=f"{help_text} [needs the {extra!r} extra]",
            add_help=False,  # --help goes to the command's own parser
            prefix_chars="\0",  # every argument is left over, for that parser
        )

def cmd_demo(args: argparse.Namespace, out: _Output) -> int:
    demo = _import_optional("signalwire_conversation.demo", "demo", "emulator")
    if out.as_json:
        raise UsageError("demo has no --json output: it is a tour for people")
    return int(demo.run_demo(out=out.stdout))


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
    extra = _DELEGATED[command][4] if command in _DELEGATED else "emulator"
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
    args_module, adder, run_module, runner, extra, help_text = _DELEGATED[command]
    add = getattr(_import_optional(args_module, command, extra), adder, None)
    if add is None:
        raise CLIError(f"'{PROG} {command}' is not available in this installation", EXIT_USAGE)
    parser = _Parser(prog=f"{PROG} {command}", description=help_text[:1].upper() + help_text[1:] + ".")
    add(parser)
    args = parser.parse_args(argv)
    run = getattr(_import_optional(run_module, command, extra), runner, None)
    if run is None:
        raise CLIError(f"'{PROG} {command}' is not available in this installation", EXIT_USAGE)
    return int(run(args) or 0)


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {"demo": cmd_demo}
