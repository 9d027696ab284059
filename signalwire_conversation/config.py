"""Configuration: the token, its JWE header, the REST and websocket hosts, the environment.

Nothing here touches the network. Rules (docs/protocol.md §1.1): the SAT is a 5-part JWE whose
protected header carries ``ch`` (e.g. ``puc.swire.io``). The REST base is
``https://fabric.<ch minus its first label>`` and the websocket is ``wss://<ch>``; without a
usable ``ch`` they are ``https://fabric.signalwire.com`` and ``wss://puc.signalwire.com``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
import threading
from typing import Any, Callable, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError, SignalWireError

__all__ = [
    "TokenSource",
    "TokenProvider",
    "decode_token_header",
    "Hosts",
    "resolve_hosts",
    "is_loopback_host",
    "redact_token",
    "resolve_verify",
    "DEFAULT_REST_BASE",
    "DEFAULT_TOKEN_TIMEOUT",
    "DEFAULT_RELAY_URL",
]

#: What ``Client(token=...)`` accepts: the token itself, or a zero-argument callable that
#: returns a fresh one (called again on a 401 and before expiry).
TokenSource = Union[str, Callable[[], str]]

DEFAULT_REST_BASE = "https://fabric.signalwire.com"
DEFAULT_RELAY_URL = "wss://puc.signalwire.com"

ENV_TOKEN = "SIGNALWIRE_TOKEN"
ENV_BASE_URL = "SIGNALWIRE_BASE_URL"
ENV_RELAY_URL = "SIGNALWIRE_RELAY_URL"

_TOKEN_HINT = (
    "pass Client(token=...) with a subscriber access token (SAT), or set the "
    f"{ENV_TOKEN} environment variable"
)


def redact_token(token: str) -> str:
    """A form of ``token`` that is safe to print: its first 6 characters and its length."""
    if not token:
        return "<empty>"
    return f"{token[:6]}…({len(token)} chars)"


def decode_token_header(token: str) -> dict[str, Any]:
    """Decode the protected header (first segment) of a JWE or JWT token.

    Raises :class:`ConfigurationError` when the token is not a dot-separated token whose first
    segment is base64url-encoded JSON. The payload is never decoded (a SAT's is encrypted).
    """
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError(f"the token is empty: {_TOKEN_HINT}")
    parts = token.strip().split(".")
    if len(parts) not in (3, 5):
        raise ConfigurationError(
            f"the token is malformed: expected a JWE (5 dot-separated parts) or a JWT (3 parts), "
            f"got {len(parts)} part(s); {_TOKEN_HINT}"
        )
    segment = parts[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(
            f"the token is malformed: its header is not base64url-encoded JSON; {_TOKEN_HINT}"
        ) from None
    if not isinstance(header, dict):
        raise ConfigurationError(
            f"the token is malformed: its header is not a JSON object; {_TOKEN_HINT}"
        )
    return header


#: How long a token callable may take (seconds) before the caller waiting for it gives up.
DEFAULT_TOKEN_TIMEOUT = 30.0
#: Hung token callables left running before a new refresh is refused outright (each holds a
#: daemon thread; a callable that hangs every time must not grow them without bound).
_MAX_HUNG_CALLS = 3


class _Flight:
    """One call of the token callable, on its own daemon thread, shared by every waiter."""

    __slots__ = ("done", "token", "error", "abandoned", "thread")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Optional[str] = None
        self.error: Optional[ConfigurationError] = None
        self.abandoned = False
        self.thread: Optional[threading.Thread] = None


# set on the thread running the token callable: a refresh from inside it must not wait for itself
_in_callable = threading.local()


class TokenProvider:
    """Holds the current token; thread-safe.

    ``get()`` returns the current token at once, always: the lock it takes is held only to
    read or swap the token, never while the user's callable runs. ``refresh()`` gets a fresh
    token from the callable (when the token source is a callable) and returns it; with a plain
    string it returns the same token and ``refreshable`` is ``False``.

    Refreshes are single-flight: the callable runs on its own daemon thread, and every thread
    that asks for a refresh meanwhile waits for that one call (at most ``timeout`` seconds,
    then :class:`ConfigurationError`), while every other thread keeps using the current token
    until the new one is in. A refresh asked from inside the callable itself (a callable that
    uses the same client and got a 401) returns the current token at once instead of waiting
    for itself. A call that overran ``timeout`` is abandoned (its late result is dropped) and
    the next refresh calls the callable again; after ``_MAX_HUNG_CALLS`` such calls still
    running, a refresh fails at once rather than start another thread. The first call, at
    construction, runs on the constructing thread.
    """

    def __init__(
        self,
        source: Optional[TokenSource],
        *,
        environ: Optional[Mapping[str, str]] = None,
        timeout: float = DEFAULT_TOKEN_TIMEOUT,
    ) -> None:
        env = os.environ if environ is None else environ
        if source is None:
            source = env.get(ENV_TOKEN) or None
            if source is None:
                raise ConfigurationError(f"no token: {_TOKEN_HINT}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or not math.isfinite(timeout):
            from .errors import ValidationError

            raise ValidationError("token_timeout", f"must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._lock = threading.Lock()  # guards the fields below; never held while the callable runs
        self._flight: Optional[_Flight] = None
        self._hung: list[_Flight] = []
        self._factory: Optional[Callable[[], str]]
        self._token: str
        if isinstance(source, str):
            self._factory = None
            self._token = self._checked(source)
        elif callable(source):
            self._factory = source
            # the first call runs here, on the constructing thread (no thread is started and
            # nobody else can be waiting yet); refreshes run on their own thread, bounded
            self._token = self._checked(self._call(source))
        else:
            raise ConfigurationError(
                f"token must be a str or a zero-argument callable returning a str, "
                f"not {type(source).__name__}"
            )
        self._header = decode_token_header(self._token)

    @staticmethod
    def _call(factory: Callable[[], str]) -> Any:
        try:
            return factory()
        except SignalWireError:
            raise  # the SDK's own (say, SubscriberTokens refused): already says what went wrong
        except Exception as exc:  # the user's code: say where it came from
            from ._logging import redact  # the user's message may quote a token

            detail = redact(str(exc))
            if len(detail) > 300:
                detail = detail[:300] + "…"
            raise ConfigurationError(
                f"the token callable raised {type(exc).__name__}: {detail}"
            ) from exc

    @staticmethod
    def _checked(token: Any) -> str:
        if not isinstance(token, str):
            raise ConfigurationError(
                f"the token must be a str, got {type(token).__name__}; {_TOKEN_HINT}"
            )
        stripped: str = token.strip()
        decode_token_header(stripped)
        return stripped

    @property
    def refreshable(self) -> bool:
        """Whether ``refresh()`` can produce a new token (the source is a callable)."""
        return self._factory is not None

    @property
    def header(self) -> dict[str, Any]:
        """The decoded protected header of the current token."""
        with self._lock:
            return dict(self._header)

    def get(self) -> str:
        """The current token (never waits for a refresh in progress)."""
        with self._lock:
            return self._token

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, and no refresh in flight (its thread stayed in the
        parent)."""
        self._lock = threading.Lock()
        self._flight = None
        self._hung = []

    def refresh(self, stale: Optional[str] = None) -> str:
        """Get a fresh token from the callable and make it current; returns it.

        When ``stale`` is given and the current token already differs from it (another thread
        refreshed meanwhile), the current token is returned without calling the callable again.
        When a refresh is already under way, this waits for it instead of starting another.

        Raises:
            ConfigurationError: the callable raised, returned something that is not a token,
                or did not return within :attr:`timeout` seconds.
        """
        if self._factory is None:
            return self.get()
        return self._fetch(stale=stale)

    def _fetch(self, stale: Optional[str]) -> str:
        factory = self._factory
        assert factory is not None
        with self._lock:
            if stale is not None and stale != self._token:
                return self._token
            if self._inside_callable():
                # the callable itself asked (it uses this client): waiting would be waiting for itself
                return self._token
            flight = self._flight
            if flight is None:
                self._hung = [f for f in self._hung if not f.done.is_set()]
                if len(self._hung) >= _MAX_HUNG_CALLS:
                    raise ConfigurationError(
                        f"the token callable has not returned for {len(self._hung)} earlier refreshes "
                        f"(each waited {self.timeout:g} s); not calling it again until one returns"
                    )
                flight = self._flight = _Flight()
                flight.thread = threading.Thread(
                    target=self._fly, args=(factory, flight), name="signalwire-token", daemon=True
                )
                flight.thread.start()
        if not flight.done.wait(self.timeout):
            with self._lock:
                if self._flight is flight:
                    self._flight = None
                    flight.abandoned = True
                    self._hung.append(flight)
            raise ConfigurationError(
                f"the token callable did not return within {self.timeout:g} s "
                f"(token_timeout); the current token is kept and the next refresh calls it again"
            )
        if flight.thread is not None:
            flight.thread.join(1.0)  # it is past done.set(): returning, gone in microseconds
        if flight.error is not None:
            # a fresh exception per waiter (several threads may be raising it at once)
            raise ConfigurationError(flight.error.message) from flight.error.__cause__
        assert flight.token is not None
        return flight.token

    def _inside_callable(self) -> bool:
        """Whether this thread is running this provider's token callable."""
        owner: object = getattr(_in_callable, "provider", None)
        return owner is self

    def _fly(self, factory: Callable[[], str], flight: _Flight) -> None:
        """The callable's thread: call it once, install the token unless abandoned."""
        _in_callable.provider = self
        try:
            token = self._checked(self._call(factory))
            header = decode_token_header(token)
        except ConfigurationError as exc:
            flight.error = exc
        except BaseException as exc:  # not an Exception (the callable raised SystemExit...)
            flight.error = ConfigurationError(f"the token callable raised {type(exc).__name__}")
        else:
            with self._lock:
                if not flight.abandoned:
                    self._token = token
                    self._header = header
            flight.token = token
        finally:
            with self._lock:
                if self._flight is flight:
                    self._flight = None
            flight.done.set()

    def __repr__(self) -> str:
        kind = "callable" if self._factory is not None else "static"
        return f"TokenProvider({kind}, token={redact_token(self.get())})"


def is_loopback_host(host: Optional[str]) -> bool:
    """True for ``localhost``, ``*.localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Hosts:
    """The resolved REST base URL and websocket URL (no trailing slash)."""

    __slots__ = ("base_url", "relay_url")

    def __init__(self, base_url: str, relay_url: str) -> None:
        self.base_url = base_url
        self.relay_url = relay_url

    def __repr__(self) -> str:
        return f"Hosts(base_url={self.base_url!r}, relay_url={self.relay_url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hosts) and (self.base_url, self.relay_url) == (
            other.base_url,
            other.relay_url,
        )

    def __hash__(self) -> int:
        return hash((self.base_url, self.relay_url))


def hosts_from_ch(ch: Any) -> Tuple[str, str]:
    """REST base and relay URL derived from a token's ``ch`` claim (docs/protocol.md §1.1)."""
    if not isinstance(ch, str) or "." not in ch.strip().strip("."):
        return DEFAULT_REST_BASE, DEFAULT_RELAY_URL
    ch = ch.strip().strip(".")
    domain = ch.split(".", 1)[1]
    return f"https://fabric.{domain}", f"wss://{ch}"


def _checked_url(
    name: str, url: str, schemes: Tuple[str, str], *, allow_insecure: bool
) -> str:
    secure, insecure = schemes
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{name} must be a non-empty URL string")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in schemes or not parts.hostname:
        raise ConfigurationError(
            f"{name} must be an absolute {secure}:// (or {insecure}://) URL, got {url!r}"
        )
    if scheme == insecure and not (allow_insecure or is_loopback_host(parts.hostname)):
        raise ConfigurationError(
            f"{name} {url!r} is not encrypted and its host is not a loopback address; "
            f"use {secure}://, or pass allow_insecure=True if you really mean it"
        )
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def relay_url_for(base_url: str) -> str:
    """The websocket URL on the same host and port as ``base_url`` (``http``→``ws``)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def resolve_hosts(
    token_header: Mapping[str, Any],
    *,
    base_url: Optional[str] = None,
    relay_url: Optional[str] = None,
    allow_insecure: bool = False,
    environ: Optional[Mapping[str, str]] = None,
) -> Hosts:
    """Work out the REST base and relay URLs.

    Precedence, for each URL: the explicit argument, then the environment
    (``SIGNALWIRE_BASE_URL`` / ``SIGNALWIRE_RELAY_URL``), then the token's ``ch`` claim. When
    only the base URL is given, the relay URL is the same host and port with a ``ws``/``wss``
    scheme. Plain ``http``/``ws`` is accepted for loopback hosts, elsewhere only with
    ``allow_insecure=True``.
    """
    env = os.environ if environ is None else environ
    base = base_url if base_url is not None else (env.get(ENV_BASE_URL) or None)
    relay = relay_url if relay_url is not None else (env.get(ENV_RELAY_URL) or None)
    ch_base, ch_relay = hosts_from_ch(token_header.get("ch"))
    if base is None:
        base = ch_base
    base = _checked_url("base_url", base, ("https", "http"), allow_insecure=allow_insecure)
    if relay is None:
        relay = relay_url_for(base) if (base_url is not None or env.get(ENV_BASE_URL)) else ch_relay
    relay = _checked_url("relay_url", relay, ("wss", "ws"), allow_insecure=allow_insecure)
    return Hosts(base, relay)


#: Environment variables naming a CA bundle for ``verify=True``, in the order they are read:
#: ``requests``' own two, then OpenSSL's.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def resolve_verify(
    verify: Union[bool, str], *, environ: Optional[Mapping[str, str]] = None
) -> Union[bool, str]:
    """The one trust decision used by REST *and* the websocket: ``False`` or a CA path.

    ``False`` stays ``False`` (no verification). A path is used as it is (a file, or a
    directory of hashed certificates). ``True`` means: the first of ``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE`` (as ``requests`` reads them) and ``SSL_CERT_FILE`` that is set and not
    empty, else the ``certifi`` bundle ``requests`` ships with. Pass ``environ={}`` to ignore
    the environment (a ``requests.Session`` with ``trust_env = False``).

    Raises:
        ConfigurationError: the chosen path does not exist (named, with where it came from).
    """
    if verify is False:
        return False
    source = "verify="
    path: Optional[str] = verify if isinstance(verify, str) else None
    if path is None:
        env = os.environ if environ is None else environ
        for name in CA_BUNDLE_ENV:
            value = env.get(name)
            if value:
                path, source = value, f"the {name} environment variable"
                break
    if path is None:
        import certifi  # requests' own dependency: the bundle it verifies with by default

        return str(certifi.where())
    if not os.path.exists(path):
        raise ConfigurationError(f"the CA bundle {path!r} (from {source}) does not exist")
    return path


Timeout = Union[float, Tuple[float, float]]

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_TIMEOUT: Tuple[float, float] = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
DEFAULT_MAX_RETRIES = 2


def normalize_timeout(timeout: Any, *, name: str = "timeout") -> Tuple[float, float]:
    """``timeout`` as a ``(connect, read)`` pair of positive seconds.

    Raises :class:`signalwire_conversation.ValidationError` naming ``name`` when it is not a
    positive number or a pair of them.
    """
    from .errors import ValidationError

    def positive(value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > 0
            or not math.isfinite(value)
        ):
            raise ValidationError(
                name, f"must be a positive number of seconds or a (connect, read) pair, got {value!r}"
            )
        return float(value)

    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValidationError(name, f"a timeout pair must be (connect, read), got {timeout!r}")
        return positive(timeout[0]), positive(timeout[1])
    value = positive(timeout)
    return value, value
