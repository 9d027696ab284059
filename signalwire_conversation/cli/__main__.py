"""``python -m signalwire_conversation.cli``: the same as the ``signalwire-conversation`` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    raise SystemExit(main())
