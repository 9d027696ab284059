"""Exit codes and the errors a command reports as one ``error: ...`` line."""

from __future__ import annotations

from typing import Tuple

from ._connection import connection_line
from ..errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

__all__ = [
    "PROG",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "CLIError",
    "UsageError",
    "error_line",
]

PROG = "signalwire-conversation"

#: Exit codes.
EXIT_OK = 0
EXIT_FAILURE = 1  # the server or the network failed
EXIT_USAGE = 2  # a bad argument or configuration (argparse's own convention)
EXIT_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT)


class CLIError(Exception):
    """An expected failure of a command: printed as one ``error:`` line, then exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CLIError):
    """A bad command line (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


# The SDK's parameter names, as the command line spells them (for its ValidationErrors).
_OPTION_OF = {
    "address_id": "ADDRESS_ID",
    "reference": "REFERENCE",
    "text": "TEXT",
    "metadata": "--metadata",
    "details": "--details",
    "limit": "--limit",
    "page_size": "--page-size",
    "since": "--since",
    "until": "--until",
    "timeout": "--timeout",
    "max_retries": "--max-retries",
}


def error_line(exc: BaseException) -> Tuple[str, int]:
    """The one line and exit code for an expected error."""
    if isinstance(exc, CLIError):
        return exc.message, exc.code
    if isinstance(exc, AuthenticationError) and "project credentials" in exc.message:
        return f"authentication failed: {exc}", EXIT_FAILURE  # it names what to check
    if isinstance(exc, AuthenticationError):
        return (
            f"authentication failed: {exc} (check the token of --token-file, --token or "
            "SIGNALWIRE_TOKEN: it may be wrong, expired or revoked)",
            EXIT_FAILURE,
        )
    if isinstance(exc, PermissionDeniedError):
        return f"permission denied: {exc}", EXIT_FAILURE
    if isinstance(exc, NotFoundError):
        return f"not found: {exc}", EXIT_FAILURE
    if isinstance(exc, APIConnectionError):
        return connection_line(exc), EXIT_FAILURE
    if isinstance(exc, ValidationError):
        name = _OPTION_OF.get(exc.parameter)
        text = str(exc)
        if name and text.startswith(f"{exc.parameter}: "):
            text = f"{name}: {text[len(exc.parameter) + 2:]}"
        return text, EXIT_USAGE
    if isinstance(exc, ConfigurationError):
        return str(exc), EXIT_USAGE
    return str(exc) or type(exc).__name__, EXIT_FAILURE

