"""config.py: token header decoding, TokenProvider, host derivation, timeouts."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, List

import pytest

from signalwire_conversation import ConfigurationError, ValidationError
from signalwire_conversation.config import (
    DEFAULT_RELAY_URL,
    DEFAULT_REST_BASE,
    Hosts,
    TokenProvider,
    decode_token_header,
    hosts_from_ch,
    is_loopback_host,
    normalize_timeout,
    redact_token,
    relay_url_for,
    resolve_hosts,
)

from .helpers import make_token

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def header(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- PROTOCOL §1.1 examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ch, base, relay",
    [
        ("puc.swire.io", "https://fabric.swire.io", "wss://puc.swire.io"),
        ("puc.signalwire.com", "https://fabric.signalwire.com", "wss://puc.signalwire.com"),
        ("testpuc.signalwire.com", "https://fabric.signalwire.com", "wss://testpuc.signalwire.com"),
        ("server.custom.io", "https://fabric.custom.io", "wss://server.custom.io"),
        (None, DEFAULT_REST_BASE, DEFAULT_RELAY_URL),
        ("nodot", DEFAULT_REST_BASE, DEFAULT_RELAY_URL),
        ("", DEFAULT_REST_BASE, DEFAULT_RELAY_URL),
        (42, DEFAULT_REST_BASE, DEFAULT_RELAY_URL),
    ],
)
def test_hosts_from_ch(ch: Any, base: str, relay: str) -> None:
    assert hosts_from_ch(ch) == (base, relay)


def test_fixture_headers() -> None:
    assert resolve_hosts(header("jwe-header-sat-with-ch.json"), environ={}) == Hosts(
        "https://fabric.swire.io", "wss://puc.swire.io"
    )
    assert resolve_hosts(header("jwe-header-sat-without-ch.json"), environ={}) == Hosts(
        "https://fabric.signalwire.com", "wss://puc.signalwire.com"
    )


def test_decode_token_header_round_trip() -> None:
    h = {"alg": "dir", "enc": "A256GCM", "ch": "puc.swire.io", "typ": "SAT"}
    assert decode_token_header(make_token(h)) == h


def test_decode_real_openapi_token() -> None:
    token = json.loads((FIXTURES / "openapi-subscriber-token-response.json").read_text())["token"]
    assert decode_token_header(token) == {"alg": "dir", "enc": "A256GCM", "typ": "SAT"}


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a.b", "2 part"),
        ("!!!.b.c", "base64url"),
        ("WzFd.b.c", "not a JSON object"),  # base64url of [1]
    ],
)
def test_malformed_tokens(bad: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        decode_token_header(bad)
    assert "SIGNALWIRE_TOKEN" in str(info.value) or "empty" in str(info.value)


# -- resolve_hosts -----------------------------------------------------------------------------


def test_resolve_precedence() -> None:
    h = {"ch": "puc.swire.io"}
    env = {"SIGNALWIRE_BASE_URL": "https://env.example", "SIGNALWIRE_RELAY_URL": "wss://envws.example"}
    assert resolve_hosts(h, environ=env) == Hosts("https://env.example", "wss://envws.example")
    assert resolve_hosts(h, base_url="https://arg.example", environ=env).base_url == "https://arg.example"
    only_base = resolve_hosts(h, base_url="https://arg.example:8443/", environ={})
    assert only_base == Hosts("https://arg.example:8443", "wss://arg.example:8443")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost", "http://[::1]:80", "http://a.localhost"])
def test_loopback_plain_http_ok(url: str) -> None:
    assert resolve_hosts({}, base_url=url, environ={}).base_url == url


def test_plain_http_remote_needs_opt_in() -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        resolve_hosts({}, base_url="http://example.com", environ={})
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        resolve_hosts({}, relay_url="ws://example.com", environ={})
    assert resolve_hosts({}, base_url="http://example.com", allow_insecure=True, environ={}).relay_url == "ws://example.com"


@pytest.mark.parametrize("bad", ["ftp://x", "fabric.example", "", "https://"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_hosts({}, base_url=bad, environ={})


def test_relay_url_for() -> None:
    assert relay_url_for("https://h:1/x") == "wss://h:1"
    assert relay_url_for("http://h") == "ws://h"


@pytest.mark.parametrize("host, expected", [("127.0.0.1", True), ("127.5.5.5", True), ("::1", True), ("[::1]", True),
                                            ("LOCALHOST", True), ("x.localhost", True), ("10.0.0.1", False),
                                            ("example.com", False), ("", False), (None, False)])
def test_is_loopback_host(host: Any, expected: bool) -> None:
    assert is_loopback_host(host) is expected


# -- TokenProvider ---------------------------------------------------------------------------


def test_static_token() -> None:
    t = make_token()
    p = TokenProvider(t)
    assert p.get() == t and not p.refreshable and p.refresh() == t
    assert p.header["ch"] == "puc.swire.io"
    assert t not in repr(p)


def test_token_is_stripped() -> None:
    t = make_token()
    assert TokenProvider(f"  {t}\n").get() == t


def test_env_token() -> None:
    t = make_token()
    assert TokenProvider(None, environ={"SIGNALWIRE_TOKEN": t}).get() == t
    with pytest.raises(ConfigurationError, match="no token"):
        TokenProvider(None, environ={"SIGNALWIRE_TOKEN": ""})


def test_callable_token_refresh_and_stale() -> None:
    tokens = [make_token(secret=f"n{i}") for i in range(3)]
    calls: List[int] = []

    def source() -> str:
        calls.append(1)
        return tokens[len(calls) - 1]

    p = TokenProvider(source)
    assert p.refreshable and p.get() == tokens[0]
    assert p.refresh(stale=tokens[0]) == tokens[1]
    # another thread already refreshed past this stale token: no new call
    assert p.refresh(stale=tokens[0]) == tokens[1]
    assert len(calls) == 2
    assert p.refresh() == tokens[2]


def test_concurrent_refresh_with_same_stale_calls_once() -> None:
    calls: List[int] = []

    def source() -> str:
        calls.append(1)
        return make_token(secret=f"c{len(calls)}")

    p = TokenProvider(source)
    stale = p.get()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(5)
        p.refresh(stale=stale)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    assert len(calls) == 2  # the initial token + exactly one refresh


@pytest.mark.parametrize("bad", [42, b"bytes", ["t"]])
def test_bad_token_source(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        TokenProvider(bad)


def test_callable_returning_garbage() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        TokenProvider(lambda: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="raised RuntimeError"):
        TokenProvider(lambda: (_ for _ in ()).throw(RuntimeError("boom")))


def test_redact_token() -> None:
    t = make_token()
    assert t not in redact_token(t) and str(len(t)) in redact_token(t)
    assert redact_token("") == "<empty>"


# -- timeouts ----------------------------------------------------------------------------------


def test_normalize_timeout() -> None:
    assert normalize_timeout(3) == (3.0, 3.0)
    assert normalize_timeout((1, 2.5)) == (1.0, 2.5)


@pytest.mark.parametrize("bad", [0, -1, True, "1", None, (1, 2, 3), (0, 1), [1, 2]])
def test_normalize_timeout_bad(bad: Any) -> None:
    with pytest.raises(ValidationError, match="^timeout: "):
        normalize_timeout(bad)
