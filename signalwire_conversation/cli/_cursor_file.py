"""``tail --cursor-file PATH``: where a ``tail`` resumes, kept in a file.

The file holds one resume cursor (an event's ``cursor``). It is replaced atomically after each
printed event: written to a temporary file in the same directory, flushed to disk, then
renamed over the old one, so a reader (or a ``tail`` killed at any moment) sees the old cursor
or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

from ._errors import UsageError

__all__ = ["CursorFile"]


class CursorFile:
    """The cursor file at ``path`` (created on the first :meth:`save`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._directory = os.path.dirname(os.path.abspath(path))

    def load(self) -> Optional[str]:
        """The saved cursor; ``None`` when the file does not exist yet or is empty."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except FileNotFoundError:
            if not os.path.isdir(self._directory):
                raise UsageError(f"--cursor-file {self.path}: no such directory") from None
            text = ""
        except OSError as exc:
            raise UsageError(f"cannot read --cursor-file {self.path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--cursor-file {self.path} is not a text file") from None
        if not os.access(self._directory, os.W_OK):
            raise UsageError(f"--cursor-file {self.path}: cannot write in {self._directory}")
        return text or None

    def save(self, cursor: str) -> None:
        """Replace the file's content with ``cursor``, atomically and durably."""
        fd, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=self._directory
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(cursor + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
