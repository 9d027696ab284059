"""A Flask app: one view lists a conversation's messages, another sends one.

Two ways to act, side by side:

- ``/me/...``: as the signed-in user, each user with a client of their own, from the project
  credentials (``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN``, ``SIGNALWIRE_SPACE``): a
  :class:`~signalwire_conversation.SubscriberClients` keeps one client per user across
  requests, on one shared connection pool, and closes the least recently used beyond its bound;
- ``/conversations/...``: as one service subscriber, one
  :class:`~signalwire_conversation.Client` per process from a token in ``SIGNALWIRE_TOKEN``.

Run it (``pip install flask``)::

    flask --app examples/flask_app/app.py run
    curl -H "X-User: alice" http://127.0.0.1:5000/me/conversations/ADDRESS_ID/messages?limit=10
    curl -H "X-User: alice" -d text=hello http://127.0.0.1:5000/me/conversations/ADDRESS_ID/messages
    curl http://127.0.0.1:5000/conversations/ADDRESS_ID/messages?limit=10

Clients are shared by every request thread (they are thread-safe), created on first use and
closed when the process exits. The tests run this app against the emulator
(tests/examples/test_flask_app.py).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Dict, Optional, Tuple

from flask import Flask, abort, jsonify, request

from signalwire_conversation import (
    APIConnectionError,
    Client,
    NotFoundError,
    SignalWireError,
    SubscriberClients,
    ValidationError,
)

_lock = threading.Lock()
_client: Optional[Client] = None
_clients: Optional[SubscriberClients] = None


def get_subscriber_clients() -> SubscriberClients:
    """The process-wide per-user clients (project credentials from the environment)."""
    global _clients
    with _lock:
        if _clients is None:
            _clients = SubscriberClients(max_clients=500)
            atexit.register(_clients.close)
        return _clients


def current_user() -> str:
    """The signed-in user's reference. A stand-in for your login: ``X-User`` (with
    flask-login, ``current_user.get_id()``)."""
    user = request.headers.get("X-User", "").strip()
    if not user:
        abort(401)
    return user


def get_client() -> Client:
    """The process-wide client (token and hosts from ``SIGNALWIRE_*`` environment variables)."""
    global _client
    with _lock:
        if _client is None:
            _client = Client()
            atexit.register(_client.close)
        return _client


def create_app(client: Optional[Client] = None, clients: Optional[SubscriberClients] = None) -> Flask:
    """The app; pass ``client``/``clients`` to use your own (tests do), else made on first use."""
    app = Flask(__name__)

    def sdk() -> Client:
        return client if client is not None else get_client()

    def mine() -> Client:
        """The signed-in user's client: made on their first request, then reused."""
        return (clients if clients is not None else get_subscriber_clients()).get(current_user())

    @app.get("/me/conversations/<address_id>/messages")
    def my_messages(address_id: str) -> Any:
        limit = request.args.get("limit", default=20, type=int)
        page = mine().conversation.get_conversation_messages(address_id, limit=limit)
        # user_name: the sender's name from the address directory (cached by the client)
        return jsonify([{"from": m.user_name, "text": m.text, "ts": m.ts} for m in page])

    @app.post("/me/conversations/<address_id>/messages")
    def my_send(address_id: str) -> Any:
        payload: Dict[str, Any] = request.get_json(silent=True) or request.form.to_dict()
        sent = mine().conversation.send_message(address_id, payload.get("text", ""))
        return jsonify(sent.to_dict()), 201

    @app.get("/conversations")
    def conversations() -> Any:
        items = [c.to_dict() for c in sdk().conversation.get_conversations()]
        return jsonify(items)

    @app.get("/conversations/<address_id>/messages")
    def list_messages(address_id: str) -> Any:
        limit = request.args.get("limit", default=20, type=int)
        since = request.args.get("since", default=None, type=float)
        page = sdk().conversation.get_conversation_messages(address_id, limit=limit, since=since)
        return jsonify([m.to_dict() for m in page])  # iterating follows pages lazily, up to limit

    @app.post("/conversations/<address_id>/messages")
    def send_message(address_id: str) -> Any:
        payload: Dict[str, Any] = request.get_json(silent=True) or request.form.to_dict()
        sent = sdk().conversation.send_message(address_id, payload.get("text", ""))
        return jsonify(sent.to_dict()), 201

    @app.errorhandler(SignalWireError)
    def sdk_error(exc: SignalWireError) -> Tuple[Any, int]:
        # The SDK's one hierarchy maps cleanly onto HTTP answers for your own API.
        status = 502
        if isinstance(exc, ValidationError):
            status = 400
        elif isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, APIConnectionError):
            status = 503
        return jsonify({"error": str(exc), "type": type(exc).__name__}), status

    return app


app = create_app()

if __name__ == "__main__":
    app.run(debug=True)
