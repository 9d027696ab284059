"""The one place the fan-out package imports ``redis``, plus small helpers around it.

``import signalwire_conversation`` never imports this module; ``signalwire_conversation.fanout``
does, and turns a missing ``redis`` package into an error that says what to install.
"""

from __future__ import annotations

import random
import re
from typing import Any, Optional, Union

from ..errors import ConfigurationError

INSTALL_HINT = 'pip install "signalwire-conversation[redis]"'

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "signalwire_conversation.fanout needs the redis package (redis-py); "
        f"install it with: {INSTALL_HINT}"
    ) from exc

__all__ = [
    "redis",
    "Redis",
    "RedisError",
    "RedisConnectionError",
    "RedisTimeoutError",
    "ResponseError",
    "UNAVAILABLE",
    "connect",
    "text",
    "redact_url",
    "Backoff",
]

Redis = redis.Redis

#: The errors that mean "Redis is not reachable right now" (retry later, never crash).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)

RedisLike = Union[str, "redis.Redis"]


def connect(
    url_or_client: RedisLike,
    *,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
) -> "redis.Redis":
    """A ``redis.Redis`` for ``url_or_client`` (a URL such as ``redis://localhost:6379/0``).

    A client passed in is used as it is. One built from a URL fails fast (one retry on a fresh
    connection, so a pooled socket that died with a Redis restart does not count as an outage)
    and leaves longer waits to the caller's own backoff.
    """
    if not isinstance(url_or_client, str):
        return url_or_client
    if not url_or_client.strip():
        raise ConfigurationError("the Redis URL is empty; pass e.g. redis://localhost:6379/0")
    try:
        return redis.Redis.from_url(
            url_or_client.strip(),
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"unusable Redis URL {redact_url(url_or_client)!r}: {exc} "
            "(expected redis://[[user]:password@]host[:port][/db], rediss:// or unix://)"
        ) from None


def describe(client: "redis.Redis") -> str:
    """``host:port/db`` of a client, for log lines (never a password)."""
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


_PASSWORD = re.compile(r"(?<=://)([^:@/]*):([^@/]*)@")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}:***@", url)


def text(value: Any) -> Optional[str]:
    """A Redis reply as ``str`` (clients may or may not decode responses)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def error_text(exc: BaseException) -> str:
    """A one-line description of a Redis error, for a log line without a traceback."""
    message = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {message}"


class Backoff:
    """Capped exponential backoff with full jitter; ``reset()`` after a success."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, *, jitter: bool = True) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * float(1 << min(self.attempt, 30)))
        self.attempt += 1
        if not self.jitter:
            return ceiling
        # Full jitter, but never less than half the ceiling, so waits do grow visibly.
        return ceiling / 2 + self._random() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0

    def _random(self) -> float:  # isolated for tests
        return random.random()
