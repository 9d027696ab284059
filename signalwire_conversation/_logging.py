"""Logging for the whole package, with token redaction in one place.

Every module logs through ``logging.getLogger("signalwire_conversation")`` or a child of it
(:func:`get_logger`). Nothing here configures handlers: that is the application's business.

Redaction: :func:`redact` removes anything that looks like a credential from a string:
``Bearer <token>`` values, JWT/JWE-shaped strings (base64url JSON headers start with ``eyJ``)
and the values of ``jwt_token``/``token``/``authorization`` keys in JSON or repr text. The
:class:`RedactingFilter` applies it to every record of the package's loggers, so even a message
built by mistake from a token is scrubbed before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["LOGGER_NAME", "get_logger", "redact", "redact_data", "preview", "RedactingFilter", "REDACTED"]

LOGGER_NAME = "signalwire_conversation"
REDACTED = "<redacted>"

# "Bearer abc.def" (header values, repr of a headers dict).
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s'\",}]+")
# JWT (3 parts) and JWE (5 parts, empty segments allowed): a base64url JSON header "eyJ...".
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}")
# "jwt_token": "...", 'token': '...', authorization=..., in JSON, repr or query strings.
_KEYED = re.compile(
    r"(?i)(?<![\w-])([\"']?(?:jwt_token|access_token|refresh_token|token|authorization|dpop_token)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!bearer\b|<redacted>)([^\s'\",}&]+)"
)


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``<redacted>``.

    >>> redact("Authorization: Bearer eyJhbGciOiJkaXIifQ..abc.def.ghi")
    'Authorization: Bearer <redacted>'
    >>> redact('{"jwt_token": "secret-value"}')
    '{"jwt_token": "<redacted>"}'
    """
    if not text:
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _KEYED.sub(lambda m: m.group(1) + REDACTED, text)


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
    """The package logger (or a child such as ``signalwire_conversation.http``), redacting."""
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
