"""Wire-level helpers for the emulator's tests: plain ``requests`` and ``websocket-client``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import pytest
import requests
import websocket

from signalwire_conversation.testing import Emulator, Subscriber

WAIT = 5.0


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(ping_interval=None) as emulator:
        yield emulator


@pytest.fixture
def alice(emu: Emulator) -> Subscriber:
    return emu.add_subscriber("alice")


@pytest.fixture
def bob(emu: Emulator) -> Subscriber:
    return emu.add_subscriber("bob")


class Api:
    """REST calls as one subscriber."""

    def __init__(self, emu: Emulator, token: str) -> None:
        self.base = emu.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url(path), params=params or None, timeout=WAIT)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.url(path), json=body, timeout=WAIT)

    def join(self, me: Subscriber, other: str) -> str:
        r = self.post("/api/fabric/conversations/join",
                      {"from_fabric_address_id": me.address_id, "fabric_address_ids": [other, me.address_id]})
        assert r.status_code == 200, r.text
        return str(r.json()["group_id"])

    def send(self, me: Subscriber, group_id: str, text: str, **extra: Any) -> requests.Response:
        return self.post("/api/fabric/messages",
                         {"group_id": group_id, "from_fabric_address_id": me.address_id, "text": text, **extra})


@pytest.fixture
def api_factory(emu: Emulator) -> Iterator[Callable[[str], Api]]:
    made: List[Api] = []

    def make(token: str) -> Api:
        api = Api(emu, token)
        made.append(api)
        return api

    yield make
    for api in made:
        api.session.close()


class Relay:
    """A raw websocket client speaking the relay's JSON-RPC (what the official clients send)."""

    def __init__(self, url: str, **options: Any) -> None:
        self.ws = websocket.create_connection(url, timeout=WAIT, **options)
        self.frames: List[Dict[str, Any]] = []  # every frame received, in order
        self.raw: List[str] = []
        self._seen: Set[int] = set()

    def send(self, frame: Any) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def request(self, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Send a request and return its response frame (other frames are kept in ``frames``)."""
        rid = str(uuid.uuid4())
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        return self.wait(lambda f: f.get("id") == rid and "method" not in f)

    def connect(self, token: str, **params: Any) -> Dict[str, Any]:
        base: Dict[str, Any] = {
            "version": {"major": 4, "minor": 0, "revision": 0},
            "event_acks": True,
            "authentication": {"jwt_token": token},
            "agent": "tests/emulator",
        }
        base.update(params)
        return self.request("signalwire.connect", base)

    def recv(self, timeout: float = WAIT) -> Dict[str, Any]:
        self.ws.settimeout(timeout)
        text = self.ws.recv()
        self.raw.append(text)
        frame = json.loads(text)
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    def wait(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float = WAIT) -> Dict[str, Any]:
        """The first frame not returned before that matches (received now or earlier)."""
        for i, frame in enumerate(self.frames):
            if i not in self._seen and predicate(frame):
                self._seen.add(i)
                return frame
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; got {[f.get('method') or f.get('id') for f in self.frames]}")
            frame = self.recv(remaining)
            if predicate(frame):
                self._seen.add(len(self.frames) - 1)
                return frame

    def event(self, event_type: str = "conversation.message", ack: bool = True, timeout: float = WAIT) -> Dict[str, Any]:
        frame = self.wait(lambda f: f.get("method") == "signalwire.event" and f["params"]["event_type"] == event_type,
                          timeout)
        if ack:
            self.ack(frame)
        return frame

    def ack(self, frame: Dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": frame["id"], "result": {}})

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


@pytest.fixture
def relay(emu: Emulator) -> Iterator[Callable[[], Relay]]:
    opened: List[Relay] = []

    def make(**options: Any) -> Relay:
        r = Relay(emu.relay_url, **options)
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()


def connected(make: Callable[..., Relay], sub: Subscriber, **params: Any) -> Relay:
    """A relay connection authenticated as ``sub`` whose authorization.state event was acked."""
    r = make()
    result = r.connect(sub.token, **params)
    assert "result" in result, result
    r.event("signalwire.authorization.state")
    r.request("signalwire.ping", {"timestamp": 0})  # frames are handled in order: the ack is in
    return r
