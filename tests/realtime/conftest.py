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


@pytest.fixture(autouse=True, params=["fast-path", "fallback-path"])
def websocket_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every realtime test runs twice: on the fast path (websocket-client internals) and on
    the fall-back through websocket-client's public API (what a websocket-client release
    without those internals gets)."""
    from signalwire_conversation.realtime import connection

    fast = request.param == "fast-path"
    if fast and connection.fast_path_problem() is not None:
        pytest.skip(f"fast path unavailable: {connection.fast_path_problem()}")
    monkeypatch.setattr(connection, "FAST_PATH", fast)
    return str(request.param)
