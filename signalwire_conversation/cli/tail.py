"""``tail``: print new messages live as they arrive over the websocket."""

from __future__ import annotations

import argparse
import queue
from typing import TYPE_CHECKING, Any, Callable, Dict, NoReturn

from ._args import client_from_args, positive_int
from ._errors import EXIT_OK, CLIError
from ._output import _Output, format_event

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
    p.add_argument("--address-id", metavar="A", help="only the conversation with address A")
    p.add_argument("-n", "--count", type=positive_int, metavar="N", help="exit after N messages")


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


def cmd_tail(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args, on_state_change=_StateNotes(out)) as client:
        subscription = client.conversation.subscribe(address_id=args.address_id)
        where = f" with {args.address_id}" if args.address_id else ""
        out.note(f"listening for new messages{where} (Ctrl+C to stop)")
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
                    out.json(event.to_dict())
                else:
                    out.line(format_event(event, names))
        except KeyboardInterrupt:
            out.note("stopped")
        finally:
            subscription.unsubscribe()
    return EXIT_OK


def _state_name(client: "Client") -> str:
    return str(getattr(client.connection_state, "name", ""))


def _listener_ended(client: "Client") -> NoReturn:
    """The listener closed by itself (say, the token was revoked): surface why."""
    client.run_forever()  # returns once it is stopped; re-raises its fatal error, if any
    raise CLIError("the live connection closed")


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {"tail": cmd_tail}
