"""Security: the token never leaks (logs, reprs, exception text, URLs, other hosts), plain
http/ws to a remote host is refused unless allowed, and TLS is verified by default.

The realtime half (a subscribe with reconnects at DEBUG, wss with a throwaway CA) is in
``test_security_live.py``, which needs the emulator.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import responses
import trustme
from hypothesis import given
from hypothesis import strategies as st

from signalwire_conversation import (
    APIConnectionError,
    AuthenticationError,
    Client,
    ConfigurationError,
    SignalWireError,
)
from signalwire_conversation._logging import redact
from signalwire_conversation.config import TokenProvider, is_loopback_host, resolve_hosts

from . import hostile
from .conftest import FUZZ
from .helpers import make_token

SECRET = "s3cr3tPAYLOADdoNotLeak"
TOKEN = make_token(secret=SECRET)


def secret_parts(token: str) -> List[str]:
    """Pieces of the token that must never be printed (the redacted form keeps 6 chars)."""
    parts = [p for p in token.split(".") if len(p) >= 8]
    return [token] + parts[1:] + [SECRET]


def assert_clean(text: str, token: str = TOKEN, where: str = "text") -> None:
    for piece in secret_parts(token):
        assert piece not in text, f"token material {piece[:10]}… found in {where}: {text[:300]!r}"


# -- reprs, exception text -------------------------------------------------------------------


def test_reprs_never_show_the_token() -> None:
    with Client(token=TOKEN, base_url="http://127.0.0.1:9") as client:
        for obj in (client, client.conversation, client._transport, client._tokens, TokenProvider(TOKEN),
                    TokenProvider(lambda: TOKEN)):
            assert_clean(repr(obj), where=f"repr({type(obj).__name__})")
            assert_clean(str(obj), where=f"str({type(obj).__name__})")
    assert_clean(repr(client))


@pytest.mark.parametrize("bad", ["", "   ", "abc", "a.b", "a.b.c.d.e.f", "!!.b.c.d.e"])
def test_configuration_errors_never_echo_the_token(bad: str) -> None:
    token = bad + SECRET if bad.strip() else bad
    with pytest.raises(ConfigurationError) as info:
        Client(token=token, base_url="http://127.0.0.1:9")
    if token.strip():
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_callable_token_error_never_echoes_the_token() -> None:
    def factory() -> str:
        raise RuntimeError(f"vault said no for {TOKEN}")

    with pytest.raises(ConfigurationError) as info:
        Client(token=factory, base_url="http://127.0.0.1:9")
    # the user's own exception text is quoted; it must still be scrubbed
    assert_clean(str(info.value), where="ConfigurationError from a token callable")


@FUZZ
@given(secret=st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=122).filter(str.isalnum),
                      min_size=16, max_size=60),
       wrapper=st.sampled_from([
           "Authorization: Bearer {t}", "{{'Authorization': 'Bearer {t}'}}", '{{"jwt_token": "{t}"}}',
           "token={t}&x=1", "url?access_token={t}", "failed with {t} at the end", "{t}",
           '{{"authentication": {{"jwt_token": "{t}"}}}}', "refresh_token: {t}",
       ]))
def test_redact_removes_any_sat(secret: str, wrapper: str) -> None:
    token = make_token(secret=secret)
    text = wrapper.format(t=token)
    assert_clean(redact(text), token=token, where="redact()")


# -- logs and errors across a REST session -----------------------------------------------------


def echo_auth(status: int) -> hostile.Behaviour:
    """A hostile server that reflects the request's Authorization header back in its answer."""

    def behaviour(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
        auth = req.header("authorization") or ""
        body = json.dumps({"error": f"bad {auth}", "message": auth, "echo": auth,
                           "errors": [{"message": f"token {auth.split(' ')[-1]}", "code": auth}]}).encode()
        hostile.send_all(conn, hostile.http_response(status, body, headers=[("X-Echo", auth)]))

    return behaviour


def echo_html(status: int) -> hostile.Behaviour:
    def behaviour(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
        auth = req.header("authorization") or ""
        body = f"<html><body>denied {auth}</body></html>".encode()
        hostile.send_all(conn, hostile.http_response(status, body, headers=[("Content-Type", "text/html")]))

    return behaviour


def echo_text(status: int) -> hostile.Behaviour:
    def behaviour(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
        auth = (req.header("authorization") or "").split(" ")[-1]
        hostile.send_all(conn, hostile.http_response(status, f"nope {auth}".encode(),
                                                     headers=[("Content-Type", "text/plain")]))

    return behaviour


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger (urllib3, websocket included) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="signalwire_conversation")
    yield caplog


def assert_logs_clean(caplog: pytest.LogCaptureFixture, token: str = TOKEN) -> int:
    for record in caplog.records:
        assert_clean(record.getMessage(), token=token, where=f"log record {record.name}:{record.levelname}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_clean(str(record.exc_info[1]), token=token, where=f"logged exception of {record.name}")
    # and the formatted text a handler would print (tracebacks included)
    assert_clean(caplog.text, token=token, where="formatted log output")
    return len(caplog.records)


def test_rest_session_at_debug_never_logs_the_token(all_logs: pytest.LogCaptureFixture) -> None:
    ok = hostile.scripted(
        hostile.answer(200, hostile.SUBSCRIBER_INFO), hostile.answer(200, hostile.JOIN),
        hostile.answer(200, b'{"id": "m1", "group_id": "group-1", "text": "hi"}'),
        hostile.answer(200, hostile.EMPTY_PAGE),
        echo_auth(401), echo_auth(403), echo_auth(422), echo_auth(429), echo_auth(500),
        echo_html(502), echo_text(503), echo_text(200), hostile.reset_connection,
    )
    with hostile.RawServer(ok) as server:
        with Client(token=TOKEN, base_url=server.url, max_retries=0, timeout=(2, 2)) as client:
            client.conversation.send_message("addr-them", "hi")
            list(client.conversation.get_messages())
            errors: List[BaseException] = []
            for _ in range(9):
                with pytest.raises(SignalWireError) as info:
                    list(client.conversation.get_messages())
                errors.append(info.value)
            assert_clean(repr(client))
        targets = [r.target for r in server.requests]
    for err in errors:
        assert_clean(str(err), where=f"str({type(err).__name__})")
        assert_clean(repr(err), where=f"repr({type(err).__name__})")
        for arg in err.args:
            assert_clean(str(arg), where=f"{type(err).__name__}.args")
        url = getattr(err, "url", None) or ""
        assert_clean(url, where="error url")
    assert isinstance(errors[0], AuthenticationError)
    assert isinstance(errors[-1], APIConnectionError)
    for target in targets:
        assert_clean(target, where="request URL")
    n = assert_logs_clean(all_logs)
    assert n > 10, "expected DEBUG records of requests and responses"


def test_error_attributes_scrubbed_of_echoed_token() -> None:
    """``err.body``/``err.headers`` are raw server data; ``message`` and ``str`` must be clean."""
    with hostile.RawServer(hostile.scripted(echo_auth(401))) as server:
        with Client(token=TOKEN, base_url=server.url, max_retries=0) as client:
            with pytest.raises(AuthenticationError) as info:
                client.conversation.get_conversations()
    err = info.value
    assert_clean(err.message, where="err.message")
    assert_clean(str(err), where="str(err)")


# -- the token only goes where it should -----------------------------------------------------


DEFECT_D6 = (
    "defect D6: pagination follows an absolute `next` link to any host and scheme with the same "
    "Bearer token: a server (or an injected link) can send the token to another origin, even "
    "over plain http to a remote host, bypassing the insecure-host rule"
)


@pytest.mark.parametrize("link", [
    "http://evil.example.com/api/fabric/messages?page_token=2",   # plain http, remote
    "https://evil.example.com/api/fabric/messages?page_token=2",  # another origin
])
def test_next_link_to_another_origin_does_not_get_the_token(link: str) -> None:
    base = "https://fabric.swire.io"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{base}/api/fabric/messages",
                 json={"data": [{"id": "m1", "ts": 1}], "links": {"next": link}})
        rsps.add(responses.GET, link.split("?")[0], json={"data": [{"id": "m2", "ts": 0}], "links": {}})
        with Client(token=TOKEN, base_url=base, max_retries=0) as client:
            try:
                list(client.conversation.get_messages())
            except SignalWireError:
                pass  # refusing the link is fine
        leaked = [c.request.url for c in rsps.calls
                  if not c.request.url.startswith(base) and "authorization" in {k.lower() for k in c.request.headers}]
    assert not leaked, f"the token was sent to {leaked}"


def test_token_never_in_a_query_string() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        base = "https://fabric.swire.io"
        rsps.add(responses.GET, f"{base}/api/fabric/messages", json={"data": [], "links": {}})
        with Client(token=TOKEN, base_url=base) as client:
            list(client.conversation.get_messages(since=1, until=2, page_size=5))
        for c in rsps.calls:
            assert_clean(c.request.url, where="request URL")
            assert c.request.headers["Authorization"] == f"Bearer {TOKEN}"


# -- plain http/ws to a non-loopback host -------------------------------------------------------

remote_hosts = st.one_of(
    st.sampled_from(["example.com", "fabric.swire.io", "10.0.0.1", "192.168.1.10", "[2001:db8::1]",
                     "127.0.0.1.nip.io", "localhost.evil.com", "0.0.0.0", "[::]", "2130706433",
                     "127.1", "LOCALHOST.example", "xn--localhost-.com"]),
    st.from_regex(r"\A[a-z]{1,10}\.(com|net|io|org)\Z"),
    st.ip_addresses(v=4).filter(lambda ip: not ip.is_loopback).map(str),
    st.ip_addresses(v=6).filter(lambda ip: not ip.is_loopback).map(lambda ip: f"[{ip}]"),
)
loopback_hosts = st.one_of(
    st.sampled_from(["localhost", "LOCALHOST", "127.0.0.1", "127.255.255.254", "[::1]", "app.localhost"]),
    st.integers(0, 255).map(lambda n: f"127.0.0.{n}"),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))


@FUZZ
@given(host=remote_hosts, port=ports, which=st.sampled_from(["base", "relay"]))
def test_plain_scheme_to_remote_host_refused(host: str, port: str, which: str) -> None:
    header = {"ch": "puc.swire.io"}
    kwargs = {"base_url": f"http://{host}{port}"} if which == "base" else {"relay_url": f"ws://{host}{port}"}
    with pytest.raises(ConfigurationError) as info:
        resolve_hosts(header, **kwargs)
    assert "allow_insecure" in str(info.value)
    with pytest.raises(ConfigurationError):
        Client(token=TOKEN, **kwargs)  # type: ignore[arg-type]
    hosts = resolve_hosts(header, allow_insecure=True, **kwargs)
    assert (hosts.base_url if which == "base" else hosts.relay_url).startswith("http" if which == "base" else "ws")


@FUZZ
@given(host=loopback_hosts, port=ports)
def test_plain_scheme_to_loopback_allowed(host: str, port: str) -> None:
    hosts = resolve_hosts({}, base_url=f"http://{host}{port}")
    assert hosts.base_url.startswith("http://") and hosts.relay_url.startswith("ws://")
    assert is_loopback_host(host)


def test_env_urls_follow_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", "http://example.com")
    with pytest.raises(ConfigurationError):
        Client(token=TOKEN)
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", "https://example.com")
    monkeypatch.setenv("SIGNALWIRE_RELAY_URL", "ws://example.com")
    with pytest.raises(ConfigurationError):
        Client(token=TOKEN)


def test_defaults_are_encrypted() -> None:
    with Client(token=make_token(ch="puc.swire.io")) as client:
        assert client.base_url.startswith("https://") and client.relay_url.startswith("wss://")
    with Client(token=make_token()) as client:
        assert client.base_url.startswith("https://") and client.relay_url.startswith("wss://")


# -- TLS, REST side (a TLS loopback server with a throwaway CA) --------------------------------


class TLSServer(hostile.RawServer):
    """``RawServer`` speaking TLS with a certificate for 127.0.0.1/localhost from ``ca``."""

    def __init__(self, behaviour: hostile.Behaviour, ca: trustme.CA) -> None:
        super().__init__(behaviour)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.ctx)
        self.tls_errors = 0

    def _serve(self, conn: Any) -> None:  # type: ignore[override]
        conn.settimeout(5)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.tls_errors += 1
            conn.close()
            return
        tls.settimeout(0.05)
        with self.lock:
            self._conns.append(tls)
        super()._serve(tls)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_tls_untrusted_certificate_refused(ca: trustme.CA) -> None:
    with TLSServer(hostile.answer(200, hostile.EMPTY_PAGE), ca) as server:
        with Client(token=TOKEN, base_url=server.url, max_retries=2) as client:
            with pytest.raises(APIConnectionError) as info:
                client.conversation.get_conversations()
        assert "TLS" in str(info.value) or "certificate" in str(info.value).lower()
        assert server.requests == [], "a request was sent over an unverified connection"
        assert server.connections == 1, "a certificate failure must not be retried"


def test_tls_trusted_with_ca_bundle_works(ca: trustme.CA, ca_file: str) -> None:
    with TLSServer(hostile.answer(200, hostile.EMPTY_PAGE), ca) as server:
        with Client(token=TOKEN, base_url=server.url, verify=ca_file) as client:
            page = client.conversation.get_conversations()
        assert page.data == [] and len(server.requests) == 1


def test_tls_wrong_host_refused(ca: trustme.CA, ca_file: str) -> None:
    """A certificate from a trusted CA but for another name is refused."""

    class OtherName(TLSServer):
        def __init__(self, behaviour: hostile.Behaviour, ca: trustme.CA) -> None:
            hostile.RawServer.__init__(self, behaviour)
            self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("fabric.example.com").configure_cert(self.ctx)
            self.tls_errors = 0

    with OtherName(hostile.answer(200, hostile.EMPTY_PAGE), ca) as server:
        with Client(token=TOKEN, base_url=server.url, verify=ca_file) as client:
            with pytest.raises(APIConnectionError):
                client.conversation.get_conversations()
        assert server.requests == []


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verify_false_is_explicit(ca: trustme.CA) -> None:
    with TLSServer(hostile.answer(200, hostile.EMPTY_PAGE), ca) as server:
        with Client(token=TOKEN, base_url=server.url, verify=False) as client:
            assert client.conversation.get_conversations().data == []


def _unused() -> None:  # keep imports honest for linters
    threading.Event()
