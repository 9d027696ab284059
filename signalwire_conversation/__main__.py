"""``python -m signalwire_conversation``: the same as the ``signalwire-conversation`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    raise SystemExit(main())
