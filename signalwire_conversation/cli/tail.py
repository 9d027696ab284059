"""``tail``: print new messages live as they arrive over the websocket."""

from __future__ import annotations

import argparse
import queue
from typing import TYPE_CHECKING, Any, Callable, Dict, NoReturn, Optional

from ..errors import RealtimeError, ValidationError
from ._args import identifier, positive_int
from ._client import client_from_args
from ._connection import connection_line, host_port, listener_failure_line
from ._cursor_file import CursorFile
from ._errors import EXIT_OK, CLIError, UsageError
from ._json import event_json
from ._output import _Output, format_event
from .rest import address_errors

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    from ..client import Client

__all__ = ["add_commands", "COMMANDS"]


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``tail``; ``command(name, help, description=None)`` makes a parser."""
    p = command(
        "tail",
        "print new messages live as they arrive, until Ctrl+C",
        "Print new messages live as they arrive over the websocket, until Ctrl+C (a clean exit)."
        " Messages missed during a network blip are recovered and printed in order.",
    )
    p.add_argument("--address-id", type=identifier, metavar="A", help="only the conversation with address A")
    p.add_argument("-n", "--count", type=positive_int, metavar="N", help="exit after N messages")
    p.add_argument(
        "--cursor-file",
        metavar="PATH",
        help="resume after the message whose cursor PATH holds (from now when PATH does not exist "
        "yet), and replace it, atomically, after each printed message",
    )


class _StateNotes:
    """Notes on stderr when the live connection drops and comes back (human mode only)."""

    def __init__(self, out: _Output) -> None:
        self.out = out
        self.dropped = False

    def __call__(self, state: Any) -> None:
        name = getattr(state, "name", str(state))
        if name == "RECONNECTING" and not self.dropped:
            self.dropped = True
            self.out.note("connection lost; reconnecting (missed messages will be recovered)…")
        elif name == "CONNECTED" and self.dropped:
            self.dropped = False
            self.out.note("reconnected")


#: How long ``tail`` waits for the live connection when --timeout is not given.
CONNECT_TIMEOUT = 15.0


def _subscribe(client: "Client", args: argparse.Namespace, after: Optional[str] = None) -> Any:
    """Subscribe (after the cursor ``after``, when given), or fail with one line saying why the
    live connection could not be opened (the client is closed on the way out, so nothing keeps
    retrying behind the error)."""
    timeout = args.timeout if getattr(args, "timeout", None) is not None else CONNECT_TIMEOUT
    options: Dict[str, Any] = {"timeout": timeout}
    if after is not None:
        options["after"] = after
    try:
        if args.address_id:
            with address_errors(client, args.address_id):
                return client.conversation.subscribe(address_id=args.address_id, **options)
        return client.conversation.subscribe(**options)
    except ValidationError as exc:
        if exc.parameter != "after":
            raise
        message = str(exc).split(": ", 1)[-1]
        raise UsageError(f"--cursor-file {args.cursor_file} does not hold a cursor: {message}") from None
    except RealtimeError:
        fatal = client.listener_error
        if fatal is not None:  # not retried (an untrusted certificate, say)
            raise CLIError(listener_failure_line(fatal, client.relay_url)) from None
        cause = _last_connect_error(client)
        if cause is not None:
            raise CLIError(connection_line(cause, client.relay_url)) from None
        raise CLIError(
            f"cannot connect to {host_port(client.relay_url)} (no live connection within {timeout:g} s)"
        ) from None


def _last_connect_error(client: "Client") -> Optional[BaseException]:
    """The listener's last connection error, if it kept one."""
    listener = getattr(client, "_listener", None)
    error = getattr(listener, "last_error", None)
    return error if isinstance(error, BaseException) else None


def cmd_tail(args: argparse.Namespace, out: _Output) -> int:
    cursor_file = CursorFile(args.cursor_file) if args.cursor_file else None
    after = cursor_file.load() if cursor_file is not None else None
    with client_from_args(args, on_state_change=_StateNotes(out)) as client:
        subscription = _subscribe(client, args, after)
        where = f" with {args.address_id}" if args.address_id else ""
        since = " (and those stored after the cursor in --cursor-file first)" if after else ""
        out.note(f"listening for new messages{where}{since} (Ctrl+C to stop)")
        received = 0
        names: Dict[str, str] = {}
        try:
            while args.count is None or received < args.count:
                try:
                    event = subscription.get(timeout=0.5)
                except queue.Empty:
                    if not subscription.active or _state_name(client) == "CLOSED":
                        _listener_ended(client)
                    continue
                received += 1
                if out.as_json:
                    out.json(event_json(event))
                else:
                    out.line(format_event(event, names))
                if cursor_file is not None and getattr(event, "cursor", None):
                    _save(cursor_file, event.cursor)
        except KeyboardInterrupt:
            out.note("stopped")
        finally:
            subscription.unsubscribe()
    return EXIT_OK


def _save(cursor_file: CursorFile, cursor: str) -> None:
    try:
        cursor_file.save(cursor)
    except OSError as exc:
        raise CLIError(f"cannot write --cursor-file {cursor_file.path}: {exc.strerror or exc}") from None


def _state_name(client: "Client") -> str:
    return str(getattr(client.connection_state, "name", ""))


def _listener_ended(client: "Client") -> NoReturn:
    """The listener closed by itself (say, the token was revoked): surface why."""
    client.run_forever()  # returns once it is stopped; re-raises its fatal error, if any
    raise CLIError("the live connection closed")


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {"tail": cmd_tail}
