"""Helpers for the core unit tests: SAT-shaped tokens, canned bodies, request inspection."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Dict, List, Optional

import responses

BASE = "https://fabric.swire.io"
ME = "addr-me"
THEM = "addr-them"
GROUP = "group-1"


def make_token(header: Optional[Dict[str, Any]] = None, secret: str = "s3cr3tpayload") -> str:
    """A 5-part JWE-shaped token whose header carries ``ch`` (the payload part is ``secret``)."""
    if header is None:
        header = {"alg": "dir", "enc": "A256GCM", "ch": "puc.swire.io", "typ": "SAT"}
    raw = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    return f"{raw}..iv{secret}.cipher{secret}text.tag{secret}"


TOKEN = make_token()


def add_me(rsps: responses.RequestsMock, address: str = ME) -> None:
    rsps.get(
        f"{BASE}/api/fabric/subscriber/info",
        json={"id": "sub-1", "display_name": "Me", "fabric_addresses": [{"id": address}]},
    )


def add_join(rsps: responses.RequestsMock, group: str = GROUP) -> None:
    rsps.post(
        f"{BASE}/api/fabric/conversations/join",
        json={"group_id": group, "fabric_address_ids": [THEM, ME], "from_fabric_address_id": ME},
    )


def message(i: int, ts: float, group: str = GROUP) -> Dict[str, Any]:
    return {
        "id": f"m{i}",
        "group_id": group,
        "from_fabric_address_id": THEM,
        "ts": ts,
        "details": {},
        "type": "message",
        "subtype": "chat",
        "kind": None,
        "text": f"text {i}",
    }


def body_of(call: Any) -> Any:
    raw = call.request.body
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def calls_to(rsps: responses.RequestsMock, pattern: str) -> List[Any]:
    rx = re.compile(pattern)
    return [c for c in rsps.calls if rx.search(c.request.url)]


class FakeSubscription:
    def __init__(self, callback: Any, group_id: Optional[str]) -> None:
        self.callback = callback
        self.group_id = group_id
        self.unsubscribed = False

    def unsubscribe(self) -> None:
        self.unsubscribed = True


class FakeListener:
    """Stands in for realtime.Listener at the seam: records how the client built and used it."""

    instances: List["FakeListener"] = []

    def __init__(self, **kwargs: Any) -> None:
        from signalwire_conversation.realtime import ConnectionState

        self.kwargs = kwargs
        self.state = ConnectionState.IDLE
        self.subscribed: List[Dict[str, Any]] = []
        self.closed: List[float] = []
        self.ran = 0
        self.run_raises: Optional[BaseException] = None
        FakeListener.instances.append(self)

    def subscribe(
        self, callback: Any = None, *, group_id: Optional[str] = None, timeout: float = 15.0, after: Optional[str] = None
    ) -> FakeSubscription:
        from signalwire_conversation.realtime import ConnectionState

        self.subscribed.append({"callback": callback, "group_id": group_id, "timeout": timeout, "after": after})
        self.state = ConnectionState.CONNECTED
        return FakeSubscription(callback, group_id)

    def run_forever(self) -> None:
        self.ran += 1
        if self.run_raises is not None:
            raise self.run_raises

    def close(self, timeout: float = 5.0) -> None:
        from signalwire_conversation.realtime import ConnectionState

        self.closed.append(timeout)
        self.state = ConnectionState.CLOSED
