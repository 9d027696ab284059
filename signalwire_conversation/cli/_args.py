"""The parser class, the argument types and the connection options every command shares
(also used by the commands of optional subpackages: ``fanout``'s ``relay`` and ``consume``)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, NoReturn, Optional

from ._errors import PROG, UsageError

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    from ..client import Client

__all__ = [
    "parse_time",
    "non_negative_int",
    "positive_int",
    "positive_seconds",
    "add_connection_arguments",
    "token_from_args",
    "client_from_args",
]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, raised instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


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
        return number / 1000.0 if abs(number) >= 1e11 else number
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
    from ..client import Client

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

