"""Logging for the whole package, with token redaction in one place.

Every module logs through ``logging.getLogger("signalwire_conversation")`` or a child of it
(:func:`get_logger`). Nothing here configures handlers: that is the application's business.

Redaction: :func:`redact` removes anything that looks like a credential from a string:
``Bearer <token>`` values, JWT/JWE-shaped strings (base64url JSON headers start with ``eyJ``)
and the values of ``jwt_token``/``token``/``authorization`` keys in JSON, repr or query text when
they look like credentials (:func:`looks_like_credential`: long opaque strings, not words). The
:class:`RedactingFilter` applies it to every record of the package's loggers, so even a message
built by mistake from a token is scrubbed before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = [
    "LOGGER_NAME",
    "get_logger",
    "redact",
    "redact_data",
    "looks_like_credential",
    "preview",
    "RedactingFilter",
    "REDACTED",
]

LOGGER_NAME = "signalwire_conversation"
REDACTED = "<redacted>"

# "Bearer abc.def" / "Basic dXNlcjpwYXNz" (header values, repr of a headers dict).
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",}]+")
# JWT (3 parts) and JWE (5 parts, empty segments allowed): a base64url JSON header "eyJ...".
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}")
# "jwt_token": "...", 'token': '...', authorization=..., in JSON, repr or query strings.
_KEYED = re.compile(
    r"(?i)(?<![\w-])([\"']?(?:jwt_token|access_token|refresh_token|token|authorization|dpop_token)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!bearer\b|<redacted>)([^\s'\",}&]+)"
)


# A long opaque run: what a credential looks like once it is not JWT-shaped (an API token,
# a refresh token, a session id); ordinary words are shorter or lack digits and capitals.
_OPAQUE = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")


def looks_like_credential(value: str) -> bool:
    """Whether the value of a ``token=``/``authorization:`` key looks like a secret.

    JWT/JWE-shaped (``eyJ...``), or a run of at least 16 characters of
    ``[A-Za-z0-9._~+/=-]`` holding a digit or both upper and lower case letters. So
    ``token: signalwire.connect`` (a method name) and ``token=expired`` stay readable.

    >>> looks_like_credential("PT3f1c2e9a0b7d4c6e8f")
    True
    >>> looks_like_credential("signalwire.connect")
    False
    """
    if value.startswith("eyJ"):
        return True
    for match in _OPAQUE.finditer(value):
        run = match.group()
        if any(c.isdigit() for c in run) or (run.lower() != run and run.upper() != run):
            return True
    return False


def _keyed(match: "re.Match[str]") -> str:
    value = match.group(2)
    return match.group(1) + REDACTED if looks_like_credential(value) else match.group(0)


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``<redacted>``.

    >>> redact("Authorization: Bearer eyJhbGciOiJkaXIifQ..abc.def.ghi")
    'Authorization: Bearer <redacted>'
    >>> redact('{"jwt_token": "s3cret-Value-0123456789"}')
    '{"jwt_token": "<redacted>"}'
    >>> redact("the relay refused the token: signalwire.connect failed")
    'the relay refused the token: signalwire.connect failed'
    """
    if not text:
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _KEYED.sub(_keyed, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credentials from a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record to logging's own handling
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = RedactingFilter()


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """The package logger (or a child such as ``signalwire_conversation.transport``), redacting."""
    if name != LOGGER_NAME and not name.startswith(LOGGER_NAME + "."):
        name = f"{LOGGER_NAME}.{name}"
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def preview(value: Any, limit: int = 2000) -> str:
    """A redacted, length-capped text form of a body for DEBUG logs."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        text = repr(value)
    text = redact(text)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} chars)"
    return text


def redact_data(value: Any, _depth: int = 0) -> Any:
    """``value`` (decoded JSON) with :func:`redact` applied to every string in it.

    Used on error bodies kept on exceptions, so a server that echoes the token back does not
    leak it through ``err.body``. Nesting deeper than 50 levels is left as it is.
    """
    if isinstance(value, str):
        return redact(value)
    if _depth > 50:
        return value
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_data(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(v, _depth + 1) for v in value]
    return value
