"""Transport hardening (issue 13): what the token travels as, which CAs are trusted, how a
token refresh and many threads share one client, and which private internals are relied on.

Each test names the failure it guards against; docs/reliability.md lists them with figures.
Real parts throughout: the emulator (plain and TLS, with a throwaway ``trustme`` CA), a raw
loopback server that records the request headers, real threads.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests
import trustme

from signalwire_conversation import (
    APITimeoutError,
    AuthenticationError,
    Client,
    ConfigurationError,
    RealtimeError,
)
from signalwire_conversation.config import TokenProvider, resolve_verify
from signalwire_conversation.realtime import ConnectionState
from signalwire_conversation.realtime import connection as connection_module
from signalwire_conversation.realtime.connection import ConnectRefused
from signalwire_conversation.testing import Emulator, Subscriber
from signalwire_conversation import transport as transport_module

from . import hostile
from .conftest import wait_until
from .helpers import make_token

FAST = {"backoff_initial": 0.02, "backoff_max": 0.2}
TOKEN = make_token()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(ping_interval=None) as emulator:
        yield emulator


@pytest.fixture
def alice(emu: Emulator) -> Subscriber:
    return emu.add_subscriber("alice")


def recording_server() -> hostile.RawServer:
    """A loopback HTTP server answering ``{}`` and keeping each request's headers."""
    return hostile.RawServer(hostile.answer(200, b"{}"))


# -- 1. the token is the request's auth: ~/.netrc and ambient credentials never win ------------


def write_netrc(path: Path, host: str) -> Path:
    path.write_text(f"machine {host}\n  login someone-else\n  password hunter2-their-password\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def netrc_for_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A netrc entry for 127.0.0.1, both as ``$NETRC`` and as ``~/.netrc``."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = write_netrc(home / ".netrc", "127.0.0.1")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(netrc))
    # the probe: requests itself would use this entry for a request without auth
    assert requests.utils.get_netrc_auth("http://127.0.0.1:1/x") == ("someone-else", "hunter2-their-password")
    return netrc


def test_netrc_for_the_same_host_does_not_replace_the_token(netrc_for_loopback: Path) -> None:
    with recording_server() as server, Client(TOKEN, base_url=server.url, max_retries=0) as client:
        client._transport.get("/api/fabric/conversations")
    (request,) = server.requests
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert b"Basic" not in request.raw_head


def test_netrc_for_the_same_host_against_the_emulator(netrc_for_loopback: Path, emu: Emulator,
                                                      alice: Subscriber) -> None:
    # a Basic header instead of the SAT would be answered 401
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0) as client:
        assert client.conversation.get_subscriber_info().address_id == alice.address_id


def test_session_auth_and_header_do_not_accompany_the_token(netrc_for_loopback: Path) -> None:
    session = requests.Session()
    session.auth = ("session-user", "session-password")
    session.headers["Authorization"] = "Basic c2Vzc2lvbjpoZWFkZXI="
    with recording_server() as server, Client(TOKEN, base_url=server.url, session=session, max_retries=0) as client:
        client._transport.get("/api/fabric/conversations")
    session.close()
    (request,) = server.requests
    authorization = [v for k, v in request.headers if k.lower() == "authorization"]
    assert authorization == [f"Bearer {TOKEN}"]


# -- 2. one trust decision for REST and the websocket ----------------------------------------


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "WEBSOCKET_CLIENT_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def rest_and_websocket_work(emu: Emulator, name: str, **client_kwargs: Any) -> None:
    me, other = emu.add_subscriber(f"{name}-me"), emu.add_subscriber(f"{name}-other")
    got = threading.Event()
    with Client(me.token, base_url=emu.base_url, relay_url=emu.relay_url, listener_options=FAST,
                **client_kwargs) as client:
        client.conversation.send_message(other.address_id, "over https")
        client.conversation.subscribe(lambda event: got.set(), timeout=10)
        emu.send_message(other, me.address_id, "over wss")
        assert got.wait(10), "no message over wss"


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_from_the_environment_trusted_by_rest_and_websocket(
    variable: str, tls_emulator: Emulator, ca_file: str, no_ca_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, ca_file)
    rest_and_websocket_work(tls_emulator, variable.lower())


def test_websocket_client_ca_variable_alone_is_not_enough(
    tls_emulator: Emulator, ca_file: str, no_ca_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the websocket-client-only variable used to make wss trust what https did not
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", ca_file)
    me = tls_emulator.add_subscriber("wsvar")
    with Client(me.token, base_url=tls_emulator.base_url, relay_url=tls_emulator.relay_url,
                listener_options=FAST) as client:
        with pytest.raises(RealtimeError, match="certificate verification failed"):
            client.conversation.subscribe(timeout=5)


def test_ca_path_applies_to_both_channels(tls_emulator: Emulator, ca_file: str, no_ca_env: None) -> None:
    rest_and_websocket_work(tls_emulator, "path", verify=ca_file)


def test_ca_directory_applies_to_both_channels(tls_emulator: Emulator, ca: trustme.CA, no_ca_env: None,
                                               tmp_path: Path) -> None:
    # a directory of hashed certificates (c_rehash layout), as requests accepts
    import subprocess

    digest = subprocess.run(["openssl", "x509", "-hash", "-noout"], input=ca.cert_pem.bytes(),
                            capture_output=True, check=False)
    if digest.returncode != 0:
        pytest.skip("openssl is needed to name a hashed CA directory")
    name = digest.stdout.decode().strip()
    (tmp_path / f"{name}.0").write_bytes(ca.cert_pem.bytes())
    rest_and_websocket_work(tls_emulator, "dir", verify=str(tmp_path))


def test_untrusted_websocket_certificate_fails_subscribe_at_once_and_for_good(
    tls_emulator: Emulator, no_ca_env: None
) -> None:
    emu = tls_emulator
    me = emu.add_subscriber("untrusted")
    before = len(emu.all_connections)
    with Client(me.token, base_url=emu.base_url, relay_url=emu.relay_url,
                listener_options={**FAST, "connect_timeout": 2.0}) as client:
        started = time.monotonic()
        with pytest.raises(RealtimeError) as info:
            client.conversation.subscribe(timeout=10)
        elapsed = time.monotonic() - started
        print(f"\ntls: subscribe(timeout=10) with an untrusted certificate raised after {elapsed * 1000:.0f} ms")
        assert elapsed < 10, "subscribe() waited out its timeout instead of failing"
        message = str(info.value)
        assert "certificate verification failed" in message and emu.relay_url in message
        assert "REQUESTS_CA_BUNDLE" in message  # says how to fix it
        # fatal: the listener stopped, it does not retry in the background
        assert client.connection_state is ConnectionState.CLOSED
        assert client.listener_error is info.value
        listener = client._listener
        assert listener is not None and listener.wait(5)
        assert listener.stats["connect_failures"] == 0  # never counted as a retryable failure
        with pytest.raises(RealtimeError):
            client.conversation.subscribe(timeout=1)
    assert len(emu.all_connections) == before, "a websocket got through an unverified TLS handshake"


def test_verify_false_applies_to_both_channels(tls_emulator: Emulator, no_ca_env: None) -> None:
    import urllib3

    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        rest_and_websocket_work(tls_emulator, "noverify", verify=False)


def test_trust_decision_rules(tmp_path: Path, ca_file: str) -> None:
    import certifi

    assert resolve_verify(True, environ={}) == certifi.where()
    assert resolve_verify(False, environ={"REQUESTS_CA_BUNDLE": ca_file}) is False
    assert resolve_verify(ca_file, environ={"REQUESTS_CA_BUNDLE": "/nope"}) == ca_file
    env = {"REQUESTS_CA_BUNDLE": ca_file, "CURL_CA_BUNDLE": "/nope", "SSL_CERT_FILE": "/nope"}
    assert resolve_verify(True, environ=env) == ca_file  # requests' order first
    assert resolve_verify(True, environ={"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": ca_file}) == ca_file
    with pytest.raises(ConfigurationError, match="SSL_CERT_FILE"):
        resolve_verify(True, environ={"SSL_CERT_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigurationError, match="does not exist"):
        Client(TOKEN, verify=str(tmp_path / "missing.pem"))


def test_session_without_trust_env_ignores_the_ca_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    session = requests.Session()
    session.trust_env = False
    with Client(TOKEN, base_url="https://127.0.0.1:9", session=session) as client:
        assert client._transport.verify == certifi.where() == client._verify
    session.close()
    with pytest.raises(ConfigurationError, match="REQUESTS_CA_BUNDLE"):
        Client(TOKEN, base_url="https://127.0.0.1:9")


# -- 3. a token refresh never blocks the other threads ---------------------------------------


class SlowTokens:
    """A token callable: the first call at once, every later one after ``delay`` seconds."""

    def __init__(self, emu: Emulator, who: Subscriber, delay: float) -> None:
        self.emu, self.who, self.delay = emu, who, delay
        self.calls = 0
        self.release = threading.Event()
        self.refreshed = threading.Event()

    def __call__(self) -> str:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(self.delay)
            self.refreshed.set()
        return self.emu.issue_token(self.who)


def latencies(client: Client, threads: int, calls: int) -> List[float]:
    """``threads`` threads each making ``calls`` REST calls; every call's duration."""
    out: List[float] = []
    lock = threading.Lock()
    errors: List[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        mine = []
        try:
            start.wait(10)
            for _ in range(calls):
                t0 = time.monotonic()
                client.conversation.get_conversations().data
                mine.append(time.monotonic() - t0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        with lock:
            out.extend(mine)

    pool = [threading.Thread(target=work, name=f"caller-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors, errors
    assert len(out) == threads * calls
    return out


#: the figure docs/reliability.md quotes (worst extra wait of an unrelated call during a refresh)
REFRESH_FIGURES: Dict[str, float] = {}


def test_slow_token_refresh_does_not_delay_other_threads(emu: Emulator, alice: Subscriber) -> None:
    tokens = SlowTokens(emu, alice, delay=3.0)
    with Client(tokens, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0) as client:
        emu.latency = 0.02
        latencies(client, 8, 5)  # warm-up: connections open
        baseline = max(latencies(client, 8, 20))
        # one thread's call is answered 401: it refreshes (3 s) while 8 others keep calling
        emu.fail_next(401, method="GET", path=r"^/api/fabric/messages$")
        refresher_done = threading.Event()
        refresher_elapsed: List[float] = []

        def refresh_via_401() -> None:
            t0 = time.monotonic()
            client.conversation.get_messages(limit=1).data
            refresher_elapsed.append(time.monotonic() - t0)
            refresher_done.set()

        refresher = threading.Thread(target=refresh_via_401, name="refresher")
        refresher.start()
        wait_until(lambda: tokens.calls >= 2, 5, "the refresh to start")
        during: List[float] = []
        while not tokens.refreshed.is_set():  # bounded: the callable returns after 3 s
            during.extend(latencies(client, 8, 2))
        refresher.join(10)
        assert refresher_done.is_set() and refresher_elapsed[0] >= 2.9  # it did wait for the new token
        assert tokens.calls == 2  # single-flight: one refresh
        worst = max(during)
        REFRESH_FIGURES.update(baseline=baseline, worst=worst, calls=len(during))
        print(f"\nrefresh: baseline worst call {baseline * 1000:.0f} ms, worst during a 3 s refresh "
              f"{worst * 1000:.0f} ms over {len(during)} calls by 8 threads")
        assert len(during) >= 16
        assert worst <= baseline + 0.5, (baseline, worst)


def test_concurrent_401s_share_one_refresh(emu: Emulator, alice: Subscriber) -> None:
    tokens = SlowTokens(emu, alice, delay=1.0)
    with Client(tokens, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0) as client:
        first = client._tokens.get()
        emu.revoke_token(first)
        results = latencies(client, 6, 1)  # all six get 401, wait for one refresh, succeed
        assert len(results) == 6 and tokens.calls == 2
        assert client._tokens.get() != first


def test_hung_token_callable_is_bounded(emu: Emulator, alice: Subscriber) -> None:
    tokens = SlowTokens(emu, alice, delay=60.0)
    with Client(tokens, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0,
                token_timeout=0.5) as client:
        emu.fail_next(401, method="GET", path=r"^/api/fabric/conversations$")
        t0 = time.monotonic()
        with pytest.raises(ConfigurationError, match="did not return within 0.5 s"):
            client.conversation.get_conversations()
        assert time.monotonic() - t0 < 5
        # the client still works with the current token
        client.conversation.get_conversations()
        tokens.release.set()  # let the hung call end (its late token is dropped)


def test_hung_calls_do_not_pile_up_threads() -> None:
    release = threading.Event()
    calls = [0]

    def hangs() -> str:
        calls[0] += 1
        if calls[0] > 1:
            release.wait(30)
        return TOKEN

    provider = TokenProvider(hangs, timeout=0.05)
    try:
        for _ in range(3):
            with pytest.raises(ConfigurationError, match="did not return"):
                provider.refresh()
        with pytest.raises(ConfigurationError, match="has not returned for 3 earlier refreshes"):
            provider.refresh()
        assert calls[0] == 4  # the initial call and three hung ones; none started after
    finally:
        release.set()
    assert provider.get() == TOKEN


def test_token_callable_that_uses_the_same_client_does_not_deadlock(emu: Emulator, alice: Subscriber) -> None:
    holder: Dict[str, Client] = {}
    seen: List[int] = []

    def tokens() -> str:
        client = holder.get("client")
        if client is not None:
            # the callable asks the client itself, which is answered 401 too: that inner refresh
            # must not wait for the refresh it is part of
            seen.append(len(client.conversation.get_conversations().data))
        return emu.issue_token(alice)

    with Client(tokens, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0, token_timeout=3.0) as client:
        holder["client"] = client
        emu.fail_next(401, times=2, method="GET", path=r"^/api/fabric/conversations$")
        client.conversation.get_conversations()  # would raise "did not return within 3 s"
        assert seen == [0]


def test_token_callable_failure_keeps_the_current_token(emu: Emulator, alice: Subscriber) -> None:
    calls = [0]

    def tokens() -> str:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("identity provider down")
        return alice.token

    with Client(tokens, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=0) as client:
        emu.fail_next(401, method="GET", path=r"^/api/fabric/conversations$")
        with pytest.raises(ConfigurationError, match="identity provider down"):
            client.conversation.get_conversations()
        assert client._tokens.get() == alice.token
        client.conversation.get_conversations()


# -- 4. the pool is sized for the threads ----------------------------------------------------


class PoolWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage().lower():
            self.messages.append(record.getMessage())


@pytest.fixture
def pool_warnings() -> Iterator[PoolWarnings]:
    handler = PoolWarnings()
    log = logging.getLogger("urllib3.connectionpool")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def concurrent_calls(client: Client, emu: Emulator, threads: int) -> None:
    emu.latency = 0.2  # every call holds its connection for a while: they overlap
    latencies(client, threads, 2)


def test_64_threads_on_one_client_no_pool_full_warning(emu: Emulator, alice: Subscriber,
                                                       pool_warnings: PoolWarnings) -> None:
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url) as client:
        assert client._transport.max_connections == 64
        concurrent_calls(client, emu, 64)
    print(f"\npool: 64 threads x 2 calls on one client, {len(pool_warnings.messages)} pool-full warnings")
    assert pool_warnings.messages == []


def test_too_small_a_pool_is_what_warns(emu: Emulator, alice: Subscriber, pool_warnings: PoolWarnings) -> None:
    # the probe of the test above: with 8 connections for 24 threads the warning does appear
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, max_connections=8) as client:
        concurrent_calls(client, emu, 24)
    print(f"\npool: 24 threads x 2 calls, max_connections=8: {len(pool_warnings.messages)} pool-full warnings")
    assert pool_warnings.messages


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "64", None])
def test_max_connections_checked(bad: Any) -> None:
    from signalwire_conversation import ValidationError

    with pytest.raises(ValidationError, match="max_connections"):
        Client(TOKEN, max_connections=bad)


def test_own_session_keeps_the_total_deadline() -> None:
    # headers trickled one byte every 50 ms: each read is in time, the answer never ends
    session = requests.Session()
    with hostile.RawServer(hostile.trickle(0.05)) as server:
        with Client(TOKEN, base_url=server.url, session=session, timeout=(0.5, 1.0), max_retries=0) as client:
            t0 = time.monotonic()
            with pytest.raises(APITimeoutError, match="within 1.5 s"):
                client._transport.get("/api/fabric/conversations")
            elapsed = time.monotonic() - t0
    session.close()
    print(f"\nsession=: trickled answer ended by the 1.5 s deadline after {elapsed:.2f} s")
    assert elapsed < 5, elapsed


def test_own_session_custom_pools_left_alone() -> None:
    from urllib3.connectionpool import HTTPConnectionPool

    class MyPool(HTTPConnectionPool):
        pass

    session = requests.Session()
    adapter = session.get_adapter("http://x")
    adapter.poolmanager.pool_classes_by_scheme = {"http": MyPool, "https": MyPool}  # type: ignore[attr-defined]
    with Client(TOKEN, base_url="http://127.0.0.1:9", session=session):
        assert adapter.poolmanager.pool_classes_by_scheme["http"] is MyPool  # type: ignore[attr-defined]
    session.close()


# -- 5. fragile internals: checked, with a public-API fall-back -------------------------------


def test_fast_path_internals_present_in_the_installed_websocket_client() -> None:
    assert connection_module.fast_path_problem() is None


def test_missing_internals_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    import websocket

    def recv_frame(self: Any) -> Any:  # a future version reading frames differently
        return self.read_everything_at_once()

    monkeypatch.setattr(websocket.frame_buffer, "recv_frame", recv_frame)
    assert "recv_strict" in (connection_module.fast_path_problem() or "")
    monkeypatch.undo()
    monkeypatch.delattr(websocket, "continuous_frame")
    assert "continuous_frame" in (connection_module.fast_path_problem() or "")


def test_instance_without_internals_falls_back_and_logs_once(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import websocket

    original = connection_module._CappedWebSocket.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        del self.lock  # a websocket-client that renamed its send lock

    monkeypatch.setattr(connection_module._CappedWebSocket, "__init__", init)
    monkeypatch.setattr(connection_module, "FAST_PATH", True)
    monkeypatch.setattr(connection_module, "_fallback_logged", False)
    with caplog.at_level(logging.DEBUG, logger="signalwire_conversation.realtime"):
        first = connection_module._new_websocket(None, 1024)
        second = connection_module._new_websocket(None, 1024)
    assert type(first) is websocket.WebSocket and type(second) is websocket.WebSocket
    assert connection_module.FAST_PATH is False
    logged = [r for r in caplog.records if "fast path off" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.DEBUG and "lock" in logged[0].getMessage()


def test_fallback_path_end_to_end(emu: Emulator, alice: Subscriber, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole realtime test module also runs on the fall-back (tests/realtime/conftest.py);
    this is the short version: receive, ack, and the size cap, over the public API."""
    monkeypatch.setattr(connection_module, "FAST_PATH", False)
    bob = emu.add_subscriber("bob")
    got: List[str] = []
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                listener_options={**FAST, "max_message_bytes": 4096}) as client:
        client.conversation.subscribe(lambda e: got.append(e.text or ""), timeout=10)
        listener = client._listener
        assert listener is not None and listener._conn is not None
        assert listener._conn._reader is None  # really the public-API path
        emu.send_message(bob, alice.address_id, "hello")
        wait_until(lambda: got == ["hello"], 10, "delivery")
        assert emu.unacked_events() == []
        emu.send_raw('{"jsonrpc":"2.0","method":"x","params":{"pad":"' + "a" * 10_000 + '"}}', alice)
        wait_until(lambda: listener.stats["disconnects"] == 1, 10, "the oversized message to replace the link")


class PublicSocket:
    """A socket exposing only public methods (no ``_io_refs``/``_decref_socketios``)."""

    def __init__(self, sock: Any) -> None:
        self._s = sock
        self.closed = False

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return int(self._s.recv_into(buffer, nbytes, flags))

    def recv(self, n: int, flags: int = 0) -> bytes:
        return bytes(self._s.recv(n, flags))

    def settimeout(self, value: Any) -> None:
        self._s.settimeout(value)

    def gettimeout(self) -> Any:
        return self._s.gettimeout()

    def fileno(self) -> int:
        return int(self._s.fileno())

    def close(self) -> None:
        self.closed = True
        self._s.close()


def test_deadline_reader_needs_no_private_socket_internals() -> None:
    import socket

    a, b = socket.socketpair()
    try:
        sock = PublicSocket(a)
        view = transport_module._DeadlineSocket(sock, time.monotonic() + 5)
        reader = view.makefile("rb")
        b.sendall(b"HTTP/1.1 200 OK\r\n")
        assert reader.readline() == b"HTTP/1.1 200 OK\r\n"
        # http.client closes a Connection: close answer's socket before its body is read:
        # the close waits for the reader, as socket.socket's own makefile arranges
        view.close()
        assert not sock.closed
        b.sendall(b"body")
        assert reader.read(4) == b"body"
        reader.close()
        assert sock.closed
    finally:
        b.close()
        a.close()


def test_deadline_reader_bounds_every_read() -> None:
    import socket

    a, b = socket.socketpair()
    try:
        a.settimeout(30)
        view = transport_module._DeadlineSocket(a, time.monotonic() + 0.3)
        reader = view.makefile("rb", 0)
        t0 = time.monotonic()
        with pytest.raises(socket.timeout):
            reader.read(1)  # nothing is ever sent: the deadline, not the 30 s timeout, ends it
        assert time.monotonic() - t0 < 5
        reader.close()
    finally:
        b.close()
        a.close()


# -- 6. the websocket's authentication error is redacted -------------------------------------


def test_refused_websocket_authentication_body_is_redacted() -> None:
    secret = make_token(secret="EchoedBackByTheServer")
    refused = ConnectRefused(f"signalwire.connect failed: bad token {secret}", code=-32002,
                             error={"code": -32002, "message": f"bad jwt_token {secret}",
                                    "data": {"jwt_token": secret}})
    assert secret not in str(refused) and secret not in repr(refused.error)
    err = AuthenticationError(f"the relay refused the token: {refused.message}", status_code=401,
                              body={"echo": secret, "nested": [{"authorization": f"Bearer {secret}"}]})
    for text in (str(err), repr(err), repr(err.body), err.message):
        assert secret not in text and "EchoedBackByTheServer" not in text


def test_refused_websocket_authentication_end_to_end(emu: Emulator, alice: Subscriber) -> None:
    token = emu.issue_token(alice)
    emu.revoke_token(token)
    with Client(token, base_url=emu.base_url, relay_url=emu.relay_url, listener_options=FAST) as client:
        with pytest.raises(AuthenticationError) as info:
            client.conversation.subscribe(timeout=10)
    err = info.value
    assert err.method == "signalwire.connect"
    for piece in [token] + [p for p in token.split(".") if len(p) >= 8]:
        assert piece not in repr(err.body) and piece not in str(err)


def test_fast_path_can_be_switched_off_from_the_environment() -> None:
    import os
    import subprocess
    import sys

    code = "from signalwire_conversation.realtime import connection as c; print(c.FAST_PATH)"
    env = {**os.environ, "SIGNALWIRE_WS_FAST_PATH": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    env["SIGNALWIRE_WS_FAST_PATH"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


def test_bearer_auth_never_shows_the_token() -> None:
    from signalwire_conversation.transport import BearerAuth

    auth = BearerAuth(TOKEN)
    assert TOKEN not in repr(auth) and TOKEN not in str(auth)
