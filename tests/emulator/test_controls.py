"""Fault injection and observation: fail_next, latency, request records, the HTTP control API."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import requests

from signalwire_conversation.testing import Emulator, RecordedRequest, Subscriber
from signalwire_conversation.testing._http import Request

from .conftest import Api, Relay, connected


def test_fail_next_with_retry_after_then_recovers(emu: Emulator, alice: Subscriber,
                                                  api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    emu.fail_next(503, times=2, retry_after=1)
    for _ in range(2):
        r = a.get("/api/fabric/conversations")
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json() == {"error": "Service Unavailable"}
    assert a.get("/api/fabric/conversations").status_code == 200
    emu.fail_next(429, retry_after=0.5)
    r = a.get("/api/fabric/messages")
    assert r.status_code == 429 and r.headers["Retry-After"] == "0.5" and r.json() == {"error": "Too Many Requests"}
    emu.fail_next(500)
    assert a.get("/api/fabric/messages").json() == {"error": "Internal Server Error"}
    emu.fail_next(422)
    assert a.get("/api/fabric/messages").json()["statusCode"] == 422


def test_fail_next_filters_by_method_and_path(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                              api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    emu.fail_next(500, method="POST", path=r"^/api/fabric/messages$")
    assert a.get("/api/fabric/messages").status_code == 200
    gid = a.join(alice, bob.address_id)
    assert a.send(alice, gid, "x").status_code == 500
    assert a.send(alice, gid, "x").status_code == 201
    emu.fail_next(502, path="conversations")
    assert a.get("/api/fabric/subscriber/info").status_code == 200
    assert a.get("/api/fabric/conversations").status_code == 502


def test_fail_next_reset_closes_without_an_answer(emu: Emulator, alice: Subscriber,
                                                  api_factory: Callable[[str], Api]) -> None:
    emu.fail_next("reset")
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.base_url + "/api/fabric/conversations", headers={"Authorization": f"Bearer {alice.token}"},
                     timeout=5)
    assert api_factory(alice.token).get("/api/fabric/conversations").status_code == 200
    with pytest.raises(ValueError):
        emu.fail_next("sometimes")
    with pytest.raises(ValueError):
        emu.fail_next(42)


def test_latency(emu: Emulator, alice: Subscriber, api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    emu.latency = 0.3
    started = time.monotonic()
    assert a.get("/api/fabric/subscriber/info").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.ReadTimeout):
        a.session.get(a.url("/api/fabric/subscriber/info"), timeout=0.1)
    emu.latency = 0
    with pytest.raises(ValueError):
        emu.latency = -1


def test_requests_are_recorded_and_counted(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                           api_factory: Callable[[str], Api]) -> None:
    a = api_factory(alice.token)
    a.get("/api/fabric/conversations", page_size=5)
    a.get("/api/fabric/conversations")
    a.join(alice, bob.address_id)
    requests.get(emu.base_url + "/api/fabric/messages", timeout=5)  # 401s are requests too
    assert emu.requests[0] == RecordedRequest("GET", "/api/fabric/conversations", {"page_size": "5"})
    method, path, query = emu.requests[0]
    assert (method, path, query) == ("GET", "/api/fabric/conversations", {"page_size": "5"})
    assert emu.request_count() == 4
    assert emu.request_count("GET") == 3
    assert emu.request_count(path="^/api/fabric/conversations$") == 2
    assert emu.request_count("post", "join") == 1
    log = emu.request_log
    assert log[2]["body"]["fabric_address_ids"][0] == bob.address_id
    assert log[2]["status"] == 200 and log[2]["subscriber"] == "alice" and log[3]["status"] == 401


def test_wait_for(emu: Emulator) -> None:
    emu.wait_for(lambda: True)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="never"):
        emu.wait_for(lambda: False, timeout=0.2, message="never")
    assert 0.2 <= time.monotonic() - started < 2


def test_reset_forgets_everything(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                  relay: Callable[..., Relay], api_factory: Callable[[str], Api]) -> None:
    connected(relay, alice)
    emu.send_message(alice, bob.address_id, "x")
    emu.fail_next(500, times=5)
    emu.latency = 1.0
    emu.ping_interval = 0.01
    emu.honour_time_filters = False
    emu.reset()
    assert emu.subscribers == [] and emu.messages() == [] and emu.connections == [] and emu.requests == []
    assert emu.latency == 0 and emu.ping_interval is None and emu.honour_time_filters is True
    carol = emu.add_subscriber("alice")  # the name is free again
    assert api_factory(carol.token).get("/api/fabric/conversations").status_code == 200
    assert api_factory(alice.token).get("/api/fabric/conversations").status_code == 401


def test_subscriber_lookup_and_errors(emu: Emulator, alice: Subscriber) -> None:
    assert emu.subscriber("alice") == emu.subscriber(alice.address_id) == emu.subscriber(alice.subscriber_id) == alice
    assert "token" not in repr(alice) or alice.token not in repr(alice)
    with pytest.raises(KeyError):
        emu.subscriber("nobody")
    with pytest.raises(ValueError):
        emu.add_subscriber("alice")
    with pytest.raises(ValueError):
        emu.send_message(alice, alice.address_id, "to myself only")
    with pytest.raises(KeyError):
        emu.send_message(alice, "nowhere", "x")


# -- the HTTP control API (what the interop harness uses) -------------------------------------


def control(emu: Emulator, name: str, body: Any = None) -> requests.Response:
    url = f"{emu.control_url}/{name}"
    if body is None:
        return requests.get(url, timeout=5)
    return requests.post(url, json=body, timeout=5)


def test_control_api(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay],
                     api_factory: Callable[[str], Api]) -> None:
    a = connected(relay, alice)
    emu.wait_for(lambda: not emu.unacked_events())  # the authorization.state ack is in flight
    state = control(emu, "state").json()
    assert [c["subscriber"] for c in state["connections"]] == ["alice"]
    assert state["connections"][0]["authenticated"] is True
    assert list(state["unacked"].values()) == [[]]
    # inject: the harness's INJECT URL shape
    r = control(emu, "inject", {"from": bob.token, "sender": bob.token, "from_token": bob.token,
                                "from_address_id": bob.address_id, "to_address_id": alice.address_id, "text": "inj"})
    assert r.status_code == 200 and r.json()["text"] == "inj"
    frame = a.event(ack=False)
    emu.wait_for(lambda: len(emu.unacked_events()) == 1)
    assert control(emu, "state").json()["unacked"][state["connections"][0]["id"]] == [frame["id"]]
    a.ack(frame)
    assert control(emu, "fail_next", {"n": 1, "status": 503, "retry_after": 1, "method": "GET",
                                      "path": "^/api/fabric/conversations$"}).status_code == 200
    assert api_factory(alice.token).get("/api/fabric/conversations").status_code == 503
    assert control(emu, "refuse_resumes", {"count": 2}).json() == {"refuse_resumes": 2}
    assert control(emu, "refuse_resumes", {"count": 0}).json() == {"refuse_resumes": 0}
    assert control(emu, "send_raw", {"frame": "{bad"}).json() == {"sent": 1}
    assert a.ws.recv() == "{bad"
    token = control(emu, "issue_token", {"subscriber": alice.address_id}).json()["token"]
    assert api_factory(token).get("/api/fabric/subscriber/info").json()["id"] == alice.subscriber_id
    assert control(emu, "latency", {"seconds": 0}).json() == {"latency": 0}
    assert control(emu, "ping_interval", {"seconds": None}).json() == {"ping_interval": None}
    assert control(emu, "subscribers", {"name": "carol"}).json()["name"] == "carol"
    assert [s["name"] for s in control(emu, "subscribers").json()] == ["alice", "bob", "carol"]
    assert len(control(emu, "requests").json()) == len(emu.requests)
    assert control(emu, "stop_pinging", {}).json() == {"affected": 1}
    assert control(emu, "start_pinging", {}).json() == {"ok": True}
    assert control(emu, "drop", {}).json() == {"dropped": 1}
    assert control(emu, "disconnect", {"close": True}).json() == {"sent": 0}
    assert control(emu, "nope").status_code == 404
    assert control(emu, "drop").status_code == 405
    assert control(emu, "issue_token", {}).status_code == 422
    assert control(emu, "issue_token", {"subscriber": "nobody"}).status_code == 422
    assert control(emu, "reset", {}).json() == {"ok": True} and emu.subscribers == []
    assert emu.request_count() == 0  # control calls are not API requests


def test_control_api_is_loopback_only(emu: Emulator) -> None:
    request = Request("GET", "/__emulator__/state", "HTTP/1.1", {}, remote=("192.0.2.7", 5000))
    response = emu._http_app(request)
    assert response is not None and response.status == 403
    with Emulator(control_api=False, ping_interval=None) as closed:
        assert requests.get(closed.control_url + "/state", timeout=5).status_code == 404
