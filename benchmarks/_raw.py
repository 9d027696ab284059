"""The raw floors: what a careful user would write with the bare libraries the SDK wraps.

* REST: one ``requests.Session`` with the bearer header, ``json.loads`` of each body, following
  ``links.next`` verbatim (docs/protocol.md §1.5).
* Realtime: one ``websocket-client`` connection (``skip_utf8_validation=True`` unless told
  otherwise), ``signalwire.connect`` with ``event_acks``, then recv + ``json.loads`` + ack of
  every ``signalwire.event`` and an answer to every ``signalwire.ping`` (docs/protocol.md §2).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urljoin

import requests
import websocket

CONNECT_VERSION = {"major": 4, "minor": 0, "revision": 0}


# -- REST -----------------------------------------------------------------------------------------
def raw_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.headers["Accept"] = "application/json"
    return session


def raw_paging(session: requests.Session, base_url: str, path: str, page_size: int) -> int:
    """Follow ``links.next`` from ``path?page_size=N`` to the end; the number of items seen."""
    url: Optional[str] = urljoin(base_url, path)
    params: Optional[Dict[str, Any]] = {"page_size": page_size}
    count = 0
    seen = set()
    while url:
        response = session.get(url, params=params, timeout=(5, 30))
        response.raise_for_status()
        body = json.loads(response.content)
        count += len(body["data"])
        params = None
        nxt = (body.get("links") or {}).get("next")
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        url = urljoin(base_url, nxt)
    return count


# -- websocket ------------------------------------------------------------------------------------
class RawRelay:
    """A bare websocket-client session speaking just enough of the relay protocol."""

    def __init__(self, relay_url: str, token: str, *, skip_utf8_validation: bool = True) -> None:
        self.ws = websocket.create_connection(
            relay_url, timeout=30, skip_utf8_validation=skip_utf8_validation
        )
        request_id = str(uuid.uuid4())
        self.ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "method": "signalwire.connect",
                    "params": {
                        "version": CONNECT_VERSION,
                        "event_acks": True,
                        "authentication": {"jwt_token": token},
                        "agent": "signalwire-conversation-benchmarks/raw",
                    },
                }
            )
        )
        self.result: Dict[str, Any] = {}
        #: frames received before the connect result (events, pings), handled by the next loop
        self._early: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == request_id and "method" not in msg:
                if "error" in msg:
                    raise RuntimeError(f"signalwire.connect refused: {msg['error']}")
                self.result = msg.get("result") or {}
                break
            self._early.append(msg)
        else:
            raise TimeoutError("no answer to signalwire.connect within 15 s")
        self.last_frame_bytes = 0

    def receive(
        self,
        want: int,
        on_message: Optional[Callable[[Dict[str, Any]], None]] = None,
        measure_frame: bool = False,
    ) -> float:
        """Handle frames until ``want`` ``conversation.message`` events; ``perf_counter()`` then."""
        ws = self.ws
        recv = ws.recv
        send = ws.send
        loads = json.loads
        dumps = json.dumps
        n = 0
        pending = self._early
        self._early = []
        frame: Any = ""
        while n < want:
            if pending:
                msg = pending.pop(0)
            else:
                frame = recv()
                msg = loads(frame)
            method = msg.get("method")
            if method == "signalwire.event":
                send(dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}}))
                params = msg["params"]
                if params.get("event_type") == "conversation.message":
                    n += 1
                    if measure_frame:
                        self.last_frame_bytes = len(frame.encode("utf-8") if isinstance(frame, str) else frame)
                    if on_message is not None:
                        on_message(params["params"])
            elif method == "signalwire.ping":
                send(dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"timestamp": time.time()}}))
            elif method == "signalwire.disconnect":
                send(dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}}))
        return time.perf_counter()

    def close(self) -> None:
        try:
            self.ws.close(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
