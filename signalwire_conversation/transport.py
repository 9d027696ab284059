"""The REST transport: one ``requests.Session``, auth, timeouts, retries and error mapping.

:class:`Transport` is private (``Client`` builds one). Its one request loop, :meth:`Transport.request`,
owns every retry; each decision is a small named function below it:

- :func:`should_retry_status` — which HTTP statuses are retried for which method;
- :func:`classify_exception` — what a ``requests`` exception means (the SDK error to raise and
  whether the request may have reached the server, hence whether a POST may be retried);
- :func:`parse_retry_after` — ``Retry-After`` (seconds or HTTP date) and ``retry-after-ms``;
- :meth:`Transport._retry_delay` — the wait before a retry (the only randomness, patch it in
  tests) and :meth:`Transport._sleep` (the only sleep on the REST path).

Policy (the user-facing account is docs/concepts/errors.md, "Retries"):

- GET (and other idempotent methods) are retried on connection errors, timeouts, 408, 429
  and 5xx, and when an answer breaks off mid-body (truncated, reset, timed out).
- POST (``send_message``, ``join``) is retried only when the request provably did not reach
  the server (the TCP connect failed or timed out) or the server refused it without acting
  (429, 503). Never after a read timeout or a reset after sending: that could duplicate a
  message.
- ``max_retries`` counts retries after the first attempt (0 disables them). The wait is a
  capped exponential backoff with jitter; a ``Retry-After`` up to ``retry_after_cap`` seconds
  (60 by default) is honoured exactly. A longer ``Retry-After`` is not slept on: the error
  (a :class:`RateLimitError` with ``retry_after``) is raised at once so the caller decides.
- TLS errors (bad certificate) are never retried: they do not heal by themselves.
- A 401 when the token is a callable: the callable is called once for a fresh token and the
  request is sent again (this does not count as a retry).

Deadline: every attempt has a *total* deadline of ``connect + read`` seconds (with the default
``timeout`` of ``(5, 30)``, 35 s), from the moment the request is sent to the last byte of the
answer. ``requests``' own read timeout bounds each socket read, not the answer, so a server that
sends one byte every few milliseconds would otherwise keep a call alive forever. When the
deadline passes, the attempt fails with :class:`~signalwire_conversation.APITimeoutError` ("the
server did not finish its answer within N s") and is retried like any other timeout (GET yes,
POST never). A call therefore lasts at most ``(max_retries + 1) * (connect + read)`` plus the
backoff waits. The deadline covers the status line, headers and body, for the sessions the SDK creates and for
the standard adapters of your own ``session=`` (see Connections below).
``timeout=None`` disables it along with the other timeouts.

Credentials: the token travels as the request's ``auth`` (:class:`BearerAuth`), so ``requests``
never replaces it with, or adds to it, ambient credentials (a ``~/.netrc`` entry for the host,
``session.auth``, an ``Authorization`` header left on your own session).

Connections: the sessions the SDK creates keep up to ``max_connections`` (64 by default)
connections per host, so that many threads can share one client without the "Connection pool
is full, discarding connection" churn. With your own ``session=``, its standard adapters get
the SDK's deadline-aware connection classes (they act only during the SDK's own requests); an
adapter with its own pool classes is left alone, and for it only the body is checked.

Links to other hosts: the token is only sent where the base URL lives. An absolute URL (a
pagination ``next``/``prev`` link) is followed when it has the base URL's exact origin (scheme,
host, port), or, because the live backend's links may name the *space* host
(``https://example.signalwire.com/...``) rather than ``fabric.signalwire.com`` (docs/protocol.md
§1.5), when it is ``https`` on the default port (or the base URL's port) to a host in the base
URL's parent domain (base ``fabric.signalwire.com``: any ``*.signalwire.com``). An IP-address or
loopback base URL allows its exact origin only. Anything else (another domain, plain ``http`` to
another origin) is refused with :class:`~signalwire_conversation.ResponseValidationError` before
any request: the SDK never hands your token to a host you did not configure.

Responses: a 2xx body must be JSON (or empty); anything else is a
:class:`~signalwire_conversation.ResponseValidationError`. Bodies larger than
``max_response_bytes`` (16 MiB by default) are refused with the same error, without reading
them into memory. Error statuses map to the :class:`~signalwire_conversation.APIError` family.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import platform
import random
import socket
import threading
import time
from typing import Any, Mapping, MutableMapping, Optional, Protocol, Tuple, Union
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError

from . import _logging
from ._version import __version__
from .config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    is_loopback_host,
    normalize_timeout,
)
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    SignalWireError,
    UnprocessableEntityError,
    ValidationError,
)

__all__ = [
    "BearerAuth",
    "Credentials",
    "DEFAULT_MAX_CONNECTIONS",
    "NOT_GIVEN",
    "NotGiven",
    "Transport",
    "new_session",
    "should_retry_status",
    "classify_exception",
    "parse_retry_after",
    "link_allowed",
    "make_status_error",
    "user_agent",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RETRY_AFTER_CAP",
]

logger = _logging.get_logger("signalwire_conversation.transport")

#: Responses larger than this are refused (a conversation page is a few hundred KiB at most).
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: The longest ``Retry-After`` (seconds) the transport sleeps on before retrying by itself.
DEFAULT_RETRY_AFTER_CAP = 60.0
#: Connections kept per host by the sessions the SDK creates (``Client(max_connections=...)``).
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_BACKOFF_INITIAL = 0.5
DEFAULT_BACKOFF_MAX = 8.0

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-signalwire-request-id", "x-amzn-requestid")
_CHUNK = 64 * 1024
_LINK_CACHE_MAX = 32


class NotGiven:
    """The type of :data:`NOT_GIVEN`: "use the client's default" (``None`` means "none")."""

    _instance: Optional["NotGiven"] = None

    def __new__(cls) -> "NotGiven":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: Sentinel for a per-call option that was not passed (the client default applies).
NOT_GIVEN = NotGiven()

class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` (or another ``scheme``: ``Basic`` for the project
    credentials of :class:`~signalwire_conversation.SubscriberTokens`), set as the request's auth.

    Given as ``auth=``, it stops ``requests`` from looking up ``~/.netrc`` (or ``$NETRC``) for
    the host, and it overrides ``session.auth`` and any ``Authorization`` header the session
    carries: the SAT is the one credential sent.
    """

    __slots__ = ("_token", "_scheme")

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        self._token = token
        self._scheme = scheme

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"{self._scheme} {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


#: What ``timeout=`` accepts: seconds, a ``(connect, read)`` pair, or ``None`` for no timeout.
TimeoutArg = Union[float, Tuple[float, float], None]


def user_agent() -> str:
    """``signalwire-conversation/<ver> python/<ver> requests/<ver>``."""
    return (
        f"signalwire-conversation/{__version__} python/{platform.python_version()} "
        f"requests/{requests.__version__}"
    )


def resolve_timeout(timeout: Any, *, name: str = "timeout") -> Optional[Tuple[float, float]]:
    """``None`` (no timeout) or a validated ``(connect, read)`` pair."""
    if timeout is None:
        return None
    return normalize_timeout(timeout, name=name)


def resolve_max_connections(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            "max_connections", f"must be an int >= 1 (connections kept per host), got {value!r}"
        )
    return value


def resolve_max_retries(value: Any, *, name: str = "max_retries") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(name, f"must be an int >= 0 (retries after the first attempt), got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Decision functions
# ---------------------------------------------------------------------------------------------


def should_retry_status(method: str, status: int) -> bool:
    """Whether an HTTP ``status`` answer to ``method`` may be retried.

    Idempotent methods: 408, 429 and every 5xx. POST: only 429 and 503, the statuses where the
    server says it did not act on the request.
    """
    if method.upper() in IDEMPOTENT_METHODS:
        return status in (408, 429) or 500 <= status <= 599
    return status in (429, 503)


def _is_connect_failure(exc: BaseException) -> bool:
    """True when ``exc`` proves the request never left this machine (connect refused/timed out).

    ``requests.ConnectionError`` is raised both for a failed TCP connect (urllib3 wraps a
    ``NewConnectionError`` in a ``MaxRetryError``) and for a connection reset or closed *after*
    the request was sent (a ``ProtocolError``): only the former is provably unsent.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    cause: Optional[BaseException] = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
    if isinstance(cause, MaxRetryError):
        return isinstance(cause.reason, NewConnectionError)
    if isinstance(cause, (NewConnectionError, ConnectionRefusedError)):
        return True
    return False


def classify_exception(
    method: str, url: str, exc: BaseException, *, sent: bool = False
) -> Tuple[SignalWireError, bool]:
    """Translate a ``requests`` exception into an SDK error and say whether a retry is safe.

    ``sent=True`` means the failure happened while reading the response body, so the server
    certainly got the request. Returns ``(error, retryable)``.
    """
    idempotent = method.upper() in IDEMPOTENT_METHODS
    connect_failure = not sent and _is_connect_failure(exc)
    error: SignalWireError
    if isinstance(exc, requests.exceptions.SSLError):
        return APIConnectionError(f"TLS error: {_exc_text(exc)}", method=method, url=url), False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        error = APITimeoutError("connect timed out", method=method, url=url)
    elif isinstance(exc, requests.exceptions.Timeout) or _has_read_timeout(exc):
        error = APITimeoutError("read timed out waiting for the server's answer", method=method, url=url)
    elif connect_failure:
        error = APIConnectionError(f"could not connect: {_exc_text(exc)}", method=method, url=url)
    elif isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        error = APIConnectionError(f"connection lost: {_exc_text(exc)}", method=method, url=url)
    elif isinstance(exc, requests.exceptions.InvalidURL):
        return APIConnectionError(f"invalid URL: {_exc_text(exc)}", method=method, url=url), False
    else:
        return APIConnectionError(f"request failed: {_exc_text(exc)}", method=method, url=url), False
    return error, (connect_failure or idempotent)


def _has_read_timeout(exc: BaseException) -> bool:
    # requests raises ConnectionError(ReadTimeoutError) for a timeout while streaming the body.
    from urllib3.exceptions import ReadTimeoutError

    return bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def _exc_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return _logging.redact(text)[:500]


def parse_retry_after(headers: Mapping[str, str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date.

    Returns ``None`` when absent or unparsable; never negative.

    >>> parse_retry_after({"Retry-After": "2"})
    2.0
    >>> parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0)
    10.0
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value == value and value >= 0:
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        current = time.time() if now is None else now
        return max(0.0, parsed.timestamp() - current)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _origin(parts: SplitResult) -> Tuple[str, str, Optional[int]]:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number
        port = -1
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower().rstrip("."), port


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def link_allowed(base_url: str, url: str) -> bool:
    """Whether the token may be sent to the absolute ``url`` of a client whose base is ``base_url``.

    Yes for the base URL's exact origin; yes for ``https`` (default port or the base's port) to
    a host under the base host's parent domain (``fabric.signalwire.com`` -> ``*.signalwire.com``),
    when the base is itself ``https`` on a DNS name with at least three labels; no otherwise.

    >>> link_allowed("https://fabric.signalwire.com", "https://example.signalwire.com/api/x")
    True
    >>> link_allowed("https://fabric.signalwire.com", "http://example.signalwire.com/api/x")
    False
    >>> link_allowed("https://fabric.signalwire.com", "https://signalwire.com.evil.io/api/x")
    False
    """
    b_scheme, b_host, b_port = _origin(urlsplit(base_url))
    l_scheme, l_host, l_port = _origin(urlsplit(url))
    if not l_host:
        return False
    if (l_scheme, l_host, l_port) == (b_scheme, b_host, b_port):
        return True
    if b_scheme != "https" or l_scheme != "https" or l_port not in (443, b_port):
        return False
    if _is_ip(b_host) or is_loopback_host(b_host) or _is_ip(l_host):
        return False
    labels = b_host.split(".")
    if len(labels) < 3:
        return False  # "signalwire.com" itself: its parent would be a public suffix
    parent = ".".join(labels[1:])
    return l_host == parent or l_host.endswith("." + parent)


def make_status_error(
    status: int,
    *,
    body: Any,
    headers: Mapping[str, str],
    reason: str = "",
    method: Optional[str] = None,
    url: Optional[str] = None,
) -> APIError:
    """The :class:`APIError` subclass for ``status``, its message taken from the body."""
    message = error_message(body) or reason or "no explanation given"
    request_id = _request_id(headers)
    kwargs: dict[str, Any] = dict(
        status_code=status, body=body, headers=headers, request_id=request_id, method=method, url=url
    )
    if status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status in (400, 422):
        return UnprocessableEntityError(message, **kwargs)
    if status == 429:
        return RateLimitError(message, retry_after=parse_retry_after(headers), **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    return APIError(message, **kwargs)


def error_message(body: Any) -> str:
    """The server's explanation in an error body: ``error``, ``errors[].message`` or ``message``."""
    if isinstance(body, Mapping):
        parts: list[str] = []
        err = body.get("error")
        if isinstance(err, str) and err:
            parts.append(err)
        elif isinstance(err, Mapping) and isinstance(err.get("message"), str):
            parts.append(str(err["message"]))
        errors = body.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, Mapping):
                    text = str(item.get("message") or item.get("code") or "error")
                    details = [
                        f"{key} {item[key]}" for key in ("attribute", "code") if item.get(key)
                    ]
                    parts.append(f"{text} ({', '.join(details)})" if details else text)
                elif isinstance(item, str):
                    parts.append(item)
        message = body.get("message")
        if not parts and isinstance(message, str) and message:
            parts.append(message)
        return _logging.redact("; ".join(parts))[:1000]
    if isinstance(body, str):
        text = body.strip()
        if text and not text.startswith("<") and len(text) <= 300:
            return _logging.redact(text)
    return ""


def _request_id(headers: Mapping[str, str]) -> Optional[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _REQUEST_ID_HEADERS:
        if lowered.get(name):
            return lowered[name]
    return None


# ---------------------------------------------------------------------------------------------
# The per-attempt total deadline (sessions the SDK creates)
# ---------------------------------------------------------------------------------------------

# The deadline (time.monotonic()) of the attempt running on this thread, read by the
# connection classes below when they start reading an answer.
_attempt = threading.local()


class _DeadlineExceeded(socket.timeout):
    """Raised by a read once the attempt's total deadline has passed."""


class _DeadlineSocket:
    """A socket view whose every read is bounded by what is left of the attempt's deadline.

    Only the reading side is wrapped (``recv``/``recv_into`` and the ``makefile("rb")`` that
    ``http.client`` reads the status line, headers and body through, built from public
    ``io`` classes: no private socket internals are used); each read gets the
    socket timeout ``min(read timeout, time left)``, and a read after the deadline raises
    :class:`_DeadlineExceeded` (a ``socket.timeout``, which urllib3 reports as a read timeout).
    """

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout: Optional[float] = sock.gettimeout()
        self._readers = 0
        self._close_pending = False

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded("the attempt's total deadline passed")
        timeout = self._timeout
        self._sock.settimeout(remaining if timeout is None or timeout > remaining else timeout)

    def settimeout(self, value: Optional[float]) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return int(self._sock.recv_into(buffer, nbytes, flags))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return bytes(self._sock.recv(bufsize, flags))

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, **kwargs: Any) -> Any:
        if mode != "rb" or kwargs:
            return self._sock.makefile(mode, buffering, **kwargs)
        # what socket.makefile("rb") does, with this view as the raw reader
        raw = _ViewReader(self)
        self._readers += 1
        if buffering == 0:
            return raw
        return io.BufferedReader(raw, buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE)

    def close(self) -> None:
        """Close the socket, or, while a reader made by :meth:`makefile` is open, once it is
        closed (``http.client`` closes the connection of a ``Connection: close`` answer
        before its body is read). The same deferral as ``socket.socket``'s own, by public means."""
        if self._readers > 0:
            self._close_pending = True
        else:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._readers <= 0 and self._close_pending:
            self._close_pending = False
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _ViewReader(io.RawIOBase):
    """The raw stream under ``makefile("rb")``: every read goes through the deadline view."""

    def __init__(self, view: _DeadlineSocket) -> None:
        super().__init__()
        self._view = view

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        return self._view.recv_into(buffer)

    def fileno(self) -> int:
        return int(self._view.fileno())

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._view._reader_closed()


class _DeadlineMixin:
    """Wraps the connection's socket while ``getresponse()`` builds the answer's reader."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline: Optional[float] = getattr(_attempt, "deadline", None)
        sock = self.sock
        if deadline is None or sock is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        view = _DeadlineSocket(sock, deadline)
        self.sock = view
        try:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self.sock is view:  # http.client sets it to None when it closed the connection
                self.sock = sock


class _DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS = {"http": _DeadlineHTTPConnectionPool, "https": _DeadlineHTTPSConnectionPool}


class _DeadlineAdapter(HTTPAdapter):
    """The adapter of the sessions the SDK creates: connections that honour the deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_DEADLINE_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if getattr(manager, "pool_classes_by_scheme", None) is not None and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_DEADLINE_POOLS)
        return manager


def new_session(*, pool_connections: int = 4, pool_maxsize: int = DEFAULT_MAX_CONNECTIONS) -> requests.Session:
    """A ``requests.Session`` as the SDK makes its own: connections that honour the per-attempt
    total deadline, ``pool_maxsize`` connections kept per host (room for many threads sharing
    one client without "pool is full" churn) for up to ``pool_connections`` hosts."""
    session = requests.Session()
    adapter = _DeadlineAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _install_deadline(session: requests.Session) -> None:
    """Give ``session``'s standard adapters the deadline-aware pools.

    An adapter qualifies when it is an ``HTTPAdapter`` whose pool manager still uses urllib3's
    own pool classes (anything custom is left alone). The new pools' connections behave as
    before unless the SDK's own request is running on the thread (the deadline is per thread).
    """
    for adapter in set(session.adapters.values()):
        if isinstance(adapter, _DeadlineAdapter) or not isinstance(adapter, HTTPAdapter):
            continue
        manager = getattr(adapter, "poolmanager", None)
        if not _uses_standard_pools(manager):
            continue
        setattr(manager, "pool_classes_by_scheme", dict(_DEADLINE_POOLS))
        original = adapter.proxy_manager_for

        def proxy_manager_for(proxy: str, _original: Any = original, **proxy_kwargs: Any) -> Any:
            proxy_manager = _original(proxy, **proxy_kwargs)
            if _uses_standard_pools(proxy_manager) and not proxy.lower().startswith("socks"):
                proxy_manager.pool_classes_by_scheme = dict(_DEADLINE_POOLS)
            return proxy_manager

        setattr(adapter, "proxy_manager_for", proxy_manager_for)


_STANDARD_POOLS = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}


def _uses_standard_pools(manager: Any) -> bool:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    return classes is not None and set(classes.items()) == set(_STANDARD_POOLS.items())


def _passed(deadline: Optional[float]) -> bool:
    # a few ms of slack: the socket timeout that fired was armed with the time left
    return deadline is not None and time.monotonic() >= deadline - 0.005


def _attempt_budget(timeout: Optional[Tuple[float, float]]) -> Optional[float]:
    """The total deadline of one attempt, in seconds: connect + read (``None``: no timeout)."""
    return None if timeout is None else timeout[0] + timeout[1]


def _deadline_error(method: str, url: str, budget: float) -> APITimeoutError:
    return APITimeoutError(
        f"the server did not finish its answer within {budget:g} s "
        f"(the per-attempt deadline: connect + read timeout)",
        method=method,
        url=url,
    )


# ---------------------------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------------------------


class Credentials(Protocol):
    """What the transport needs from its credential: :class:`~signalwire_conversation.config.TokenProvider`
    (a SAT, sent as ``Bearer``) or the project credentials of
    :class:`~signalwire_conversation.SubscriberTokens` (sent as ``Basic``)."""

    @property
    def refreshable(self) -> bool: ...

    def get(self) -> str: ...

    def refresh(self, stale: Optional[str] = None) -> str: ...


class _BrokenBody(Exception):
    """Internal: reading a response body failed; carries the SDK error and the retry verdict."""

    def __init__(self, error: SignalWireError, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


class Transport:
    """Sends requests for one :class:`Client`. Safe to share between threads.

    The session is used, never mutated, after construction (a session you pass gets the
    deadline-aware pool classes on its standard adapters, at construction): each request
    carries its token as its own ``auth``, so a refresh in one thread does not race another
    thread's request.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tokens: Credentials,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        session: Optional[requests.Session] = None,
        verify: Union[bool, str] = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        auth_scheme: str = "Bearer",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._tokens = tokens
        self._auth_scheme = auth_scheme
        self.timeout = resolve_timeout(timeout)
        self.max_retries = resolve_max_retries(max_retries)
        self.verify = verify
        self.max_response_bytes = max_response_bytes
        self.retry_after_cap = retry_after_cap
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_connections = resolve_max_connections(max_connections)
        self._owns_session = session is None
        if session is None:
            session = new_session(pool_maxsize=self.max_connections)
        else:
            _install_deadline(session)
        self._session = session
        self._user_agent = user_agent()
        self._closed = threading.Event()
        self._link_verdicts: dict[Tuple[str, str], bool] = {}

    # -- public surface used by ConversationAPI and Page ------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Close the session (only when this transport created it). Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._owns_session:
            self._session.close()

    def url_for(self, path: str) -> str:
        """Absolute URLs verbatim (when :func:`link_allowed`); relative paths joined to the base URL.

        Raises:
            ResponseValidationError: an absolute URL on a host the token must not go to.
        """
        if urlsplit(path).scheme or path.startswith("//"):
            url = urljoin(self.base_url, path)
            if not self._link_allowed(url):
                raise ResponseValidationError(
                    f"the server's link {_logging.redact(url)[:300]} points away from {self.base_url.rstrip('/')} "
                    f"(another host, or plain http); not following it with your token"
                )
            return url
        return urljoin(self.base_url, path.lstrip("/"))

    def _link_allowed(self, url: str) -> bool:
        """:func:`link_allowed` for this base URL, remembered per origin (a page link per page).

        The verdict depends only on the link's scheme and network location, so it is cached
        by those (a bounded cache: at most ``_LINK_CACHE_MAX`` origins are remembered).
        """
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        verdict = self._link_verdicts.get(key)
        if verdict is None:
            verdict = link_allowed(self.base_url, url)
            if len(self._link_verdicts) < _LINK_CACHE_MAX:
                self._link_verdicts[key] = verdict
        return verdict

    def get(
        self,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        timeout: Union[TimeoutArg, NotGiven] = NOT_GIVEN,
        max_retries: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Any:
        return self.request("GET", path, params=params, timeout=timeout, max_retries=max_retries)

    def post(
        self,
        path: str,
        *,
        json_body: Any = None,
        timeout: Union[TimeoutArg, NotGiven] = NOT_GIVEN,
        max_retries: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Any:
        return self.request("POST", path, json_body=json_body, timeout=timeout, max_retries=max_retries)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        timeout: Union[TimeoutArg, NotGiven] = NOT_GIVEN,
        max_retries: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Any:
        """Send one request, retrying as the policy allows; the decoded JSON body (or ``None``).

        ``timeout``/``max_retries`` not given: the client's defaults; ``timeout=None``: none.
        """
        if self._closed.is_set():
            raise SignalWireError("this client is closed; create a new Client")
        method = method.upper()
        url = self.url_for(path)
        call_timeout = self.timeout if isinstance(timeout, NotGiven) else resolve_timeout(timeout)
        retries = self.max_retries if isinstance(max_retries, NotGiven) else resolve_max_retries(max_retries)
        data = None if json_body is None else json.dumps(json_body, separators=(",", ":"))
        budget = _attempt_budget(call_timeout)
        refreshed = False
        attempt = 0
        while True:
            token = self._tokens.get()
            headers = self._headers(has_body=data is not None)
            self._log_request(method, url, params, data, attempt)
            started = time.monotonic()
            deadline = None if budget is None else started + budget
            retry_after: Optional[float] = None
            _attempt.deadline = deadline
            try:
                response = self._send(
                method, url, headers=headers, params=params, data=data, timeout=call_timeout, token=token
            )
            except requests.exceptions.RequestException as exc:
                error, retryable = classify_exception(method, url, exc)
                if budget is not None and isinstance(error, APITimeoutError) and _passed(deadline):
                    error = _deadline_error(method, url, budget)
                if retryable and attempt < retries:
                    self._log_retry(method, url, attempt, retries, str(error), None)
                    self._sleep(self._retry_delay(attempt, None))
                    attempt += 1
                    continue
                raise error from exc
            finally:
                _attempt.deadline = None
            try:
                status = response.status_code
                body = self._read_body(method, url, response, deadline=deadline, budget=budget)
            except _BrokenBody as broken:
                # the answer broke off mid-body: the server got the request, so only an
                # idempotent method may be sent again
                if broken.retryable and attempt < retries:
                    self._log_retry(method, url, attempt, retries, str(broken.error), None)
                    self._sleep(self._retry_delay(attempt, None))
                    attempt += 1
                    continue
                raise broken.error from broken.__cause__
            finally:
                response.close()
            elapsed = time.monotonic() - started
            self._log_response(method, url, status, elapsed, body)
            if 200 <= status < 300:
                return self._decode_json(method, url, status, body, response.headers)
            decoded = self._decode_error_body(body, response.headers)
            error = make_status_error(
                status, body=decoded, headers=dict(response.headers), reason=response.reason or "",
                method=method, url=url,
            )
            if status == 401 and not refreshed and self._tokens.refreshable:
                refreshed = True
                logger.info("%s %s answered 401; refreshing the token and trying again", method, url)
                self._tokens.refresh(stale=token)
                continue
            if should_retry_status(method, status) and attempt < retries:
                retry_after = parse_retry_after(response.headers)
                if retry_after is None or retry_after <= self.retry_after_cap:
                    self._log_retry(method, url, attempt, retries, f"HTTP {status}", retry_after)
                    self._sleep(self._retry_delay(attempt, retry_after))
                    attempt += 1
                    continue
                logger.info(
                    "%s %s: Retry-After %.1f s exceeds the %.1f s cap; not retrying",
                    method, url, retry_after, self.retry_after_cap,
                )
            raise error from None

    # -- the seam: one method touches the session ------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Optional[Mapping[str, Any]],
        data: Optional[str],
        timeout: Optional[Tuple[float, float]],
        token: str,
    ) -> requests.Response:
        return self._session.request(
            method,
            url,
            headers=dict(headers),
            auth=BearerAuth(token, self._auth_scheme),
            params=params,
            data=data.encode("utf-8") if data is not None else None,
            timeout=timeout,
            verify=self.verify,
            stream=True,
            allow_redirects=False,
        )

    # -- retry timing: patch these two in tests ---------------------------------------------

    def _retry_delay(self, attempt: int, retry_after: Optional[float]) -> float:
        """Seconds to wait before retry ``attempt + 1``.

        ``Retry-After`` (already known to be within the cap) wins; otherwise
        ``min(backoff_max, backoff_initial * 2**attempt)`` minus up to 25 % jitter.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        delay = min(self.backoff_max, self.backoff_initial * (2.0 ** attempt))
        return delay * (1.0 - 0.25 * random.random())

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    # -- helpers -----------------------------------------------------------------------------

    def _headers(self, *, has_body: bool) -> MutableMapping[str, str]:
        # (the token itself goes as the request's auth: see _send and BearerAuth)
        headers = {
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _read_body(
        self,
        method: str,
        url: str,
        response: requests.Response,
        *,
        deadline: Optional[float] = None,
        budget: Optional[float] = None,
    ) -> bytes:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_response_bytes:
            raise self._too_large(method, url, response.status_code)
        chunks: list[bytes] = []
        size = 0
        idempotent = method.upper() in IDEMPOTENT_METHODS
        try:
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_large(method, url, response.status_code)
                chunks.append(chunk)
                if deadline is not None and _passed(deadline):
                    # (a custom session's connections are only checked here, between chunks)
                    raise _BrokenBody(_deadline_error(method, url, budget or 0.0), idempotent)
        except requests.exceptions.RequestException as exc:
            error, retryable = classify_exception(method, url, exc, sent=True)
            if budget is not None and deadline is not None and isinstance(error, APITimeoutError) and _passed(deadline):
                error = _deadline_error(method, url, budget)
            raise _BrokenBody(error, retryable) from exc
        return b"".join(chunks)

    def _too_large(self, method: str, url: str, status: int) -> ResponseValidationError:
        return ResponseValidationError(
            f"{method} {url}: HTTP {status} response body is larger than "
            f"{self.max_response_bytes} bytes; refused"
        )

    @staticmethod
    def _decode_json(method: str, url: str, status: int, body: bytes, headers: Mapping[str, str]) -> Any:
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            rid = _request_id(headers)
            where = f" [request {rid}]" if rid else ""
            raise ResponseValidationError(
                f"{method} {url}: HTTP {status} answer is not valid JSON{where}: "
                f"{_logging.preview(body, 200)}"
            ) from None

    @staticmethod
    def _decode_error_body(body: bytes, headers: Mapping[str, str]) -> Any:
        if not body.strip():
            return None
        try:
            return _logging.redact_data(json.loads(body))
        except ValueError:
            return _logging.redact(body.decode("utf-8", "replace"))

    def _log_request(
        self, method: str, url: str, params: Optional[Mapping[str, Any]], data: Optional[str], attempt: int
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            suffix = f" (retry {attempt})" if attempt else ""
            logger.debug(
                "request %s %s params=%s%s body=%s",
                method, url, dict(params or {}), suffix, _logging.preview(data) if data else "-",
            )

    def _log_response(self, method: str, url: str, status: int, elapsed: float, body: bytes) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "response %s %s -> %d in %.3f s body=%s",
                method, url, status, elapsed, _logging.preview(body),
            )

    def _log_retry(
        self, method: str, url: str, attempt: int, retries: int, why: str, retry_after: Optional[float]
    ) -> None:
        hint = f", Retry-After {retry_after:.1f} s" if retry_after is not None else ""
        logger.info("%s %s failed (%s%s); retry %d of %d", method, url, why, hint, attempt + 1, retries)

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, timeout={self.timeout!r}, max_retries={self.max_retries})"
