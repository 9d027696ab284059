"""The connection options every command shares and the :class:`~signalwire_conversation.Client`
they make (also used by the commands of optional subpackages: ``fanout``'s ``relay`` and
``consume``).

The token comes from ``--token-file PATH``, ``--token`` or ``$SIGNALWIRE_TOKEN``. ``--token``
works but warns: a command line shows in ``ps`` and in the shell's history. ``--subscriber
REFERENCE`` instead mints (and renews) the token of that subscriber from the project
credentials in the environment (``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN``,
``SIGNALWIRE_SPACE``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, TextIO, Tuple

from ..errors import ConfigurationError, SignalWireError
from ._errors import PROG, UsageError

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    from ..client import Client
    from ..tokens import SubscriberTokens

__all__ = ["add_connection_arguments", "token_from_args", "token_and_source", "client_from_args", "project_tokens"]

ENV_TOKEN = "SIGNALWIRE_TOKEN"
ENV_PROJECT_ID = "SIGNALWIRE_PROJECT_ID"
ENV_API_TOKEN = "SIGNALWIRE_API_TOKEN"
ENV_SPACE = "SIGNALWIRE_SPACE"
PROJECT_ENV = f"{ENV_PROJECT_ID}, {ENV_API_TOKEN} and {ENV_SPACE}"
ENV_BASE_URL = "SIGNALWIRE_BASE_URL"
ENV_RELAY_URL = "SIGNALWIRE_RELAY_URL"

TOKEN_WARNING = (
    "warning: --token puts the token in the process list and the shell history; "
    f"prefer --token-file PATH or {ENV_TOKEN}"
)

# The SDK's advice is written for Python callers; the command line gives its own flags.
_PYTHON_TOKEN_HINT = re.compile(r"pass Client\(token=\.\.\.\).*?environment variable")
_PYTHON_INSECURE_HINT = "pass allow_insecure=True"
_PYTHON_CREDENTIALS_HINT = re.compile(r"pass SubscriberTokens\(.*?\) or set ")
_MISSING_SETTING = re.compile(r"^no (project_id|api_token|space): ")
_SETTING_ENV = {"project_id": ENV_PROJECT_ID, "api_token": ENV_API_TOKEN, "space": ENV_SPACE}


def add_connection_arguments(
    parser: "argparse._ActionsContainer",
    *,
    suppress_defaults: bool = False,
    token_help: str = f"subscriber access token (default: ${ENV_TOKEN}); prefer --token-file: "
    "a command line shows in ps and the shell history",
    subscriber: bool = True,
) -> None:
    """``--token``, ``--token-file``, ``--base-url``, ``--relay-url`` and ``--allow-insecure``
    (read back by :func:`client_from_args`), on a parser or an argument group; also used by the
    commands of optional subpackages. ``subscriber=False`` leaves ``--subscriber`` out.

    ``suppress_defaults``: leave an option out of the namespace unless given (subcommands, so
    a value given before the command name is not overwritten).
    """
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument("--token", default=default, metavar="TOKEN", help=token_help)
    if subscriber:  # (relay has a repeatable --subscriber of its own)
        parser.add_argument(
            "--subscriber",
            default=default,
            metavar="REFERENCE",
            help=f"act as the subscriber REFERENCE, with a token minted from the project credentials "
            f"({PROJECT_ENV}) instead of a token of your own",
        )
    parser.add_argument(
        "--token-file",
        default=default,
        metavar="PATH",
        help="read the subscriber access token from this file (surrounding whitespace ignored)",
    )
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help=f"REST base URL (default: from the token, or ${ENV_BASE_URL})",
    )
    parser.add_argument(
        "--relay-url",
        default=default,
        metavar="URL",
        help=f"websocket URL (default: from --base-url or the token, or ${ENV_RELAY_URL})",
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        default=argparse.SUPPRESS if suppress_defaults else False,
        help="accept plain http:// and ws:// URLs for hosts that are not on this machine "
        "(loopback hosts never need it)",
    )


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--token-file {path} is not a text file") from None
    if not token:
        raise UsageError(f"--token-file {path} is empty")
    return token


def token_and_source(
    args: argparse.Namespace, *, environ: Optional[Mapping[str, str]] = None
) -> Optional[Tuple[str, str]]:
    """``(token, where it came from)`` from ``--token-file``, ``--token`` or
    ``$SIGNALWIRE_TOKEN`` (in that order; both options at once is a :class:`UsageError`), or
    ``None`` when there is none."""
    env = os.environ if environ is None else environ
    token = getattr(args, "token", None)
    path = getattr(args, "token_file", None)
    if token and path:
        raise UsageError("give the token once: --token-file or --token, not both")
    if getattr(args, "subscriber", None) and (token or path):
        raise UsageError("give --subscriber or a token (--token-file, --token), not both")
    if path:
        return _read_token_file(path), f"--token-file {path}"
    if token:
        return token, "--token"
    token = env.get(ENV_TOKEN) or None
    return (token, ENV_TOKEN) if token else None


def token_from_args(args: argparse.Namespace, *, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token of :func:`add_connection_arguments`' ``--token-file`` or ``--token``, else
    ``$SIGNALWIRE_TOKEN``; ``None`` when there is none."""
    found = token_and_source(args, environ=environ)
    return found[0] if found else None


def _url_source(name: str, args: argparse.Namespace, env: Mapping[str, str]) -> str:
    option, variable = (
        ("--base-url", ENV_BASE_URL) if name == "base_url" else ("--relay-url", ENV_RELAY_URL)
    )
    if getattr(args, name, None):
        return option
    if env.get(variable):
        return variable
    return "the URL from the token" if name == "base_url" else "the websocket URL"


def _command_line_wording(
    message: str, token_source: str, args: argparse.Namespace, env: Mapping[str, str]
) -> str:
    """A configuration error of the SDK, with the command line's flags instead of Python."""
    message = _PYTHON_TOKEN_HINT.sub(
        f"check {token_source}: it must hold a subscriber access token (SAT)", message
    )
    message = message.replace(_PYTHON_INSECURE_HINT, "pass --allow-insecure")
    missing = _MISSING_SETTING.match(message)
    if missing:
        message = f"--subscriber needs the project credentials: no {_SETTING_ENV[missing.group(1)]}; " + message[
            missing.end():
        ]
    message = _PYTHON_CREDENTIALS_HINT.sub("set ", message)
    for name in ("base_url", "relay_url"):
        if message.startswith(f"{name} "):
            message = _url_source(name, args, env) + message[len(name):]
    return message


def client_from_args(
    args: argparse.Namespace,
    *,
    environ: Optional[Mapping[str, str]] = None,
    on_state_change: Optional[Callable[[Any], None]] = None,
    stderr: Optional[TextIO] = None,
) -> "Client":
    """A :class:`~signalwire_conversation.Client` from the options of
    :func:`add_connection_arguments` (and ``--timeout`` / ``--max-retries`` when the parser has
    them). No token: :class:`UsageError`; ``--token`` given: a warning on ``stderr``. The SDK's
    configuration errors are reworded for the command line (its flags, not Python arguments)."""
    env = os.environ if environ is None else environ
    reference = getattr(args, "subscriber", None)
    found = token_and_source(args, environ=env)
    if not found and not reference:
        raise UsageError(
            f"no token: pass --token-file PATH or set {ENV_TOKEN} to a subscriber access token, or "
            f"pass --subscriber REFERENCE with {PROJECT_ENV} set "
            f"(or try '{PROG} demo', which needs none)"
        )
    if found and found[1] == "--token":
        err = sys.stderr if stderr is None else stderr
        err.write(TOKEN_WARNING + "\n")
        err.flush()
    from ..client import Client

    options: Dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "max_retries", None) is not None:
        options["max_retries"] = args.max_retries
    hosts: Dict[str, Any] = {
        "base_url": getattr(args, "base_url", None),
        "relay_url": getattr(args, "relay_url", None),
        "allow_insecure": bool(getattr(args, "allow_insecure", False)),
    }
    if on_state_change is not None:
        hosts["on_state_change"] = on_state_change
    source = "--subscriber" if reference else found[1] if found else ENV_TOKEN
    try:
        if reference:
            return Client.for_subscriber(reference, tokens=project_tokens(args), **hosts, **options)
        assert found is not None
        return Client(token=found[0], **hosts, **options)
    except ConfigurationError as exc:
        cause = exc.__cause__  # set when the token callable (--subscriber's) failed
        if isinstance(cause, SignalWireError) and not isinstance(cause, ConfigurationError):
            raise cause from None  # refused project credentials, an unreachable space...
        message = str(cause) if isinstance(cause, ConfigurationError) else str(exc)
        raise UsageError(_command_line_wording(message, source, args, env)) from None


def project_tokens(args: argparse.Namespace) -> "SubscriberTokens":
    """The :class:`~signalwire_conversation.SubscriberTokens` of the project credentials in
    the environment, with the command's ``--timeout`` and ``--max-retries``."""
    from ..tokens import SubscriberTokens

    options: Dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "max_retries", None) is not None:
        options["max_retries"] = args.max_retries
    try:
        return SubscriberTokens(**options)
    except ConfigurationError as exc:
        raise UsageError(_command_line_wording(str(exc), "--subscriber", args, os.environ)) from None
