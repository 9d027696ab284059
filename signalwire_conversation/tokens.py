"""``SubscriberTokens``: subscriber access tokens (SATs) minted from the project credentials.

A backend holds the *project credentials* (project id + API token, HTTP Basic on
``https://<space>.signalwire.com``), not a SAT. This module mints a SAT per subscriber
``reference`` (``POST /api/fabric/subscribers/tokens``; the subscriber is created on the first
mint of a new reference), caches it, renews it before it expires with its refresh token
(``POST /api/fabric/subscribers/tokens/refresh``) and mints again when the refresh token itself
has expired (``422 token_expired``)::

    from signalwire_conversation import Client, SubscriberTokens

    tokens = SubscriberTokens()              # SIGNALWIRE_PROJECT_ID / _API_TOKEN / _SPACE
    client = Client(token=tokens.source("alice@example.com"))

Wire facts the lifetimes rest on (SignalWire's REST reference): the mint answer carries no
expiry, so a token lives until the ``expire_at`` sent with it, else the documented default of
2 hours; a refreshed token lives 2 hours; an ``expire_at`` in the past is refused with 422, so
an ``expire_at`` is sent with one mint only, never again. A token is renewed
``refresh_margin`` seconds before that expiry (at most half its lifetime before), and a
:class:`~signalwire_conversation.Client` whose token is refused (a 401) asks its
:meth:`SubscriberTokens.source` again, which then renews at once.

Thread-safe: one request per reference at a time (sixteen threads asking for the same new
reference cause one mint), requests for different references run in parallel. The cache holds
at most ``max_cached`` references (least recently used evicted first). The API token is never
shown: not in ``repr()``, logs or error messages.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import requests

from . import _logging
from .config import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, _checked_url, redact_token
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
    ValidationError,
)
from .transport import TimeoutArg, Transport

__all__ = [
    "SubscriberTokens",
    "default_tokens",
    "TokenSourceCallable",
    "DEFAULT_TOKEN_LIFETIME",
    "SUBSCRIBER_FIELDS",
]

logger = _logging.get_logger("signalwire_conversation.tokens")

ENV_PROJECT_ID = "SIGNALWIRE_PROJECT_ID"
ENV_API_TOKEN = "SIGNALWIRE_API_TOKEN"
ENV_SPACE = "SIGNALWIRE_SPACE"

PATH_MINT = "/api/fabric/subscribers/tokens"
PATH_REFRESH = "/api/fabric/subscribers/tokens/refresh"
PATH_GUEST = "/api/fabric/guests/tokens"

#: Seconds a token lives when no ``expire_at`` was sent, and after a refresh (SignalWire: 2 h).
DEFAULT_TOKEN_LIFETIME = 2 * 3600.0
#: Renew a token this many seconds before it expires (at most half its lifetime before).
DEFAULT_REFRESH_MARGIN = 300.0
#: References kept in the cache at most.
DEFAULT_MAX_CACHED = 10_000
# A token with less than this many seconds left is not handed out when its renewal failed.
_STILL_VALID = 10.0

#: The subscriber fields ``token_for`` accepts besides ``reference`` (the token request's body).
#: (Not ``password``: the request body is logged at DEBUG level, and a subscriber's password
#: has no place in a backend that mints its tokens.)
SUBSCRIBER_FIELDS = frozenset({
    "expire_at",
    "application_id",
    "first_name",
    "last_name",
    "display_name",
    "job_title",
    "time_zone",
    "country",
    "region",
    "company_name",
})

#: What :meth:`SubscriberTokens.source` returns: ``Client(token=...)`` calls it for a token.
TokenSourceCallable = Callable[[], str]

_HINT = (
    f"pass SubscriberTokens(project_id=..., api_token=..., space=...) or set {ENV_PROJECT_ID}, "
    f"{ENV_API_TOKEN} and {ENV_SPACE}"
)


class _ProjectCredentials:
    """The transport's credential for the project API: ``Basic base64(project_id:api_token)``."""

    refreshable = False

    def __init__(self, project_id: str, api_token: str) -> None:
        self._value = base64.b64encode(f"{project_id}:{api_token}".encode("utf-8")).decode("ascii")

    def get(self) -> str:
        return self._value

    def refresh(self, stale: Optional[str] = None) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_ProjectCredentials(<redacted>)"


class _Entry:
    """The cached token of one reference; its lock makes requests for it one at a time."""

    __slots__ = ("lock", "fields", "token", "refresh_token", "subscriber_id", "renew_at", "expires_at")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fields: Dict[str, Any] = {}
        self.token: Optional[str] = None
        self.refresh_token: Optional[str] = None
        self.subscriber_id: Optional[str] = None
        self.renew_at = 0.0  # time.monotonic() after which the token is renewed
        self.expires_at = 0.0  # time.monotonic() when the token expires


class SubscriberTokens:
    """Mints, caches and renews subscriber access tokens from the project credentials.

    Args:
        project_id: the project id. Default: env ``SIGNALWIRE_PROJECT_ID``.
        api_token: the project's API token. Default: env ``SIGNALWIRE_API_TOKEN``. Never shown.
        space: the space host (``example.signalwire.com``) or its URL
            (``https://example.signalwire.com``; plain ``http`` only for a loopback host, such
            as the emulator's). Default: env ``SIGNALWIRE_SPACE``.
        timeout: seconds, or a ``(connect, read)`` pair, for each request (default 5 s / 30 s).
        max_retries: retries after the first attempt, as for :class:`~signalwire_conversation.Client`
            (a mint is sent again only when it provably did not reach the server, or on 429/503).
        session: a ``requests.Session`` to use; never closed by this object.
        verify: TLS verification: ``True``, ``False`` (dangerous) or a CA bundle path.
        refresh_margin: renew a token this many seconds before it expires (default 300; at most
            half of its lifetime before).
        max_cached: how many references are cached at most (least recently used evicted).

    Raises:
        ConfigurationError: a credential or the space is missing or unusable.
        ValidationError: an argument of the wrong type or value.
    """

    def __init__(
        self,
        project_id: Optional[str] = None,
        api_token: Optional[str] = None,
        space: Optional[str] = None,
        *,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        session: Optional[requests.Session] = None,
        verify: Union[bool, str] = True,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        max_cached: int = DEFAULT_MAX_CACHED,
    ) -> None:
        env = os.environ
        project_id = _setting("project_id", project_id, env.get(ENV_PROJECT_ID), ENV_PROJECT_ID)
        api_token = _setting("api_token", api_token, env.get(ENV_API_TOKEN), ENV_API_TOKEN)
        space = _setting("space", space, env.get(ENV_SPACE), ENV_SPACE)
        if session is not None and not isinstance(session, requests.Session):
            raise ValidationError("session", f"must be a requests.Session or None, got {type(session).__name__}")
        if (
            isinstance(refresh_margin, bool)
            or not isinstance(refresh_margin, (int, float))
            or not math.isfinite(refresh_margin)
            or refresh_margin < 0
        ):
            raise ValidationError("refresh_margin", f"must be a number of seconds >= 0, got {refresh_margin!r}")
        if isinstance(max_cached, bool) or not isinstance(max_cached, int) or max_cached < 1:
            raise ValidationError("max_cached", f"must be an int >= 1, got {max_cached!r}")
        #: The project id (not a secret).
        self.project_id = project_id
        #: The space's base URL, e.g. ``https://example.signalwire.com``.
        self.space_url = _space_url(space)
        self.refresh_margin = float(refresh_margin)
        self.max_cached = max_cached
        self._api_token = api_token
        self._transport = Transport(
            base_url=self.space_url,
            tokens=_ProjectCredentials(project_id, api_token),
            timeout=timeout,
            max_retries=max_retries,
            session=session,
            verify=verify,
            auth_scheme="Basic",
        )
        self._lock = threading.Lock()
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        #: Requests sent, by kind (``mint``, ``refresh``, ``guest``); they only grow.
        self.stats = {"mint": 0, "refresh": 0, "guest": 0}

    # -- public API ----------------------------------------------------------------------------

    def token_for(self, reference: str, **fields: Any) -> str:
        """A valid SAT for the subscriber ``reference`` (created on its first mint).

        The cached token while it is fresh; else a renewal with the refresh token; else (no
        refresh token, or it expired) a new mint. When a renewal ahead of expiry fails for a
        passing reason (no connection, a 5xx, a 429), the current token is returned while it
        has more than 10 seconds left, and the next call tries again. ``fields`` (``first_name``, ``last_name``,
        ``display_name``, ``expire_at``, ``application_id``, ... see :data:`SUBSCRIBER_FIELDS`)
        go into the mint request; they are remembered for later mints of this reference, and
        passing new ones replaces them (they apply from the next mint). ``expire_at`` (epoch
        seconds or a ``datetime``, in the future) sets the lifetime of the next minted token
        only: it is never sent again, as renewed tokens live the server's default (2 hours)
        and a past ``expire_at`` is refused.

        Raises:
            ValidationError: a bad reference or field (nothing is sent).
            AuthenticationError: the project credentials were refused.
            APIError: another error answer (after the retries the policy allows).
        """
        reference = _check_reference(reference)
        checked = _check_fields(fields) if fields else None
        entry = self._entry(reference)
        with entry.lock:
            if checked is not None:
                entry.fields = checked
            if entry.token is not None and time.monotonic() < entry.renew_at:
                return entry.token
            try:
                return self._renew(reference, entry)
            except (APIConnectionError, ServerError, RateLimitError) as exc:
                left = entry.expires_at - time.monotonic()
                if entry.token is None or left < _STILL_VALID:
                    raise
                # a renewal ahead of time that failed for a passing reason: the current token
                # still works; the next call tries again
                logger.warning(
                    "renewing the token of %r failed (%s: %s); the current one is used, valid %.0f s more",
                    reference, type(exc).__name__, exc, left,
                )
                return entry.token

    def source(self, reference: str, **fields: Any) -> TokenSourceCallable:
        """The zero-argument callable ``Client(token=...)`` accepts, for ``reference``
        (``fields``: as for :meth:`token_for`, used by its first call).

        Its first call returns :meth:`token_for`; every later call means "the token I have is
        not good enough" (the client got a 401, or its token is about to expire), so unless the
        cache already holds a newer token than the one it last returned, it renews at once.
        """
        reference = _check_reference(reference)
        checked = _check_fields(fields) if fields else None
        return _Source(self, reference, checked)

    def guest_token(
        self, allowed_addresses: Iterable[str], *, expire_at: Optional[Union[int, float, _dt.datetime]] = None
    ) -> str:
        """A guest SAT limited to ``allowed_addresses`` (``POST /api/fabric/guests/tokens``).

        Not cached: every call mints a new one. ``expire_at``: epoch seconds or a ``datetime``
        in the future (default: the server's).
        """
        if isinstance(allowed_addresses, str) or not isinstance(allowed_addresses, Iterable):
            raise ValidationError(
                "allowed_addresses", f"must be a list of address ids, got {type(allowed_addresses).__name__}"
            )
        addresses = list(allowed_addresses)
        if not addresses or not all(isinstance(a, str) and a.strip() for a in addresses):
            raise ValidationError("allowed_addresses", "must be a non-empty list of non-empty address id strings")
        body: Dict[str, Any] = {"allowed_addresses": [a.strip() for a in addresses]}
        if expire_at is not None:
            body["expire_at"] = _check_expire_at(expire_at)
        answer = self._post("guest", PATH_GUEST, body)
        return _token_of(answer, PATH_GUEST, "token")

    def forget(self, reference: str) -> None:
        """Drop the cached token of ``reference`` (the next request mints a new one)."""
        with self._lock:
            self._entries.pop(_check_reference(reference), None)

    def close(self) -> None:
        """Close the HTTP session (only when this object created it). Idempotent."""
        self._transport.close()

    def __enter__(self) -> "SubscriberTokens":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        """How many references are cached."""
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"SubscriberTokens(project_id={self.project_id!r}, api_token=<redacted>, "
            f"space={self.space_url!r}, cached={len(self)})"
        )

    # -- internals -----------------------------------------------------------------------------

    def _entry(self, reference: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(reference)
            if entry is None:
                entry = self._entries[reference] = _Entry()
                while len(self._entries) > self.max_cached:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(reference)
            return entry

    def _renewed(self, reference: str, stale: Optional[str]) -> str:
        """For :class:`_Source`: a token newer than ``stale`` (renewing unless one is cached)."""
        entry = self._entry(reference)
        with entry.lock:
            if entry.token is not None and entry.token != stale and time.monotonic() < entry.renew_at:
                return entry.token
            return self._renew(reference, entry)

    def _renew(self, reference: str, entry: _Entry) -> str:
        """Refresh (or mint) the token of ``entry``; the caller holds ``entry.lock``."""
        if entry.refresh_token is not None:
            started = time.monotonic()
            try:
                answer = self._post("refresh", PATH_REFRESH, {"refresh_token": entry.refresh_token})
            except UnprocessableEntityError as exc:
                codes = ", ".join(str(e.get("code")) for e in exc.errors) or "no code"
                logger.info("the refresh token of %r was refused (%s); minting a new token", reference, codes)
            else:
                self._store(entry, answer, PATH_REFRESH, started, DEFAULT_TOKEN_LIFETIME)
                assert entry.token is not None
                return entry.token
        body: Dict[str, Any] = {"reference": reference}
        lifetime = DEFAULT_TOKEN_LIFETIME
        for name, value in entry.fields.items():
            if name == "expire_at":
                left = float(value) - time.time()
                if left <= 1.0:
                    continue  # stale: the server would refuse it (422); its default applies
                lifetime = left
            body[name] = value
        started = time.monotonic()
        answer = self._post("mint", PATH_MINT, body)
        self._store(entry, answer, PATH_MINT, started, lifetime)
        entry.fields.pop("expire_at", None)  # for one mint: later tokens live the default
        assert entry.token is not None
        return entry.token

    def _store(self, entry: _Entry, answer: Any, path: str, started: float, lifetime: float) -> None:
        token = _token_of(answer, path, "token")
        refresh = answer.get("refresh_token")
        entry.token = token
        entry.refresh_token = refresh if isinstance(refresh, str) and refresh else None
        subscriber_id = answer.get("subscriber_id")
        if isinstance(subscriber_id, str):
            entry.subscriber_id = subscriber_id
        entry.expires_at = started + lifetime
        entry.renew_at = entry.expires_at - min(self.refresh_margin, lifetime / 2.0)

    def _post(self, kind: str, path: str, body: Dict[str, Any]) -> Any:
        with self._lock:
            self.stats[kind] += 1
        try:
            return self._transport.post(path, json_body=body)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"the project credentials were refused (project id {self.project_id!r}, API token "
                f"<redacted>) by {self.space_url}: check {ENV_PROJECT_ID}, {ENV_API_TOKEN} and "
                f"{ENV_SPACE} (the server said: {self._scrub(exc.message)})",
                status_code=exc.status_code,
                body=exc.body,
                headers=exc.headers,
                request_id=exc.request_id,
                method=exc.method,
                url=exc.url,
            ) from None
        except APIError as exc:
            exc.message = self._scrub(exc.message)
            raise

    def _scrub(self, text: str) -> str:
        """``text`` without the API token (a server could echo it back)."""
        return _logging.redact(text.replace(self._api_token, _logging.REDACTED))


_default_lock = threading.Lock()
_default: Optional[Tuple[Tuple[Optional[str], ...], SubscriberTokens]] = None


def default_tokens() -> SubscriberTokens:
    """The process's shared :class:`SubscriberTokens` built from the environment.

    Built on first use and rebuilt when ``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN`` or
    ``SIGNALWIRE_SPACE`` changed since (what ``Client.for_subscriber`` uses without ``tokens=``).
    """
    global _default
    key = tuple(os.environ.get(name) for name in (ENV_PROJECT_ID, ENV_API_TOKEN, ENV_SPACE))
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, SubscriberTokens())
        return _default[1]


class _Source:
    """The callable of :meth:`SubscriberTokens.source` (see there)."""

    __slots__ = ("_tokens", "_reference", "_fields", "_last", "_lock")

    def __init__(self, tokens: SubscriberTokens, reference: str, fields: Optional[Dict[str, Any]]) -> None:
        self._tokens = tokens
        self._reference = reference
        self._fields = fields
        self._last: Optional[str] = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            last = self._last
        if last is None:
            fields = self._fields or {}
            token = self._tokens.token_for(self._reference, **fields)
        else:
            token = self._tokens._renewed(self._reference, stale=last)
        with self._lock:
            self._last = token
        return token

    def __repr__(self) -> str:
        last = redact_token(self._last) if self._last else "none yet"
        return f"<token source for {self._reference!r} from {self._tokens.space_url}, last {last}>"


# -- checks -----------------------------------------------------------------------------------


def _setting(name: str, value: Optional[str], env_value: Optional[str], env_name: str) -> str:
    if value is None:
        value = env_value or None
        if value is None:
            raise ConfigurationError(f"no {name}: {_HINT}")
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string (or set {env_name}); {_HINT}")
    return value.strip()


def _space_url(space: str) -> str:
    """``example.signalwire.com`` → ``https://example.signalwire.com``; a URL is checked as is."""
    text = space.strip().rstrip("/")
    if "://" not in text:
        if "/" in text or " " in text:
            raise ConfigurationError(f"space must be a host such as example.signalwire.com or a URL, got {space!r}")
        text = f"https://{text}"
    return _checked_url("space", text, ("https", "http"), allow_insecure=False)


def _check_reference(reference: Any) -> str:
    if not isinstance(reference, str):
        raise ValidationError("reference", f"must be a non-empty string, got {type(reference).__name__}")
    if not reference.strip():
        raise ValidationError("reference", "must be a non-empty string, got an empty one")
    return reference.strip()


def _check_expire_at(value: Any, name: str = "expire_at") -> int:
    if isinstance(value, _dt.datetime):
        try:
            seconds = value.timestamp()
        except (ValueError, OverflowError, OSError) as exc:
            raise ValidationError(name, f"the datetime {value!r} has no epoch timestamp: {exc}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(name, f"must be epoch seconds (int or float) or a datetime, got {value!r}")
    else:
        seconds = float(value)
    if seconds <= time.time():
        raise ValidationError(name, f"must be in the future (the server refuses a past one), got {value!r}")
    return int(math.ceil(seconds))


def _check_fields(fields: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in fields.items():
        if name not in SUBSCRIBER_FIELDS:
            raise ValidationError(name, f"is not a subscriber token field; known: {', '.join(sorted(SUBSCRIBER_FIELDS))}")
        if value is None:
            continue
        if name == "expire_at":
            out[name] = _check_expire_at(value)
        elif not isinstance(value, str):
            raise ValidationError(name, f"must be a string, got {type(value).__name__}")
        else:
            out[name] = value
    return out


def _token_of(answer: Any, path: str, key: str) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value.strip():
        shape: List[str] = sorted(answer) if isinstance(answer, dict) else [type(answer).__name__]
        raise ResponseValidationError(f"POST {path}: the answer has no {key!r} string (keys: {shape})")
    return value.strip()
