"""A Flask app: one view lists a conversation's messages, another sends one.

Run it (``pip install flask``; a token in ``SIGNALWIRE_TOKEN``)::

    flask --app examples/flask_app/app.py run
    curl http://127.0.0.1:5000/conversations/ADDRESS_ID/messages?limit=10
    curl -X POST -d text=hello http://127.0.0.1:5000/conversations/ADDRESS_ID/messages

One :class:`~signalwire_conversation.Client` per process, shared by every request thread (the
client is thread-safe), created on first use and closed when the process exits. The tests run
this app against the emulator (tests/examples/test_flask_app.py).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Dict, Optional, Tuple

from flask import Flask, jsonify, request

from signalwire_conversation import (
    APIConnectionError,
    Client,
    NotFoundError,
    SignalWireError,
    ValidationError,
)

_lock = threading.Lock()
_client: Optional[Client] = None


def get_client() -> Client:
    """The process-wide client (token and hosts from ``SIGNALWIRE_*`` environment variables)."""
    global _client
    with _lock:
        if _client is None:
            _client = Client()
            atexit.register(_client.close)
        return _client


def create_app(client: Optional[Client] = None) -> Flask:
    """The app; pass ``client`` to use your own (tests do), else one is made on first use."""
    app = Flask(__name__)

    def sdk() -> Client:
        return client if client is not None else get_client()

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
