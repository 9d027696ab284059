"""The one error hierarchy of the SDK.

::

    SignalWireError                  every error this package raises
    ├── ConfigurationError           no token, a malformed token, an unusable host
    ├── ValidationError (ValueError) bad input, raised before any request is sent
    ├── APIError                     the server answered with an error status
    │   ├── AuthenticationError      401 (also a refused websocket authentication)
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── UnprocessableEntityError 400 or 422
    │   ├── RateLimitError           429 (``retry_after`` in seconds, when sent)
    │   └── ServerError              5xx
    ├── APIConnectionError           no response at all: refused, reset, DNS, TLS
    │   └── APITimeoutError          the connect or read timeout passed
    ├── ResponseValidationError      a response or event could not be decoded into a model
    └── RealtimeError                the websocket failed (not an authentication refusal)

Every error has a ``str()`` a user can paste into a support ticket; none of them ever
contains a token.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = [
    "SignalWireError",
    "ConfigurationError",
    "ValidationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "ResponseValidationError",
    "RealtimeError",
]


class SignalWireError(Exception):
    """Base class of every error raised by ``signalwire_conversation``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: The human-readable explanation (also what ``str(err)`` returns).
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(SignalWireError):
    """The client cannot be configured: no token, a malformed token, an unusable URL."""


class ValidationError(SignalWireError, ValueError):
    """An argument is invalid. Raised before anything is sent.

    ``parameter`` names the offending argument.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        #: The name of the argument that was wrong.
        self.parameter = parameter


class APIError(SignalWireError):
    """The server answered with an error status.

    Attributes:
        status_code: the HTTP status.
        message: the server's explanation, or the HTTP reason when it gave none.
        body: the decoded JSON body (a ``dict``/``list``), the raw text when it was not JSON,
            or ``None`` when empty; redacted (a server may echo the token back), for REST and
            for a refused websocket authentication alike.
        headers: the response headers.
        request_id: the server's request id header, when it sent one.
        errors: the ``errors`` list of a 422 body (``type``, ``code``, ``message``,
            ``attribute``, ``url``), empty otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        request_id: Optional[str] = None,
        method: Optional[str] = None,
        url: Optional[str] = None,
    ) -> None:
        from ._logging import redact, redact_data

        super().__init__(redact(message))
        self.status_code = status_code
        self.body = redact_data(body)
        self.headers: Mapping[str, str] = dict(headers or {})
        self.request_id = request_id
        self.method = method
        self.url = url
        self.errors: list[Mapping[str, Any]] = _errors_list(body)

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"HTTP {self.status_code}{where}: {self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


def _errors_list(body: Any) -> list[Mapping[str, Any]]:
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [e for e in errors if isinstance(e, Mapping)]
    return []


class AuthenticationError(APIError):
    """401: the token is missing, expired, revoked or wrong (REST or websocket)."""


class PermissionDeniedError(APIError):
    """403: the token is valid but may not do this."""


class NotFoundError(APIError):
    """404: no such conversation, address or message."""


class UnprocessableEntityError(APIError):
    """400 or 422: the server refused the request's content (see ``errors``)."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, if given."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. Retried automatically for reads; raised once retries ran out."""


class APIConnectionError(SignalWireError):
    """No response was received: connection refused or reset, DNS or TLS failure."""

    def __init__(
        self, message: str, *, method: Optional[str] = None, url: Optional[str] = None
    ) -> None:
        where = f" ({method} {url})" if method and url else ""
        super().__init__(f"{message}{where}")
        self.method = method
        self.url = url


class APITimeoutError(APIConnectionError):
    """The connect or read timeout passed before the server answered."""


class ResponseValidationError(SignalWireError):
    """The server sent data that does not decode into the expected model (say, no ``id``)."""


class RealtimeError(SignalWireError):
    """The websocket connection failed in a way that is not an authentication refusal."""

    def __init__(self, message: str, *, code: Optional[int] = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})")
        #: The JSON-RPC error code, when the server sent one.
        self.code = code
