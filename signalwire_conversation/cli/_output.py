"""Where and how commands write: tables with local times (with their UTC offset) on stdout,
JSON lines for ``--json``, progress and notes on stderr."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO

__all__ = ["local_time", "format_table", "format_event"]


def local_time(value: Optional[_dt.datetime]) -> str:
    """A readable local time with its UTC offset (``2024-05-01 14:00:00+02:00``), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone().replace(microsecond=0).isoformat(sep=" ")


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
    row += [sender(message), _message_text(message)]
    return row


def sender(message: Any) -> str:
    """Who sent ``message``: the sender's name when known, else the address id."""
    return _one_line(getattr(message, "user_name", None)) or message.user_id or "-"


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

