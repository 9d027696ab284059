"""Hostile REST servers: every call ends within its timeout, memory stays bounded.

Each server is a raw-socket loopback server from ``hostile.py``. Client timeouts are short
(0.5 s) so the bound on each call is a couple of seconds; a call that overruns its bound is
released by stopping the server, and the test fails (it never hangs).
"""

from __future__ import annotations

import tracemalloc
from typing import Any, Callable, Iterator

import pytest

from signalwire_conversation import (
    APIConnectionError,
    APITimeoutError,
    Client,
    ResponseValidationError,
    SignalWireError,
)
from signalwire_conversation.transport import DEFAULT_MAX_RESPONSE_BYTES

from . import hostile
from .helpers import call_bounded, make_token

T = 0.5  # the client's connect and read timeout in these tests
BOUND = 4 * T + 1.0  # a call must end well within this (connect + read + margin)

DEFECT_DEADLINE = (
    "defect D3: http.Transport has no total deadline per attempt: requests' read timeout is per "
    "socket read, so a server that sends one byte every 50 ms keeps a call alive forever"
)


def client_for(server: hostile.RawServer, **kw: Any) -> Client:
    kw.setdefault("timeout", (T, T))
    kw.setdefault("max_retries", 0)
    return Client(token=make_token(), base_url=server.url, **kw)


@pytest.fixture
def serve() -> Iterator[Callable[..., hostile.RawServer]]:
    servers: list[hostile.RawServer] = []

    def start(behaviour: hostile.Behaviour, **kw: Any) -> hostile.RawServer:
        s = hostile.RawServer(behaviour, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def test_accepts_and_never_answers_get(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.never_answer)
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, f"the call did not end within {BOUND}s: {out}"
    assert isinstance(out.error, APITimeoutError), out
    assert out.elapsed < 2 * T + 0.5, out


def test_never_answers_with_retries_bounded(serve: Callable[..., hostile.RawServer]) -> None:
    """GET retries on timeouts: 3 attempts, each bounded, plus capped backoff."""
    server = serve(hostile.never_answer)
    with client_for(server, max_retries=2) as client:
        out = call_bounded(client.conversation.get_conversations, 3 * BOUND + 3.0, on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, APITimeoutError), out
    assert server.connections == 3, f"expected 1 attempt + 2 retries, saw {server.connections}"


def test_never_answers_post_not_retried(serve: Callable[..., hostile.RawServer]) -> None:
    """A send whose answer never comes may have been delivered: it is not retried."""
    server = serve(hostile.scripted(
        hostile.answer(200, hostile.SUBSCRIBER_INFO), hostile.answer(200, hostile.JOIN),
        hostile.never_answer,
    ))
    with client_for(server, max_retries=3) as client:
        out = call_bounded(lambda: client.conversation.send_message("addr-them", "hi"), BOUND + 2,
                           on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, APITimeoutError), out
    posts = [r for r in server.requests if r.method == "POST" and r.target.startswith("/api/fabric/messages")]
    assert len(posts) == 1, f"send_message was sent {len(posts)} times: {server.requests}"


def test_headers_then_silence(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.hang_after_headers)
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, APITimeoutError), out


def test_status_line_byte_by_byte_forever(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.trickle(interval=0.05))
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, f"the call outlived its {T}s timeouts by far: {out}"
    assert isinstance(out.error, APITimeoutError), out


def test_body_byte_by_byte_forever(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.trickle_body(interval=0.05))
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, f"the call outlived its {T}s timeouts by far: {out}"
    assert isinstance(out.error, APITimeoutError), out


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_endless_body_refused_with_bounded_memory(serve: Callable[..., hostile.RawServer], chunked: bool) -> None:
    server = serve(hostile.endless_body(budget=256 * 1024 * 1024, chunked=chunked))
    with client_for(server, timeout=(T, 5.0)) as client:
        tracemalloc.start()
        try:
            out = call_bounded(client.conversation.get_conversations, 30.0, on_overrun=server.stop)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert out.finished, out
    assert isinstance(out.error, ResponseValidationError), out
    assert "larger than" in str(out.error)
    # it stopped reading at the limit (plus what the socket buffers held)
    assert server.bytes_sent < DEFAULT_MAX_RESPONSE_BYTES + 16 * 1024 * 1024, server.bytes_sent
    assert peak < 3 * DEFAULT_MAX_RESPONSE_BYTES, f"peak traced memory {peak / 1e6:.1f} MB"


def test_huge_content_length_refused_before_reading(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.answer(200, b"{}", content_length=10**12))
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, ResponseValidationError), out


def test_reset_is_a_clear_connection_error(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.reset_connection)
    with client_for(server) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, APIConnectionError) and not isinstance(out.error, APITimeoutError), out
    assert "127.0.0.1" in str(out.error)


def test_refused_connection(serve: Callable[..., hostile.RawServer]) -> None:
    server = serve(hostile.never_answer)
    url = server.url
    server.stop()  # nothing listens there any more
    with Client(token=make_token(), base_url=url, timeout=(T, T), max_retries=1) as client:
        out = call_bounded(client.conversation.get_conversations, BOUND + 2, on_overrun=lambda: None)
    assert out.finished, out
    assert isinstance(out.error, APIConnectionError), out
    assert "connect" in str(out.error)


def test_every_error_is_an_sdk_error(serve: Callable[..., hostile.RawServer]) -> None:
    """A mixed bag of garbage, one per connection: only SignalWireError subclasses come out."""
    garbage = [
        b"HTTP/1.1 200 OK\r\n\r\n",                              # no length, empty, close
        b"HTTP/1.1 999 WHAT\r\nContent-Length: 2\r\n\r\n{}",      # unknown status
        b"HTTP/1.0 200\r\nContent-Length: 4\r\n\r\nnull",        # JSON null
        b"NOT HTTP AT ALL\r\n\r\n",                               # not a status line
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",     # bad Content-Length
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\xff\xfe\xfd\xfc\xfb",  # invalid UTF-8
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[1, 2, 3]",  # a list, not an object
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
        b"HTTP/1.1 301 Moved\r\nLocation: http://example.com/\r\nContent-Length: 0\r\n\r\n",
    ]

    def raw(data: bytes) -> hostile.Behaviour:
        def b(conn: Any, req: hostile.Request, server: hostile.RawServer) -> None:
            hostile.send_all(conn, data)
        return b

    server = serve(hostile.scripted(*[raw(g) for g in garbage]))
    with client_for(server) as client:
        for data in garbage:
            out = call_bounded(client.conversation.get_conversations, BOUND, on_overrun=server.stop)
            assert out.finished, (data, out)
            assert isinstance(out.error, SignalWireError), (data, out)
            assert str(out.error), data
