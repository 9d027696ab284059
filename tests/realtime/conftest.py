"""Fixtures for the realtime tests."""

from __future__ import annotations

import base64
import json
import os

import pytest

from signalwire_conversation.config import TokenProvider


def fake_sat(ch: str = "127.0.0.1") -> str:
    """A SAT-shaped token (5-part JWE) that no server accepts."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = b64(json.dumps({"alg": "dir", "enc": "A256GCM", "ch": ch, "typ": "SAT"}).encode())
    return ".".join([header, "", b64(os.urandom(12)), b64(os.urandom(32)), b64(os.urandom(16))])


@pytest.fixture
def token_provider() -> TokenProvider:
    return TokenProvider(fake_sat())
