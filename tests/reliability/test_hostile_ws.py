"""Hostile relays: the websocket side of the hostile-server suite.

Raw-socket loopback relays (``hostile.py``) that never finish the upgrade, never answer
``signalwire.connect``, go silent after authenticating, or send a frame that never ends (fast,
or one byte at a time). Expectations: ``subscribe()`` ends within its timeout, the listener
notices a dead or stuck link within its documented bound and reconnects, memory stays bounded,
and ``close()`` leaves no thread behind.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterator

import pytest

from signalwire_conversation import Client, RealtimeError, SignalWireError

from . import hostile
from .conftest import live_threads, settle_threads, wait_until
from .helpers import call_bounded, make_token

LISTENER = {"connect_timeout": 1.0, "ping_timeout": 2.0, "backoff_initial": 0.05, "backoff_max": 0.2}
FRAME_LIMIT_HINT = 16 * 1024 * 1024  # what we would expect a frame cap to be, at most

# Fixed upstream (45e5baa), guarded here: D8 (no frame cap, a trickled frame blocked the
# reader forever), D9 (one deeply nested frame killed the listener), D10 (timeout=inf).


@pytest.fixture
def relay() -> Iterator[Callable[[hostile.Behaviour], hostile.RawServer]]:
    servers: list[hostile.RawServer] = []
    clients: list[Client] = []
    baseline = live_threads()

    def start(behaviour: hostile.Behaviour) -> hostile.RawServer:
        s = hostile.RawServer(behaviour).start()
        servers.append(s)
        return s

    start.clients = clients  # type: ignore[attr-defined]
    yield start
    for c in clients:
        c.close()
    for s in servers:
        s.stop()
    left = [n for n in settle_threads(baseline) if n.startswith("signalwire")]
    assert not left, f"threads left behind: {left}"


def client_for(relay: Any, server: hostile.RawServer, **listener: Any) -> Client:
    c = Client(token=make_token(), base_url=server.url, max_retries=0, timeout=(1, 1),
               listener_options={**LISTENER, **listener})
    relay.clients.append(c)
    return c


@pytest.mark.parametrize("behaviour", [hostile.never_answer, hostile.ws_silent],
                         ids=["upgrade-never-answered", "connect-never-answered"])
def test_subscribe_ends_within_its_timeout(relay: Any, behaviour: hostile.Behaviour) -> None:
    server = relay(behaviour)
    client = client_for(relay, server)
    out = call_bounded(lambda: client.conversation.subscribe(timeout=2.0), 6.0, on_overrun=server.stop)
    assert out.finished, out
    assert isinstance(out.error, RealtimeError), out
    assert 1.5 < out.elapsed < 3.5, out
    # it keeps trying in the background, each attempt bounded by connect_timeout
    wait_until(lambda: server.connections >= 2, timeout=5, message="a second connect attempt")
    out = call_bounded(client.close, 6.0)
    assert out.finished and out.error is None, out


def test_silent_link_after_auth_is_replaced(relay: Any) -> None:
    server = relay(hostile.relay_then(lambda conn, req, srv: srv.hold(conn)))
    client = client_for(relay, server)
    states: list[Any] = []
    sub = client.conversation.subscribe(timeout=5.0)
    started = time.monotonic()
    wait_until(lambda: getattr(server, "authenticated", 0) >= 2, timeout=LISTENER["ping_timeout"] + 5,
               message="a reconnect after the link went silent")
    took = time.monotonic() - started
    assert took < LISTENER["ping_timeout"] + 3, f"dead link noticed after {took:.1f}s"
    assert client._listener.stats["dead_links"] >= 1
    sub.unsubscribe()
    del states


def test_endless_frame_is_cut_off(relay: Any) -> None:
    budget = 48 * 1024 * 1024
    server = relay(hostile.relay_then(hostile.ws_stream_after_auth(budget)))
    client = client_for(relay, server)
    client.conversation.subscribe(timeout=5.0)
    # the stream ends when the client drops the socket, or when the budget is spent
    wait_until(lambda: server.bytes_sent >= budget or getattr(server, "authenticated", 0) >= 2,
               timeout=30, message="the endless frame to end one way or the other")
    assert server.bytes_sent < FRAME_LIMIT_HINT + 8 * 1024 * 1024, (
        f"the client read {server.bytes_sent / 1e6:.0f} MB of one frame without cutting it off")


def test_trickled_frame_is_noticed(relay: Any) -> None:
    server = relay(hostile.relay_then(hostile.ws_trickle_after_auth(interval=0.05)))
    client = client_for(relay, server)
    client.conversation.subscribe(timeout=5.0)
    bound = LISTENER["ping_timeout"] + LISTENER["connect_timeout"] + 2
    try:
        wait_until(lambda: getattr(server, "authenticated", 0) >= 2, timeout=bound,
                   message="a reconnect away from a frame that never ends")
    finally:
        # release the stuck reader either way, so close() can join it
        server.stop()


@pytest.mark.parametrize("frame", [
    pytest.param(hostile.ws_frame("not json at all"), id="not-json"),
    pytest.param(bytes([0x81, 4]) + b"\xff\xfe\xfd\xfc", id="invalid-utf8-text"),
    pytest.param(bytes([0x82, 3]) + b"\x00\x01\x02", id="binary"),
    pytest.param(hostile.ws_frame('{"jsonrpc":"2.0","method":"signalwire.event","params":' + "[" * 5000 + "]" * 5000 + "}"),
                 id="deeply-nested"),
    pytest.param(hostile.ws_frame('{"jsonrpc":"2.0","id":"e1","method":"signalwire.event","params":{"event_type":'
                                  '"conversation.message","params":{"id":"m","details":' + '{"a":' * 900 + "1" + "}" * 900 + "}}}"),
                 id="nested-event-payload"),
    pytest.param(bytes([0x89, 0]), id="ping-control-frame"),
    pytest.param(bytes([0x8A, 0]), id="unsolicited-pong"),
    pytest.param(bytes([0x83, 0]), id="reserved-opcode"),
    pytest.param(bytes([0xC1, 1]) + b"x", id="rsv1-set"),
])
def test_garbage_after_auth_never_kills_the_listener(relay: Any, frame: bytes) -> None:
    """Junk is skipped or the link is replaced; either way the listener lives on."""
    server = relay(hostile.relay_then(hostile.ws_raw_after_auth(frame)))
    server.probed = threading.Event()  # type: ignore[attr-defined]
    client = client_for(relay, server)
    errors: list[BaseException] = []
    client._on_error = lambda exc, event: errors.append(exc)
    client.conversation.subscribe(timeout=5.0)
    # the relay sends a ping probe after the junk: its answer proves the junk was read
    wait_until(lambda: server.probed.is_set() or getattr(server, "authenticated", 0) >= 2
               or client._listener._fatal is not None, timeout=10, message="the probe answer or a reconnect")
    assert client._listener.state.value != "closed", client._listener.last_error
    assert client._listener._fatal is None
    for t in client._listener._threads:
        assert t.is_alive(), f"{t.name} died"


def test_subscribe_timeout_infinite(relay: Any) -> None:
    """``timeout=float('inf')`` either waits (and works) or is refused with a ValidationError."""
    server = relay(hostile.relay_then(lambda conn, req, srv: srv.hold(conn)))
    client = client_for(relay, server)
    out = call_bounded(lambda: client.conversation.subscribe(timeout=float("inf")), 8.0, on_overrun=client.close)
    assert out.finished, out
    assert out.error is None or isinstance(out.error, SignalWireError), (
        f"subscribe(timeout=inf) raised {out.error!r}")


def _unused(d: Dict[str, Any]) -> None:
    pass
