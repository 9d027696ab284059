"""SAT-shaped tokens: 5-part compact JWE strings whose protected header names the emulator.

The real SAT is ``base64url(header) . "" . iv . ciphertext . tag`` with ``alg: dir`` (so the
encrypted-key part is empty, as in the OpenAPI example token). Clients only decode the header
(docs/protocol.md §1.1); the rest is opaque here too: random bytes. The emulator recognises a token
by its exact string, so any change to any part makes it invalid.
"""

from __future__ import annotations

import base64
import json
import os

__all__ = ["mint_sat", "b64url"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_sat(ch: str) -> str:
    """A new SAT-shaped token whose header carries ``ch`` (e.g. ``"127.0.0.1:8080"``)."""
    header = {"alg": "dir", "enc": "A256GCM", "ch": ch, "typ": "SAT"}
    parts = [
        b64url(json.dumps(header, separators=(",", ":")).encode("utf-8")),
        "",  # alg "dir": no encrypted key
        b64url(os.urandom(12)),  # iv
        b64url(os.urandom(96)),  # ciphertext
        b64url(os.urandom(16)),  # authentication tag
    ]
    return ".".join(parts)
