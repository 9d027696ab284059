"""``python -m signalwire_conversation.fanout relay|consume ...``."""

from __future__ import annotations

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
