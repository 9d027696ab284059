"""The HTTP fault matrix: each fault gives the documented retry or a clear error, and
``send_message`` is never delivered twice (counted on the emulator's store).

Policy under test (``signalwire_conversation/transport.py``, docs/concepts/errors.md): GET is retried on
connection errors, timeouts, 408, 429 and 5xx; POST only on a failed connect or on 429/503
(the server refused without acting), never after a read timeout or a reset after sending.
``Retry-After`` (seconds or HTTP date) is honoured up to a cap (60 s); a longer one raises
``RateLimitError`` at once.

Faults come from the emulator (``fail_next``: statuses, ``Retry-After``, ``"reset"``;
``latency``), from ``hostile.FaultProxy`` in front of it (a reset or a truncated answer *after*
the emulator acted), and from raw ``hostile`` servers (HTTP-date ``Retry-After``, non-JSON,
HTML and empty bodies).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from signalwire_conversation import (
    APIConnectionError,
    APITimeoutError,
    Client,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    SignalWireError,
)
from signalwire_conversation.testing import Emulator, Subscriber

from . import hostile
from .helpers import make_token

POST_MESSAGES = r"^/api/fabric/messages$"
GET_MESSAGES = r"^/api/fabric/messages$"


class World:
    def __init__(self, emu: Emulator, alice: Subscriber, bob: Subscriber) -> None:
        self.emu, self.alice, self.bob = emu, alice, bob
        self.clients: List[Client] = []

    def client(self, base_url: Optional[str] = None, **kw: Any) -> Client:
        kw.setdefault("timeout", (2.0, 2.0))
        kw.setdefault("max_retries", 2)
        c = Client(self.alice.token, base_url=base_url or self.emu.base_url, **kw)
        # warm the caches (subscriber info + join) so faults hit only the call under test
        c.conversation.join(self.bob.address_id)
        self.clients.append(c)
        return c

    def stored(self, text: str) -> int:
        return sum(1 for m in self.emu.messages() if m.get("text") == text)

    def posts(self) -> int:
        return self.emu.request_count("POST", POST_MESSAGES)

    def gets(self) -> int:
        return self.emu.request_count("GET", GET_MESSAGES)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(ping_interval=None) as emu:
        yield emu


@pytest.fixture
def world(emulator: Emulator) -> Iterator[World]:
    emulator.reset()
    w = World(emulator, emulator.add_subscriber("alice"), emulator.add_subscriber("bob"))
    emulator.send_message(w.bob, w.alice.address_id, "seed")
    yield w
    for c in w.clients:
        c.close()
    emulator.clear_faults()


def timed(fn: Callable[[], Any]) -> Tuple[Any, Optional[BaseException], float]:
    started = time.monotonic()
    try:
        return fn(), None, time.monotonic() - started
    except SignalWireError as exc:
        return None, exc, time.monotonic() - started


# -- send_message (POST): retried only when the server provably did not act -----------------


@pytest.mark.parametrize("status,retried", [
    (429, True), (503, True), (500, False), (502, False), (504, False), (408, False),
])
def test_send_message_status_faults(world: World, status: int, retried: bool) -> None:
    client = world.client()
    world.emu.fail_next(status, times=1, retry_after=0, method="POST", path=POST_MESSAGES)
    before = world.posts()
    sent, err, _ = timed(lambda: client.conversation.send_message(world.bob.address_id, f"s{status}"))
    if retried:
        assert err is None and sent.id, err
        assert world.posts() - before == 2
        assert world.stored(f"s{status}") == 1
    else:
        assert isinstance(err, (ServerError,) if status >= 500 else SignalWireError), err
        assert getattr(err, "status_code", None) == status and str(err).startswith(f"HTTP {status}")
        assert world.posts() - before == 1, "a POST that may have been acted on was retried"
        assert world.stored(f"s{status}") == 0


def test_send_message_retry_after_seconds_honoured(world: World) -> None:
    client = world.client()
    world.emu.fail_next(429, times=1, retry_after=1, method="POST", path=POST_MESSAGES)
    sent, err, took = timed(lambda: client.conversation.send_message(world.bob.address_id, "ra"))
    assert err is None, err
    assert 0.95 <= took < 5, f"Retry-After: 1 gave a {took:.2f}s wait"
    assert world.stored("ra") == 1


def test_retry_after_beyond_the_cap_raises_at_once(world: World) -> None:
    client = world.client()
    world.emu.fail_next(429, times=1, retry_after=3600, method="POST", path=POST_MESSAGES)
    _, err, took = timed(lambda: client.conversation.send_message(world.bob.address_id, "cap"))
    assert isinstance(err, RateLimitError) and err.retry_after == 3600, err
    assert took < 1.0
    assert world.stored("cap") == 0


def test_send_message_429_until_retries_run_out(world: World) -> None:
    client = world.client(max_retries=2)
    world.emu.fail_next(429, times=5, retry_after=0, method="POST", path=POST_MESSAGES)
    before = world.posts()
    _, err, _ = timed(lambda: client.conversation.send_message(world.bob.address_id, "x429"))
    assert isinstance(err, RateLimitError), err
    assert world.posts() - before == 3
    assert world.stored("x429") == 0


def test_send_message_reset_before_answer_not_retried(world: World) -> None:
    """The emulator closes without answering: the client cannot know; it must not resend."""
    client = world.client()
    world.emu.fail_next("reset", times=1, method="POST", path=POST_MESSAGES)
    before = world.posts()
    _, err, _ = timed(lambda: client.conversation.send_message(world.bob.address_id, "rst"))
    assert isinstance(err, APIConnectionError) and not isinstance(err, APITimeoutError), err
    assert world.posts() - before == 1
    assert world.stored("rst") == 0


def test_send_message_read_timeout_not_retried(world: World) -> None:
    """The emulator stores the message, then answers too late: exactly one copy exists."""
    client = world.client(timeout=(2.0, 0.4), max_retries=3)
    world.emu.latency = 1.0
    before = world.posts()
    try:
        _, err, took = timed(lambda: client.conversation.send_message(world.bob.address_id, "slow"))
    finally:
        world.emu.latency = 0.0
    assert isinstance(err, APITimeoutError), err
    assert took < 1.5
    assert world.posts() - before == 1, "a send that timed out reading was sent again"
    world.emu.wait_for(lambda: world.stored("slow") == 1, timeout=5)


@pytest.mark.parametrize("action", [hostile.RESET_AFTER, hostile.TRUNCATE_AFTER, hostile.RESET_BEFORE])
def test_send_message_through_a_faulty_proxy(world: World, action: str) -> None:
    """The proxy resets (or truncates) the client's connection: before forwarding (the server
    never saw it), or after the emulator stored the message and answered. The client cannot
    tell the two apart, so it never resends; and the store holds at most one copy."""
    port = int(world.emu.base_url.rsplit(":", 1)[1])
    with hostile.FaultProxy(("127.0.0.1", port), plan=[action], only_method="POST") as proxy:
        client = Client(world.alice.token, base_url=proxy.url, timeout=(2, 2), max_retries=3)
        world.clients.append(client)
        # the join POST goes through the proxy too: let it pass first
        proxy.plan = []
        client.conversation.join(world.bob.address_id)
        proxy.plan = [action]
        before = world.posts()
        _, err, _ = timed(lambda: client.conversation.send_message(world.bob.address_id, f"p-{action}"))
        sent_posts = [a for a in proxy.actions if a[0] == "POST" and a[1].startswith("/api/fabric/messages")]
    assert isinstance(err, (APIConnectionError, ResponseValidationError)), err
    assert len(sent_posts) == 1, f"the POST was sent {len(sent_posts)} times: {proxy.actions}"
    expected = 0 if action == hostile.RESET_BEFORE else 1
    assert world.posts() - before == expected
    assert world.stored(f"p-{action}") == expected


# -- reads (GET): retried on everything transient -------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_get_retried_then_succeeds(world: World, status: int) -> None:
    client = world.client()
    world.emu.fail_next(status, times=2, retry_after=0, method="GET", path=GET_MESSAGES)
    before = world.gets()
    page, err, _ = timed(lambda: client.conversation.get_messages())
    assert err is None, err
    assert [m.text for m in page.data] == ["seed"]
    assert world.gets() - before == 3


@pytest.mark.parametrize("status", [500, 503])
def test_get_gives_up_after_max_retries(world: World, status: int) -> None:
    client = world.client(max_retries=1)
    world.emu.fail_next(status, times=5, retry_after=0, method="GET", path=GET_MESSAGES)
    before = world.gets()
    _, err, _ = timed(lambda: client.conversation.get_messages())
    assert isinstance(err, ServerError) and err.status_code == status, err
    assert world.gets() - before == 2
    assert err.request_id, "the emulator sends X-Request-Id; it belongs on the error"


def test_get_reset_retried(world: World) -> None:
    client = world.client()
    world.emu.fail_next("reset", times=2, method="GET", path=GET_MESSAGES)
    page, err, _ = timed(lambda: client.conversation.get_messages())
    assert err is None and len(page.data) == 1, err


def test_get_read_timeout_retried_then_clear_error(world: World) -> None:
    client = world.client(timeout=(2.0, 0.3), max_retries=1)
    world.emu.latency = 0.8
    try:
        _, err, took = timed(lambda: client.conversation.get_messages())
    finally:
        world.emu.latency = 0.0
    assert isinstance(err, APITimeoutError), err
    assert "timed out" in str(err) and "/api/fabric/messages" in str(err)
    assert world.gets() == 2


# D11 (fixed in 6d70caf): a GET whose body broke off was not retried.
def test_get_truncated_answer_retried(world: World) -> None:
    port = int(world.emu.base_url.rsplit(":", 1)[1])
    with hostile.FaultProxy(("127.0.0.1", port), plan=[hostile.TRUNCATE_AFTER], only_method="GET") as proxy:
        client = Client(world.alice.token, base_url=proxy.url, timeout=(2, 2), max_retries=2)
        world.clients.append(client)
        page, err, _ = timed(lambda: client.conversation.get_conversations())
    assert err is None, err
    assert len(page.data) == 1
    assert [a[2] for a in proxy.actions if a[1].startswith("/api/fabric/conversations")][:2] == [
        hostile.TRUNCATE_AFTER, hostile.FORWARD]


# -- bodies the SDK must not choke on (raw servers) -----------------------------------------


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def test_retry_after_http_date_honoured() -> None:
    posts: List[str] = []

    def count_post(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
        posts.append(req.body.decode())
        hostile.answer(200, b'{"id": "m1"}')(conn, req, server)

    script = hostile.scripted(
        hostile.answer(200, hostile.SUBSCRIBER_INFO), hostile.answer(200, hostile.JOIN),
        hostile.answer(429, b'{"error": "slow down"}', headers=[("Retry-After", _http_date(2))]),
        count_post,
    )
    with hostile.RawServer(script) as server:
        with Client(make_token(), base_url=server.url, max_retries=2) as client:
            client.conversation.join("addr-them")
            sent, err, took = timed(lambda: client.conversation.send_message("addr-them", "hd"))
    assert err is None and sent.id == "m1", err
    # an HTTP date has 1 s resolution: "now + 2 s" means a wait of 1-2 s
    assert 0.9 <= took < 4, f"waited {took:.2f}s for an HTTP-date Retry-After 2 s ahead"
    assert len(posts) == 1


@pytest.mark.parametrize("name,response,expected", [
    ("non-json-200", hostile.http_response(200, b"this is not json", headers=[("Content-Type", "text/plain")]),
     ResponseValidationError),
    ("json-with-wrong-content-type", hostile.http_response(200, b"<html><body>oops</body></html>",
                                                           headers=[("Content-Type", "text/html")]),
     ResponseValidationError),
    ("html-error-page-502", hostile.http_response(502, b"<html><head><title>502 Bad Gateway</title></head>"
                                                       b"<body><h1>502</h1>nginx</body></html>",
                                                  headers=[("Content-Type", "text/html")]), ServerError),
    ("empty-200", hostile.http_response(200, b""), ResponseValidationError),
    ("truncated-json-200", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                           b"Connection: close\r\n\r\n{\"data\": [", APIConnectionError),
    ("json-not-an-envelope", hostile.http_response(200, b'{"items": []}'), ResponseValidationError),
    ("json-null", hostile.http_response(200, b"null"), ResponseValidationError),
])
def test_bad_bodies_give_a_clear_error(name: str, response: bytes, expected: type) -> None:
    def send(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
        hostile.send_all(conn, response)

    with hostile.RawServer(send) as server:
        with Client(make_token(), base_url=server.url, max_retries=1, timeout=(1, 1)) as client:
            _, err, took = timed(lambda: client.conversation.get_conversations())
    assert isinstance(err, expected), f"{name}: {err!r}"
    text = str(err)
    assert len(text) < 600, f"{name}: an unbounded error text ({len(text)} chars)"
    if expected is ServerError:  # an error page: the status and reason, not the markup
        assert "<html" not in text.lower() and "<body" not in text.lower(), f"{name}: HTML in the error: {text}"
    assert "/api/fabric/conversations" in text or isinstance(err, ServerError), text
    if expected is ServerError:
        assert server.connections == 2, "a 502 on a GET is retried"
    assert took < 5


@pytest.mark.parametrize("method", ["send_message", "join"])
def test_empty_200_on_posts(method: str) -> None:
    """send_message tolerates an empty answer (v4 ignores the body); join needs a group id."""
    script = hostile.scripted(hostile.answer(200, hostile.SUBSCRIBER_INFO),
                              hostile.answer(200, hostile.JOIN), hostile.answer(200, b""))
    with hostile.RawServer(script) as server:
        with Client(make_token(), base_url=server.url, max_retries=0) as client:
            if method == "send_message":
                client.conversation.join("addr-them")
                sent = client.conversation.send_message("addr-them", "e")
                assert sent.id is None and sent.text == "e" and sent.conversation_id == "group-1"
            else:
                client.conversation.get_subscriber_info()
                client.conversation.join("addr-them")  # answered with JOIN
                with pytest.raises(ResponseValidationError):
                    client.conversation.join("addr-other")  # answered with an empty body
