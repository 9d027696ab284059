"""Errors of the emulator: what an HTTP handler or a JSON-RPC handler raises, and the bodies.

The bodies copy the SignalWire Fabric API family (docs/protocol.md §1.6, fixtures ``openapi-error-*``):
``{"error": "<reason phrase>"}`` for most statuses and, for validation failures (400/422),
``{"statusCode": 422, "errors": [{"type", "code", "message", "attribute", "url"}]}``.
"""

from __future__ import annotations

import http
from typing import Any, Dict, Mapping, Optional

__all__ = ["HTTPError", "RPCError", "error_body", "validation_error", "reason_phrase"]

ERROR_CODES_URL = "https://signalwire.com/docs/apis/error-codes"

#: JSON-RPC error codes used by the relay (docs/protocol.md §2.2).
AUTHENTICATION_FAILED = -32002
REQUESTER_VALIDATION_FAILED = -32003
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
INVALID_REQUEST = -32600


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("Unknown Status" when there is none)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


def error_body(status: int) -> Dict[str, Any]:
    """The body the backend sends with a bare ``status`` (no validation detail)."""
    if status in (400, 422):
        return validation_body(status, "invalid_request", reason_phrase(status), None)
    return {"error": reason_phrase(status)}


def validation_body(status: int, code: str, message: str, attribute: Optional[str]) -> Dict[str, Any]:
    return {
        "statusCode": status,
        "errors": [
            {
                "type": "validation_error",
                "code": code,
                "message": message,
                "attribute": attribute,
                "url": ERROR_CODES_URL,
            }
        ],
    }


class HTTPError(Exception):
    """Raised by a REST handler: becomes a response with ``status`` and ``body``."""

    def __init__(
        self,
        status: int,
        body: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.status = status
        self.body: Dict[str, Any] = dict(body) if body is not None else error_body(status)
        self.headers: Dict[str, str] = dict(headers or {})
        super().__init__(f"HTTP {status}: {self.body}")


def validation_error(code: str, message: str, attribute: Optional[str], status: int = 422) -> HTTPError:
    """A 422 (or 400) with the Fabric validation body."""
    return HTTPError(status, validation_body(status, code, message, attribute))


class RPCError(Exception):
    """Raised by a JSON-RPC handler: becomes ``{"error": {"code", "message"[, "data"]}}``."""

    def __init__(self, code: int, message: str, data: Optional[Any] = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"JSON-RPC error {code}: {message}")

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out
