"""The relay's JSON-RPC handlers (docs/protocol.md §2): one text frame in, frames out via the sink.

Client → server: ``signalwire.connect`` (fresh, or resume with ``protocol`` +
``authorization_state``), ``signalwire.ping``, ``signalwire.reauthenticate``; responses to the
server's events (acks), pings and ``signalwire.disconnect``. Server → client frames are built
here too (``ping_frame``, ``disconnect_frame``).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Dict, Optional, Tuple

from ._errors import (
    AUTHENTICATION_FAILED,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    REQUESTER_VALIDATION_FAILED,
    RPCError,
)
from ._state import Session, Store, Subscriber

__all__ = ["Relay"]

logger = logging.getLogger("signalwire_conversation.testing")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Relay:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- frames the server initiates ---------------------------------------------------------

    def ping_frame(self, session: Session) -> str:
        ping_id = self.store.ids()
        with self.store.lock:
            session.pending_pings[ping_id] = self.store.clock()
            session.pings_sent += 1
        return _dumps({"jsonrpc": "2.0", "id": ping_id, "method": "signalwire.ping",
                       "params": {"timestamp": self.store.clock()}})

    def disconnect_frame(self, session: Session) -> str:
        frame_id = self.store.ids()
        with self.store.lock:
            session.pending_disconnects[frame_id] = self.store.clock()
        return _dumps({"jsonrpc": "2.0", "id": frame_id, "method": "signalwire.disconnect", "params": {}})

    # -- frames the client sends -------------------------------------------------------------

    def handle(self, session: Session, text: str) -> None:
        """Process one frame from the client; replies go to ``session.sink``."""
        try:
            frame = json.loads(text)
        except ValueError:
            logger.debug("emulator: %s sent a frame that is not JSON", session.id)
            return
        if not isinstance(frame, dict):
            return
        method = frame.get("method")
        frame_id = frame.get("id")
        if method is None:
            if "result" in frame or "error" in frame:
                self._on_response(session, frame_id, frame)
            return
        try:
            if not isinstance(method, str):
                raise RPCError(INVALID_REQUEST, "Invalid Request")
            params = frame.get("params")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise RPCError(INVALID_PARAMS, "Invalid params")
            result = self._dispatch(session, method, params, frame_id)
        except RPCError as exc:
            if frame_id is not None:
                session.sink(_dumps({"jsonrpc": "2.0", "id": frame_id, "error": exc.to_dict()}))
            return
        if result is not None and frame_id is not None:
            session.sink(_dumps({"jsonrpc": "2.0", "id": frame_id, "result": result}))
            if method == "signalwire.connect":
                self._send_authorization_state(session)

    def _dispatch(self, session: Session, method: str, params: Dict[str, Any], frame_id: Any) -> Optional[Dict[str, Any]]:
        if method == "signalwire.connect":
            return self._connect(session, params)
        if method == "signalwire.ping":
            with self.store.lock:
                session.client_pings += 1
            stamp = params.get("timestamp")
            return {"timestamp": stamp if isinstance(stamp, (int, float)) else self.store.clock()}
        if not session.authenticated:
            raise RPCError(AUTHENTICATION_FAILED, "Authentication failed", {"reason": "not connected"})
        if method == "signalwire.reauthenticate":
            return self._reauthenticate(session, params)
        raise RPCError(METHOD_NOT_FOUND, "Method not found")

    def _on_response(self, session: Session, frame_id: Any, frame: Dict[str, Any]) -> None:
        if not isinstance(frame_id, str):
            return
        store = self.store
        with store.lock:
            record = session.unacked.pop(frame_id, None)
            if record is not None:
                session.acked.append(frame_id)
            elif session.pending_pings.pop(frame_id, None) is not None:
                session.pings_answered += 1
            elif session.pending_disconnects.pop(frame_id, None) is not None:
                session.disconnect_replies.append(frame_id)
            store.changed.notify_all()

    # -- connect / reauthenticate -------------------------------------------------------------

    @staticmethod
    def _token(params: Dict[str, Any]) -> str:
        auth = params.get("authentication")
        if not isinstance(auth, dict):
            raise RPCError(INVALID_PARAMS, "Invalid params", {"reason": "authentication is required"})
        token = auth.get("jwt_token", auth.get("token"))
        if not isinstance(token, str) or not token:
            raise RPCError(INVALID_PARAMS, "Invalid params", {"reason": "authentication.jwt_token is required"})
        return token

    def _connect(self, session: Session, params: Dict[str, Any]) -> Dict[str, Any]:
        store = self.store
        with store.lock:
            session.connect_history.append(params)
            store.changed.notify_all()
            token = self._token(params)
            protocol = params.get("protocol")
            state = params.get("authorization_state")
            if state is not None:
                subscriber, protocol = self._resume(token, protocol, state)
                resumed = True
            else:
                # Fresh, or a protocol alone (v3 sends that after a refused resume): the
                # token must be valid; a known protocol of this subscriber is kept.
                if protocol is not None and store.refuse_resumes > 0:
                    store.refuse_resumes -= 1
                    raise RPCError(REQUESTER_VALIDATION_FAILED, "Requester validation failed")
                fresh = store.authenticate(token)
                if fresh is None:
                    raise RPCError(AUTHENTICATION_FAILED, "Authentication failed")
                subscriber = fresh
                record = store.token_record(token)
                assert record is not None
                if not (isinstance(protocol, str) and store.protocols.get(protocol) == subscriber.subscriber_id):
                    protocol = f"signalwire_{record.jti}_{uuid.uuid4().hex}"
                resumed = False
            record = store.token_record(token)
            assert record is not None
            session.event_acks = params.get("event_acks") is not False
            session.resumed = resumed
            session.protocol = protocol
            session.authorization_state = store.new_auth_state(session, subscriber, protocol, record.jti)
            store.attach(session, subscriber, token)
            return self._connect_result(subscriber, token, protocol, ice=True)

    def _resume(self, token: str, protocol: Any, state: Any) -> Tuple[Subscriber, str]:
        store = self.store
        refused = RPCError(REQUESTER_VALIDATION_FAILED, "Requester validation failed")
        if store.refuse_resumes > 0:
            store.refuse_resumes -= 1
            raise refused
        if not isinstance(protocol, str) or not isinstance(state, str):
            raise refused
        record = store.auth_states.get(state)
        owner = store.token_for_subscriber(token)
        if record is None or record.revoked or record.protocol != protocol or owner is None:
            raise refused
        if owner.subscriber_id != record.subscriber_id:
            raise refused
        # authorization_state short-circuits token validation: an expired token resumes.
        return owner, protocol

    def _connect_result(self, subscriber: Subscriber, token: str, protocol: str, *, ice: bool) -> Dict[str, Any]:
        store = self.store
        record = store.token_record(token)
        assert record is not None
        result: Dict[str, Any] = {
            "identity": subscriber.email,
            "authorization": {
                "jti": record.jti,
                "project_id": store.project_id,
                "fabric_subscriber": {
                    "version": 1,
                    "expires_at": int(record.expires_at),
                    "subscriber_id": subscriber.subscriber_id,
                    "application_id": None,
                    "project_id": store.project_id,
                    "space_id": store.space_id,
                },
            },
            "protocol": protocol,
        }
        if ice:
            result["ice_servers"] = []
        return result

    def _send_authorization_state(self, session: Session) -> None:
        store = self.store
        with store.lock:
            if not session.authenticated or session.authorization_state is None:
                return
            event_id = store.ids()
            frame = _dumps({
                "jsonrpc": "2.0",
                "id": event_id,
                "method": "signalwire.event",
                "params": {
                    "event_type": "signalwire.authorization.state",
                    "params": {"authorization_state": session.authorization_state},
                },
            })
            session.send_event(event_id, frame, "signalwire.authorization.state", None, store.clock())
            store.changed.notify_all()

    def _reauthenticate(self, session: Session, params: Dict[str, Any]) -> Dict[str, Any]:
        store = self.store
        with store.lock:
            token = self._token(params)
            subscriber = store.authenticate(token)
            if subscriber is None or subscriber.subscriber_id != session.subscriber_id:
                raise RPCError(AUTHENTICATION_FAILED, "Authentication failed")
            project = (params.get("authentication") or {}).get("project")
            if project is not None and project != store.project_id:
                raise RPCError(INVALID_PARAMS, "Invalid params", {"reason": "unknown project"})
            session.token = token
            session.reauthentications += 1
            store.changed.notify_all()
            assert session.protocol is not None
            return self._connect_result(subscriber, token, session.protocol, ice=False)
