"""The parser class and the argument types (also used by the commands of optional subpackages:
``fanout``'s ``relay`` and ``consume``)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import textwrap
import time
from typing import Any, Dict, List, NoReturn, Optional

from .._timestamps import MILLISECONDS_THRESHOLD
from ._errors import UsageError

__all__ = ["parse_time", "non_negative_int", "positive_int", "positive_seconds"]


class HelpFormatter(argparse.HelpFormatter):
    """Wraps the description and the epilog to the terminal, paragraph by paragraph (a blank
    line separates paragraphs; a line that starts with spaces is kept as written)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks: List[str] = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_on_hyphens=False,
                    )
                )
        return "\n\n".join(blocks)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, raised instead of exiting, and whose
    help is wrapped to the terminal (:class:`HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
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


def identifier(value: str) -> str:
    """An argparse ``type``: an address id or a reference (surrounding whitespace dropped), not
    empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value.strip()


def non_empty(value: str) -> str:
    """An argparse ``type``: a text that is not empty."""
    if value == "":
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _json_object(value: str) -> Dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {_preview(value)}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError(f"nested too deeply: {_preview(value)}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {_preview(value)}")
    return data


def _preview(value: str, limit: int = 60) -> str:
    """``value`` quoted, cut to ``limit`` characters (an error line stays one readable line)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"… ({len(value)} characters)"
