"""The relay websocket of docs/protocol.md §2, with ``websocket-client``: frames, acks, resume, pings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import websocket

from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import Relay, connected

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_connect_result_and_authorization_state(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay]) -> None:
    r = relay()
    answer = r.connect(alice.token)
    expected = fixture("v4-ws-connect-result.json")
    assert set(answer) == set(expected) and answer["jsonrpc"] == "2.0"
    result = answer["result"]
    assert set(result) == set(expected["result"])
    assert set(result["authorization"]) == set(expected["result"]["authorization"])
    sub = result["authorization"]["fabric_subscriber"]
    assert set(sub) == set(expected["result"]["authorization"]["fabric_subscriber"])
    assert sub["subscriber_id"] == alice.subscriber_id and sub["project_id"] == emu.project_id
    assert abs(sub["expires_at"] - (time.time() + 3600)) < 5 and isinstance(sub["expires_at"], int)
    assert isinstance(result["identity"], str) and result["ice_servers"] == []
    # v3 keeps the protocol only if protocol.split('_')[1] == authorization.jti
    assert result["protocol"].split("_")[1] == result["authorization"]["jti"]
    state = r.event("signalwire.authorization.state")
    assert set(state["params"]) == set(fixture("v4-ws-authorization-state-event-params.json"))
    assert state["params"]["params"]["authorization_state"]
    info = emu.connections[0]
    assert info.authenticated and info.subscriber == alice and not info.resumed
    assert info.connect_params is not None and info.connect_params["agent"] == "tests/emulator"
    assert info.protocol == result["protocol"]


def test_expires_at_follows_the_token(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay]) -> None:
    token = emu.issue_token(alice, ttl=120)
    result = relay().connect(token)["result"]
    assert abs(result["authorization"]["fabric_subscriber"]["expires_at"] - (time.time() + 120)) < 5


@pytest.mark.parametrize("kind", ["bad", "expired", "revoked", "missing"])
def test_fresh_connect_with_a_bad_token_fails(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay],
                                              kind: str) -> None:
    r = relay()
    if kind == "missing":
        answer = r.request("signalwire.connect", {"version": {"major": 4, "minor": 0, "revision": 0}})
        assert answer["error"]["code"] == -32602
        return
    token = {"bad": alice.token[:-2] + "xx", "expired": emu.issue_token(alice, ttl=-1)}.get(kind)
    if kind == "revoked":
        token = emu.issue_token(alice)
        emu.revoke_token(token)
    answer = r.connect(token)
    assert answer["error"] == {"code": -32002, "message": "Authentication failed"}
    assert emu.connections[0].authenticated is False


def test_requests_before_connect_and_unknown_methods(emu: Emulator, alice: Subscriber,
                                                     relay: Callable[..., Relay]) -> None:
    r = relay()
    assert r.request("signalwire.reauthenticate", {})["error"]["code"] == -32002
    pong = r.request("signalwire.ping", {"timestamp": 12.5})
    assert pong["result"] == {"timestamp": 12.5}
    r.connect(alice.token)
    assert r.request("nope.method")["error"]["code"] == -32601
    r.send("{not json")
    r.send("[1, 2]")
    assert r.request("signalwire.ping", {"timestamp": 1})["result"] == {"timestamp": 1}
    assert emu.connections[0].client_pings == 2


def test_message_events_reach_every_session_of_every_member(
    emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]
) -> None:
    carol = emu.add_subscriber("carol")
    a1, a2, b1, c1 = (connected(relay, s) for s in (alice, alice, bob, carol))
    sent = emu.send_message(bob, alice.address_id, "hi", metadata={"m": 1})
    for conn, author in ((a1, False), (a2, False), (b1, True)):
        frame = conn.event()
        params = frame["params"]
        assert frame["jsonrpc"] == "2.0" and isinstance(frame["id"], str)
        assert params["event_type"] == "conversation.message"
        assert isinstance(params["event_channel"], str) and isinstance(params["timestamp"], str)
        assert float(params["timestamp"]) == sent["ts"]
        assert params["is_author"] is author
        payload = params["params"]
        assert set(payload) == {"id", "type", "subtype", "kind", "hidden", "group_id", "from_fabric_address_id",
                                "ts", "metadata", "details", "text", "conversation_name", "user_name"}
        assert payload["id"] == sent["id"] and payload["text"] == "hi" and payload["hidden"] is False
        assert payload["user_name"] == "Bob" and payload["metadata"] == {"m": 1}
    with pytest.raises(websocket.WebSocketTimeoutException):
        c1.recv(timeout=0.3)
    ids = {f["id"] for f in (a1.frames[-1], a2.frames[-1], b1.frames[-1])}
    assert len(ids) == 3  # one event id per delivery


def test_rest_posts_are_pushed_too(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                   relay: Callable[..., Relay], api_factory: Callable[..., Any]) -> None:
    a = connected(relay, alice)
    api = api_factory(bob.token)
    gid = api.join(bob, alice.address_id)
    assert api.send(bob, gid, "over rest").status_code == 201
    assert a.event()["params"]["params"]["text"] == "over rest"


def test_ack_bookkeeping(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    a = connected(relay, alice)
    emu.send_messages(bob, alice.address_id, ["1", "2", "3"])
    frames = [a.event(ack=False) for _ in range(3)]
    assert [e.event_id for e in emu.unacked_events(alice)] == [f["id"] for f in frames]
    assert {e.event_type for e in emu.unacked_events()} == {"conversation.message"}
    a.ack(frames[1])
    emu.wait_for(lambda: len(emu.unacked_events()) == 2)
    info = emu.connections[0]
    assert frames[1]["id"] in info.acked and frames[1]["id"] not in info.unacked
    a.ack(frames[0])
    a.ack(frames[2])
    emu.wait_for(lambda: not emu.unacked_events())
    assert emu.unacked_events(bob) == []
    emu.send_message(bob, alice.address_id, "4")
    a.event(ack=False)
    emu.drop_connections()
    assert emu.unacked_events() == []
    assert len(emu.unacked_events(include_closed=True)) == 1


def test_no_ack_bookkeeping_without_event_acks(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                                relay: Callable[..., Relay]) -> None:
    a = connected(relay, alice, event_acks=False)
    emu.send_message(bob, alice.address_id, "x")
    a.event(ack=False)
    assert emu.unacked_events() == []


def test_server_pings_at_the_interval(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay]) -> None:
    a = connected(relay, alice)
    emu.ping_interval = 0.1
    ping = a.wait(lambda f: f.get("method") == "signalwire.ping", timeout=3)
    assert set(ping) == set(fixture("v4-ws-ping-request.json")) and isinstance(ping["params"]["timestamp"], float)
    a.send({"jsonrpc": "2.0", "id": ping["id"], "result": {"timestamp": ping["params"]["timestamp"]}})
    emu.wait_for(lambda: emu.connections[0].pings_answered >= 1)
    a.wait(lambda f: f.get("method") == "signalwire.ping", timeout=3)
    emu.ping_interval = None
    assert emu.connections[0].pings_sent >= 2


def test_reauthenticate(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    a = relay()
    result = a.connect(alice.token)["result"]
    project = result["authorization"]["project_id"]
    fresh = emu.issue_token(alice, ttl=600)
    answer = a.request("signalwire.reauthenticate", {"authentication": {"project": project, "jwt_token": fresh}})
    assert answer["result"]["protocol"] == result["protocol"]
    assert answer["result"]["authorization"]["jti"] != result["authorization"]["jti"]
    assert emu.connections[0].reauthentications == 1
    for token in (bob.token, emu.issue_token(alice, ttl=-1), "junk"):
        bad = a.request("signalwire.reauthenticate", {"authentication": {"project": project, "jwt_token": token}})
        assert bad["error"]["code"] == -32002
    wrong = a.request("signalwire.reauthenticate", {"authentication": {"project": "other", "jwt_token": fresh}})
    assert wrong["error"]["code"] == -32602
    # after reauthenticating, revoking the first token does not kill the session
    emu.revoke_token(alice.token)
    assert emu.connections and emu.connections[0].authenticated


def _resume_params(r: Relay) -> Any:
    result = next(f for f in r.frames if "result" in f and "protocol" in f["result"])["result"]
    state = next(f for f in r.frames if f.get("method") == "signalwire.event"
                 and f["params"]["event_type"] == "signalwire.authorization.state")
    return result["protocol"], state["params"]["params"]["authorization_state"]


def test_resume_with_protocol_and_authorization_state(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                                      relay: Callable[..., Relay]) -> None:
    first = connected(relay, alice)
    protocol, state = _resume_params(first)
    emu.drop_connections()
    second = relay()
    answer = second.connect(alice.token, protocol=protocol, authorization_state=state)
    assert answer["result"]["protocol"] == protocol
    second.event("signalwire.authorization.state")
    info = emu.connections[0]
    assert info.resumed and info.connect_params is not None and info.connect_params["authorization_state"] == state
    emu.send_message(bob, alice.address_id, "after resume")
    assert second.event()["params"]["params"]["text"] == "after resume"


def test_resume_short_circuits_an_expired_token(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay]) -> None:
    token = emu.issue_token(alice, ttl=0.5)
    first = connected(relay, alice.__class__(**{**alice.__dict__, "token": token}))
    protocol, state = _resume_params(first)
    emu.drop_connections()
    emu.wait_for(lambda: emu.subscriber(alice.name) is not None)
    time.sleep(0.6)  # let the token expire (a real clock, nothing to wait on)
    r = relay()
    assert r.connect(token)["error"]["code"] == -32002  # fresh: refused
    r2 = relay()
    assert "result" in r2.connect(token, protocol=protocol, authorization_state=state)


def test_resume_refusals(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    first = connected(relay, alice)
    protocol, state = _resume_params(first)
    emu.refuse_resume()
    refused = relay().connect(alice.token, protocol=protocol, authorization_state=state)
    assert refused["error"] == {"code": -32003, "message": "Requester validation failed"}
    # unknown state, someone else's state, and a revoked token's state
    assert relay().connect(alice.token, protocol=protocol, authorization_state="ASnope")["error"]["code"] == -32003
    assert relay().connect(bob.token, protocol=protocol, authorization_state=state)["error"]["code"] == -32003
    # a protocol alone (what v3 sends after a refusal) is a fresh connect that keeps the protocol
    again = relay().connect(alice.token, protocol=protocol)
    assert again["result"]["protocol"] == protocol
    emu.revoke_token(alice.token)
    assert relay().connect(alice.token, protocol=protocol, authorization_state=state)["error"]["code"] == -32003


def test_drop_connections_is_abrupt(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    a, b = connected(relay, alice), connected(relay, bob)
    assert emu.drop_connections(alice) == 1
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        for _ in range(10):
            a.ws.recv()
    assert [c.subscriber for c in emu.connections] == [bob]
    emu.send_message(alice, bob.address_id, "still here")
    assert b.event()["params"]["params"]["text"] == "still here"
    assert emu.drop_connections() == 1 and emu.connections == []
    assert len(emu.all_connections) == 2 and all(c.closed for c in emu.all_connections)


def test_stop_pinging_makes_the_link_half_open(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                               relay: Callable[..., Relay]) -> None:
    emu.ping_interval = 0.05
    a = connected(relay, alice)
    a.wait(lambda f: f.get("method") == "signalwire.ping", timeout=3)
    assert emu.stop_pinging() == 1
    a.frames.clear()
    a._seen.clear()
    emu.send_message(bob, alice.address_id, "lost on the wire")
    assert emu.messages()[0]["text"] == "lost on the wire"  # stored for a REST gap fill
    a.send({"jsonrpc": "2.0", "id": "p", "method": "signalwire.ping", "params": {}})  # no answer
    a.ws.ping("are you there")
    with pytest.raises(websocket.WebSocketTimeoutException):
        for _ in range(100):
            a.recv(timeout=0.4)
    info = emu.connections[0]
    assert info.half_open and info.events_withheld == 1 and info.client_pings == 1  # connected()'s own ping
    # a new connection is healthy
    b = connected(relay, alice)
    emu.send_message(bob, alice.address_id, "fresh link")
    assert b.event()["params"]["params"]["text"] == "fresh link"
    emu.start_pinging()
    emu.send_message(bob, alice.address_id, "old link back")
    assert a.event()["params"]["params"]["text"] == "old link back"


def test_stop_pinging_only_pings(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    emu.ping_interval = 0.05
    a = connected(relay, alice)
    emu.stop_pinging(half_open=False)
    sent = emu.connections[0].pings_sent
    emu.send_message(bob, alice.address_id, "events still flow")
    assert a.event()["params"]["params"]["text"] == "events still flow"
    with pytest.raises(TimeoutError):
        emu.wait_for(lambda: emu.connections[0].pings_sent > sent, timeout=0.3)


def test_send_raw_and_disconnect(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    a, b = connected(relay, alice), connected(relay, bob)
    assert emu.send_raw("{not json", subscriber=alice) == 1
    assert a.ws.recv() == "{not json"
    assert emu.send_raw(b'{"jsonrpc":"2.0"}') == 2
    assert b.ws.recv() == '{"jsonrpc":"2.0"}'
    # server-initiated signalwire.disconnect: the client answers {}, then the server closes
    import threading

    def answer() -> None:
        frame = b.wait(lambda f: f.get("method") == "signalwire.disconnect")
        assert set(frame) == {"jsonrpc", "id", "method", "params"}
        b.send({"jsonrpc": "2.0", "id": frame["id"], "result": {}})

    t = threading.Thread(target=answer)
    t.start()
    assert emu.disconnect(bob, timeout=3) == 1
    t.join(5)
    assert b.ws.recv() == ""  # a close frame
    b.close()
    emu.wait_for(lambda: [c.subscriber for c in emu.connections] == [alice])


def test_binary_frames_are_accepted(emu: Emulator, alice: Subscriber, relay: Callable[..., Relay]) -> None:
    r = relay()
    r.ws.send_binary(json.dumps({"jsonrpc": "2.0", "id": "b1", "method": "signalwire.ping",
                                 "params": {"timestamp": 3}}).encode())
    assert r.wait(lambda f: f.get("id") == "b1")["result"] == {"timestamp": 3}
