"""A failed connection said as a person would: ``cannot connect to 127.0.0.1:9 (connection
refused)``, with a hint when the cause is a common mistake (``https://`` against a plain-HTTP
port, a certificate the machine does not trust, a mistyped host).

The SDK's :class:`~signalwire_conversation.APIConnectionError` (REST) and the listener's last
error (websocket) keep the low-level exception as their cause; this module walks that chain
and names the first cause it recognises.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import APIConnectionError, APITimeoutError

__all__ = ["connection_line", "listener_failure_line", "host_port"]

#: OpenSSL's reasons for a handshake that met something other than TLS (a plain-HTTP port).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST")
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
_CA_HINT = (
    "if your network inspects TLS, point REQUESTS_CA_BUNDLE at its CA certificate; for a local "
    "test server, pass its certificate the same way"
)


def host_port(url: Optional[str]) -> str:
    """``host:port`` of ``url`` (the scheme's default port when none is written)."""
    if not url:
        return "the server"
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return f"{host}:{port}" if port is not None else host


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was caused by: ``__cause__``, ``__context__``, urllib3's
    ``reason`` and exceptions carried in ``args`` (breadth first, each once, bounded)."""
    seen: set[int] = set()
    todo: List[BaseException] = [exc]
    while todo and len(seen) < 32:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        for nxt in (current.__cause__, current.__context__, reason, *current.args):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _reason(exc: BaseException, url: Optional[str]) -> Tuple[str, Optional[str]]:
    """(what happened, a hint or ``None``) for a connection that failed with ``exc``."""
    chain = list(_chain(exc))
    scheme = urlsplit(url).scheme.lower() if url else ""
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or "certificate verify failed"
            return f"TLS certificate not trusted: {detail}", _CA_HINT
        if isinstance(cause, ssl.SSLError):
            reason = str(getattr(cause, "reason", "") or "")
            if reason in _NOT_TLS or "wrong version number" in str(cause).lower():
                plain = "ws://" if scheme == "wss" else "http://"
                return (
                    "TLS handshake failed: the server does not speak TLS on this port",
                    f"use {plain} for a plain-HTTP server such as the local emulator",
                )
            if "CERTIFICATE_VERIFY_FAILED" in str(cause):
                return "TLS certificate not trusted", _CA_HINT
            return f"TLS handshake failed: {reason.replace('_', ' ').lower() or cause}", None
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", None
        if isinstance(cause, socket.gaierror):
            return "unknown host", "check the host name in the URL or the token"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server", _tls_hint(scheme)
        if isinstance(cause, ConnectionAbortedError):
            return "connection aborted", None
    for cause in chain:
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):  # a websocket upgrade answered with a plain HTTP status
            return (
                f"the server answered HTTP {status} instead of opening a websocket",
                "check --relay-url",
            )
        name = type(cause).__name__
        if isinstance(cause, (socket.timeout, TimeoutError)) or name in ("ConnectTimeoutError", "ConnectTimeout"):
            return "timed out", "raise --timeout if the network is slow"
        if name in ("RemoteDisconnected", "BadStatusLine", "ProtocolError"):
            return "the server closed the connection without answering", _tls_hint(scheme)
    for cause in reversed(chain):  # the innermost operating-system error, if any
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:], None
    return type(chain[-1]).__name__, None


def _tls_hint(scheme: str) -> Optional[str]:
    """For a connection cut before any answer: the scheme may not match the server."""
    if scheme in ("http", "ws"):
        return f"if the server uses TLS, use {'wss' if scheme == 'ws' else 'https'}://"
    if scheme in ("https", "wss"):
        plain = "ws" if scheme == "wss" else "http"
        return f"if the server does not use TLS (the local emulator does not), use {plain}://"
    return None


# The listener's own words for a websocket certificate failure (fatal: never retried).
_WS_CERTIFICATE = re.compile(r"^TLS certificate verification failed for \S+: (?P<reason>.*?)\. The websocket")


def listener_failure_line(error: BaseException, relay_url: Optional[str]) -> str:
    """One line for the fatal error that stopped the realtime listener before it connected."""
    certificate = _WS_CERTIFICATE.match(str(error))
    if certificate:
        return (
            f"cannot connect to {host_port(relay_url)} (TLS certificate not trusted: "
            f"{certificate.group('reason')}); {_CA_HINT}"
        )
    if any(isinstance(cause, OSError) for cause in _chain(error)):
        return connection_line(error, relay_url)
    return f"cannot open the live connection to {host_port(relay_url)}: {error}"


def connection_line(exc: BaseException, url: Optional[str] = None) -> str:
    """One line for a request or websocket connection that got no answer.

    ``url`` is where it went (an :class:`APIConnectionError` knows its own).
    """
    if url is None and isinstance(exc, APIConnectionError):
        url = exc.url
    where = host_port(url)
    if isinstance(exc, APITimeoutError) and "read" in str(exc):
        return (
            f"{where} accepted the connection but did not answer in time "
            "(raise --timeout if the server is slow)"
        )
    reason, hint = _reason(exc, url)
    lost = isinstance(exc, APIConnectionError) and str(exc).startswith("connection lost")
    line = f"lost the connection to {where} ({reason})" if lost else f"cannot connect to {where} ({reason})"
    return f"{line}; {hint}" if hint else line
