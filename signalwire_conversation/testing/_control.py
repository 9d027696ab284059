"""The HTTP control API under ``/__emulator__/`` (loopback peers only), for tools that are not
Python, e.g. the interop harness (its ``CONTROL_URL``): the :class:`Emulator` methods over HTTP.

``GET state``, ``GET subscribers``, ``GET requests``; ``POST`` with a JSON object:
``drop {subscriber?}``, ``fail_next {status, n|times, retry_after?, method?, path?}``,
``refuse_resumes {count}``, ``send_raw {frame, subscriber?}``, ``disconnect {close?, subscriber?}``,
``issue_token {subscriber, ttl?}``, ``revoke_token {token}``, ``stop_pinging {subscriber?,
half_open?}``, ``start_pinging``, ``latency {seconds}``, ``ping_interval {seconds}``,
``subscribers {name, token_ttl?}``, ``send_message`` / ``inject`` ``{from_token | from_address_id
| sender, to_address_id | group_id, text, metadata?, details?}``, ``reset``, ``clear_faults``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ._errors import HTTPError, validation_error
from ._http import Request, Response
from ._state import ConnectionInfo, Subscriber

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["Control"]


def _subscriber_json(s: Subscriber) -> Dict[str, Any]:
    return {
        "name": s.name,
        "display_name": s.display_name,
        "subscriber_id": s.subscriber_id,
        "address_id": s.address_id,
        "token": s.token,
    }


def _connection_json(c: ConnectionInfo) -> Dict[str, Any]:
    return {
        "id": c.id,
        "subscriber": c.subscriber.name if c.subscriber else None,
        "subscriber_id": c.subscriber.subscriber_id if c.subscriber else None,
        "address_id": c.subscriber.address_id if c.subscriber else None,
        "authenticated": c.authenticated,
        "resumed": c.resumed,
        "protocol": c.protocol,
        "connect_params": c.connect_params,
        "connects": len(c.connect_history),
        "acked": len(c.acked),
        "unacked": list(c.unacked),
        "events_sent": c.events_sent,
        "pings_sent": c.pings_sent,
        "pings_answered": c.pings_answered,
        "client_pings": c.client_pings,
        "reauthentications": c.reauthentications,
        "half_open": c.half_open,
        "remote": c.remote,
        "path": c.path,
    }


def _done(action: Callable[..., None], *args: Any) -> Dict[str, Any]:
    action(*args)
    return {"ok": True}


class Control:
    def __init__(self, emulator: "Emulator") -> None:
        self.emu = emulator
        self._get: Dict[str, Callable[[], Any]] = {
            "state": self.state,
            "subscribers": lambda: [_subscriber_json(s) for s in self.emu.subscribers],
            "requests": lambda: self.emu.request_log,
        }
        self._post: Dict[str, Callable[[Dict[str, Any]], Any]] = {
            "drop": lambda b: {"dropped": self.emu.drop_connections(b.get("subscriber"))},
            "fail_next": self.fail_next,
            "refuse_resumes": self.refuse_resumes,
            "send_raw": lambda b: {"sent": self.emu.send_raw(self._str(b, "frame"), b.get("subscriber"))},
            "disconnect": lambda b: {
                "sent": self.emu.disconnect(b.get("subscriber"), close=bool(b.get("close", True)))
            },
            "issue_token": lambda b: {
                "token": self.emu.issue_token(self._str(b, "subscriber"), float(b.get("ttl", 3600)))
            },
            "revoke_token": lambda b: _done(self.emu.revoke_token, self._str(b, "token")),
            "stop_pinging": lambda b: {
                "affected": self.emu.stop_pinging(b.get("subscriber"), half_open=bool(b.get("half_open", True)))
            },
            "start_pinging": lambda b: _done(self.emu.start_pinging),
            "latency": self.latency,
            "ping_interval": self.ping_interval,
            "subscribers": lambda b: _subscriber_json(
                self.emu.add_subscriber(self._str(b, "name"), float(b.get("token_ttl", 3600)))
            ),
            "send_message": self.send_message,
            "inject": self.send_message,
            "reset": lambda b: _done(self.emu.reset),
            "clear_faults": lambda b: _done(self.emu.clear_faults),
        }

    @staticmethod
    def _str(body: Dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise validation_error("missing_required_parameter", f"{name} is required", name)
        return value

    def handle(self, request: Request) -> Response:
        name = request.path[len("/__emulator__/"):].strip("/")
        try:
            if request.method == "GET" and name in self._get:
                return Response(200, self._get[name]())
            if request.method == "POST" and name in self._post:
                try:
                    body = request.json()
                except ValueError:
                    raise validation_error("invalid_json", "the body is not JSON", None, status=400) from None
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise validation_error("invalid_json", "the body must be a JSON object", None, status=400)
                return Response(200, self._post[name](body))
            if name in self._get or name in self._post:
                raise HTTPError(405)
            raise HTTPError(404)
        except HTTPError as exc:
            return Response(exc.status, exc.body, exc.headers)
        except (KeyError, ValueError, TypeError) as exc:
            return Response(422, {"statusCode": 422, "errors": [{"type": "validation_error", "code": "invalid_parameter",
                                                                 "message": str(exc), "attribute": None, "url": None}]})

    def state(self) -> Dict[str, Any]:
        connections = self.emu.connections
        return {
            "base_url": self.emu.base_url,
            "relay_url": self.emu.relay_url,
            "connections": [_connection_json(c) for c in connections],
            "unacked": {c.id: list(c.unacked) for c in connections},
            "subscribers": [_subscriber_json(s) for s in self.emu.subscribers],
            "requests": len(self.emu.requests),
            "ping_interval": self.emu.ping_interval,
            "latency": self.emu.latency,
        }

    def fail_next(self, body: Dict[str, Any]) -> Dict[str, Any]:
        status = body.get("status")
        if not isinstance(status, (int, str)):
            raise validation_error("missing_required_parameter", "status is required", "status")
        times = int(body.get("n", body.get("times", 1)))
        retry_after = body.get("retry_after")
        self.emu.fail_next(
            status,
            times,
            retry_after=float(retry_after) if retry_after is not None else None,
            method=body.get("method"),
            path=body.get("path"),
        )
        return {"ok": True, "status": status, "times": times}

    def refuse_resumes(self, body: Dict[str, Any]) -> Dict[str, Any]:
        count = int(body.get("count", body.get("n", 1)))
        store = self.emu._store
        with store.lock:
            store.refuse_resumes = max(0, count)
        return {"refuse_resumes": max(0, count)}

    def latency(self, body: Dict[str, Any]) -> Dict[str, Any]:
        self.emu.latency = float(body.get("seconds", 0.0))
        return {"latency": self.emu.latency}

    def ping_interval(self, body: Dict[str, Any]) -> Dict[str, Any]:
        seconds = body.get("seconds")
        self.emu.ping_interval = float(seconds) if seconds is not None else None
        return {"ping_interval": self.emu.ping_interval}

    def send_message(self, body: Dict[str, Any]) -> Dict[str, Any]:
        emu = self.emu
        sender: Optional[Subscriber] = None
        for key in ("from_token", "sender", "from"):
            token = body.get(key)
            if isinstance(token, str):
                sender = emu._store.token_for_subscriber(token)
                if sender is None:
                    try:
                        sender = emu.subscriber(token)
                    except KeyError:
                        sender = None
                if sender is not None:
                    break
        if sender is None and isinstance(body.get("from_address_id"), str):
            sender = emu.subscriber(body["from_address_id"])
        if sender is None:
            raise validation_error("missing_required_parameter", "a sender is required", "from_token")
        target = body.get("group_id") or body.get("to_address_id") or body.get("address_id")
        if not isinstance(target, str):
            raise validation_error("missing_required_parameter", "to_address_id or group_id is required", "to_address_id")
        text = body.get("text")
        if not isinstance(text, str):
            raise validation_error("missing_required_parameter", "text is required", "text")
        return emu.send_message(sender, target, text, metadata=body.get("metadata"), details=body.get("details"))


