"""The project-credential side of the emulator: subscriber tokens, refresh tokens, guest tokens.

What a backend holding the project credentials sees (SignalWire's REST reference):

- ``POST /api/fabric/subscribers/tokens`` (HTTP Basic ``project_id:api_token``), body
  ``reference`` plus optional subscriber fields: ``200`` ``{"subscriber_id", "token",
  "refresh_token"}``. The first mint of a new reference creates the subscriber (named after the
  reference, with one address). The token lives until ``expire_at`` (epoch seconds; one in the
  past is refused with 422), else :attr:`Identity.token_ttl` (2 hours).
- ``POST /api/fabric/subscribers/tokens/refresh`` (same credentials), body ``refresh_token``:
  ``201`` ``{"token", "refresh_token"}``; the new token lives :attr:`Identity.refreshed_ttl`
  (2 hours). A refresh token is good once and for :attr:`Identity.refresh_ttl`; an expired one
  gets ``422`` with code ``token_expired`` (the fixture's body), an unknown or used one ``422``
  ``invalid_parameter``.
- ``POST /api/fabric/guests/tokens`` (same credentials), body ``allowed_addresses`` (and
  ``expire_at``): ``201`` ``{"token"}``, the token of a new guest subscriber who may look up,
  list and join only those addresses (anything else: 403).

Wrong or missing credentials: ``401 {"error": "Unauthorized"}``. Nothing here knows sockets; the
emulator routes these paths here before its SAT authentication.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional

from ._errors import HTTPError, validation_body, validation_error
from ._http import Request, Response
from ._state import Store, Subscriber
from ._tokens import b64url

__all__ = ["Identity", "TOKEN_PATHS"]

PATH_MINT = "/api/fabric/subscribers/tokens"
PATH_REFRESH = "/api/fabric/subscribers/tokens/refresh"
PATH_GUEST = "/api/fabric/guests/tokens"
TOKEN_PATHS = frozenset({PATH_MINT, PATH_REFRESH, PATH_GUEST})

TOKEN_EXPIRED_URL = "https://signalwire.com/docs/rest/overview/error-codes#token_expired"
_SUBSCRIBER_FIELDS = frozenset({
    "application_id", "password", "first_name", "last_name", "display_name", "job_title",
    "time_zone", "country", "region", "company_name",
})
_ADDRESS_PATH = re.compile(r"^/api/fabric/addresses/([^/]+)/?$")


def mint_refresh_token(ch: str) -> str:
    """A refresh-token-shaped string (the header of the fixture ``jwe-header-refresh-token``)."""
    header = {"alg": "dir", "enc": "A256GCM", "typ": "Refresh", "ch": ch}
    return ".".join([
        b64url(json.dumps(header, separators=(",", ":")).encode("utf-8")),
        "",
        b64url(os.urandom(12)),
        b64url(os.urandom(64)),
        b64url(os.urandom(16)),
    ])


@dataclass
class _Refresh:
    subscriber_id: str
    expires_at: float
    used: bool = False


class Identity:
    """The emulator's project credentials and the token endpoints that use them."""

    def __init__(self, store: Store, api_token: Optional[str] = None) -> None:
        self._store = store
        #: The project's API token (``PT`` + 48 hex digits, as SignalWire's look).
        self.api_token = api_token or "PT" + secrets.token_hex(24)
        #: Seconds a minted token lives without ``expire_at``.
        self.token_ttl = 7200.0
        #: Seconds a refreshed token lives.
        self.refreshed_ttl = 7200.0
        #: Seconds a refresh token may be used.
        self.refresh_ttl = 86400.0
        self._refresh: Dict[str, _Refresh] = {}
        self._guests: Dict[str, FrozenSet[str]] = {}  # subscriber_id -> allowed address ids
        self._guest_seq = 0

    def reset(self) -> None:
        with self._store.lock:
            self._refresh = {}
            self._guests = {}

    # -- controls ------------------------------------------------------------------------------

    def expire_refresh_tokens(self, subscriber: Optional[Subscriber] = None) -> int:
        """Make the refresh tokens (of ``subscriber``, or all) expired; returns how many."""
        store = self._store
        with store.lock:
            now = store.clock()
            hit = [r for r in self._refresh.values()
                   if not r.used and (subscriber is None or r.subscriber_id == subscriber.subscriber_id)]
            for record in hit:
                record.expires_at = min(record.expires_at, now - 1.0)
            return len(hit)

    def allowed_addresses(self, subscriber: Subscriber) -> Optional[FrozenSet[str]]:
        """The addresses a guest may reach (``None``: not a guest, no limit)."""
        with self._store.lock:
            return self._guests.get(subscriber.subscriber_id)

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer a request to one of :data:`TOKEN_PATHS`."""
        if request.method != "POST":
            raise HTTPError(405, headers={"Allow": "POST"})
        self._check_credentials(request)
        body = request.json_object()
        if request.path.rstrip("/") == PATH_MINT:
            return self._mint(body)
        if request.path.rstrip("/") == PATH_REFRESH:
            return self._refresh_token(body)
        return self._guest(body)

    def guard(self, caller: Subscriber, request: Request) -> None:
        """403 when a guest reaches for an address outside its ``allowed_addresses``."""
        allowed = self.allowed_addresses(caller)
        if allowed is None:
            return
        m = _ADDRESS_PATH.match(request.path)
        if m is not None and m.group(1) not in allowed and m.group(1) != caller.address_id:
            raise HTTPError(403)
        if request.method == "POST" and request.path.rstrip("/") == "/api/fabric/conversations/join":
            try:
                ids = (request.json() or {}).get("fabric_address_ids")
            except (ValueError, UnicodeDecodeError, AttributeError):
                return  # the join handler answers the bad body
            if isinstance(ids, list) and any(a not in allowed and a != caller.address_id for a in ids):
                raise HTTPError(403)

    def filter(self, caller: Subscriber, request: Request, response: Response) -> Response:
        """A guest's address list holds only its own and its allowed addresses."""
        allowed = self.allowed_addresses(caller)
        if allowed is None or request.path.rstrip("/") != "/api/fabric/addresses":
            return response
        if isinstance(response.body, dict) and isinstance(response.body.get("data"), list):
            response.body["data"] = [
                a for a in response.body["data"]
                if isinstance(a, dict) and (a.get("id") in allowed or a.get("id") == caller.address_id)
            ]
        return response

    # -- handlers ------------------------------------------------------------------------------

    def _check_credentials(self, request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        expected = f"{self._store.project_id}:{self.api_token}".encode("utf-8")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (ValueError, TypeError):
            given = b""
        if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
            raise HTTPError(401, headers={"WWW-Authenticate": 'Basic realm="signalwire"'})

    def _lifetime(self, body: Dict[str, Any], default: float) -> float:
        value = body.get("expire_at")
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise validation_error("invalid_parameter", "expire_at must be a unix timestamp", "expire_at")
        left = float(value) - self._store.clock()
        if left <= 0:
            raise validation_error("invalid_parameter", "expire_at must be in the future", "expire_at")
        return left

    def _mint(self, body: Dict[str, Any]) -> Response:
        reference = body.get("reference")
        if reference is None:
            raise validation_error("missing_required_parameter", "Required parameter is missing", "reference")
        if not isinstance(reference, str) or not reference.strip():
            raise validation_error("invalid_parameter", "reference must be a non-empty string", "reference")
        for name in body:
            if name not in _SUBSCRIBER_FIELDS and name not in ("reference", "expire_at"):
                raise validation_error("invalid_parameter", f"unknown parameter {name}", name)
        ttl = self._lifetime(body, self.token_ttl)
        store = self._store
        with store.lock:
            try:
                subscriber = store.resolve(reference)
                token = store.issue_token(subscriber, ttl)
            except KeyError:
                display = body.get("display_name") or " ".join(
                    str(body[k]) for k in ("first_name", "last_name") if body.get(k)
                ) or reference
                subscriber = store.add_subscriber(reference, ttl, display_name=str(display))
                token = subscriber.token
            refresh = self._new_refresh(subscriber)
        return Response(200, {"subscriber_id": subscriber.subscriber_id, "token": token, "refresh_token": refresh})

    def _refresh_token(self, body: Dict[str, Any]) -> Response:
        value = body.get("refresh_token")
        if value is None:
            raise validation_error("missing_required_parameter", "Required parameter is missing", "refresh_token")
        store = self._store
        with store.lock:
            record = self._refresh.get(value) if isinstance(value, str) else None
            if record is None or record.used:
                raise validation_error("invalid_parameter", "refresh_token is not valid", "refresh_token")
            if store.clock() >= record.expires_at:
                body_422 = validation_body(422, "token_expired", "Token has expired.", "refresh_token")
                body_422["errors"][0]["url"] = TOKEN_EXPIRED_URL
                raise HTTPError(422, body_422)
            record.used = True
            subscriber = store.resolve(record.subscriber_id)
            token = store.issue_token(subscriber, self.refreshed_ttl)
            refresh = self._new_refresh(subscriber)
        return Response(201, {"token": token, "refresh_token": refresh})

    def _guest(self, body: Dict[str, Any]) -> Response:
        allowed = body.get("allowed_addresses")
        if allowed is None:
            raise validation_error("missing_required_parameter", "Required parameter is missing", "allowed_addresses")
        if not isinstance(allowed, list) or not allowed or not all(isinstance(a, str) and a for a in allowed):
            raise validation_error(
                "invalid_parameter", "allowed_addresses must be a non-empty list of address ids", "allowed_addresses"
            )
        ttl = self._lifetime(body, self.token_ttl)
        store = self._store
        with store.lock:
            unknown = [a for a in allowed if a not in store.by_address]
            if unknown:
                raise validation_error("invalid_parameter", f"unknown address: {unknown[0]}", "allowed_addresses")
            self._guest_seq += 1
            guest = store.add_subscriber(f"guest-{self._guest_seq}-{secrets.token_hex(4)}", ttl, display_name="Guest")
            self._guests[guest.subscriber_id] = frozenset(allowed)
        return Response(201, {"token": guest.token})

    def _new_refresh(self, subscriber: Subscriber) -> str:
        token = mint_refresh_token(self._store.ch)
        self._refresh[token] = _Refresh(subscriber.subscriber_id, self._store.clock() + self.refresh_ttl)
        return token
