"""The request/response commands: ``whoami``, ``conversations``, ``messages``, ``send``, ``join``."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Tuple

from ._args import _json_object, identifier, non_empty, parse_time, positive_int
from ._client import client_from_args
from ..errors import NotFoundError, SignalWireError, UnprocessableEntityError
from ._errors import EXIT_FAILURE, EXIT_OK, PROG, CLIError, UsageError
from ._json import conversation_json, join_json, message_json, sent_json, subscriber_json
from ._output import _collect, _message_row, _one_line, _Output, local_time

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    from ..client import Client

__all__ = ["add_commands", "COMMANDS"]


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands; ``command(name, help, description=None)`` makes a parser."""
    command("whoami", "show the subscriber the token belongs to and its address")

    p = command("conversations", "list the conversations of the token's subscriber")
    p.add_argument("--limit", type=positive_int, metavar="N", help="show at most N conversations")
    p.add_argument("--page-size", type=positive_int, metavar="N", help="items per request")

    p = command(
        "messages",
        "show stored messages, newest first",
        "Show the stored messages of one conversation (ADDRESS_ID is the other party's address)"
        " or, without ADDRESS_ID, of every conversation. Newest first.",
    )
    p.add_argument(
        "address_id", nargs="?", type=identifier, metavar="ADDRESS_ID", help="the other party's address"
    )
    p.add_argument("--limit", type=positive_int, metavar="N", help="show at most N messages")
    p.add_argument("--since", type=parse_time, metavar="T", help="only messages at or after T")
    p.add_argument("--until", type=parse_time, metavar="T", help="only messages at or before T")
    p.add_argument("--page-size", type=positive_int, metavar="N", help="items per request")

    p = command("send", "send a text message to an address")
    p.add_argument("address_id", type=identifier, metavar="ADDRESS_ID", help="the address to send to")
    p.add_argument("text", type=non_empty, metavar="TEXT", help="the message text")
    p.add_argument("--metadata", type=_json_object, metavar="JSON", help="a JSON object")
    p.add_argument("--details", type=_json_object, metavar="JSON", help="a JSON object")

    p = command("join", "join the conversation with an address and show its id and members")
    p.add_argument("address_id", type=identifier, metavar="ADDRESS_ID", help="the other party's address")


def cmd_whoami(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        info = client.conversation.get_subscriber_info()
    if out.as_json:
        out.json(subscriber_json(info))
    else:
        out.table(
            ["FIELD", "VALUE"],
            [
                ["subscriber id", info.id or "-"],
                ["name", info.display_name or "-"],
                ["address ids", ", ".join(info.address_ids) or "-"],
            ],
        )
    return EXIT_OK


def cmd_conversations(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client:
        page = client.conversation.get_conversations(page_size=args.page_size)
        items = _collect(page, args.limit, out.progress("conversations"))
        if out.as_json:
            for conversation in items:
                out.json(conversation_json(conversation))
            return EXIT_OK
        rows = [
            [
                _one_line(c.name) or "-",
                c.id,
                local_time(c.last_message_datetime),
                local_time(c.created_datetime),
            ]
            for c in items
        ]
    if not rows:
        out.line("no conversations")
        return EXIT_OK
    out.table(["NAME", "ID", "LAST MESSAGE", "CREATED"], rows)
    return EXIT_OK


def cmd_messages(args: argparse.Namespace, out: _Output) -> int:
    filters: Dict[str, Any] = {
        "limit": args.limit,
        "since": args.since,
        "until": args.until,
        "page_size": args.page_size,
    }
    if args.since is not None and args.until is not None and args.since > args.until:
        raise UsageError("--since is later than --until")
    with client_from_args(args) as client:
        api = client.conversation
        if args.address_id:
            with address_errors(client, args.address_id):
                page = api.get_conversation_messages(args.address_id, **filters)
        else:
            page = api.get_messages(**filters)
        items = _collect(page, args.limit, out.progress("messages"))
        if out.as_json:
            for message in items:
                out.json(message_json(message))
            return EXIT_OK
        with_conversation = not args.address_id
        rows = [_message_row(m, with_conversation=with_conversation) for m in items]
    if not rows:
        out.line("no messages")
        return EXIT_OK
    headers = ["TIME"] + (["CONVERSATION"] if with_conversation else []) + ["FROM", "TEXT"]
    out.table(headers, rows)
    return EXIT_OK


def cmd_send(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client, address_errors(client, args.address_id):
        sent = client.conversation.send_message(
            args.address_id, args.text, metadata=args.metadata, details=args.details
        )
        # the sender's name, as messages and tail show it (cached; None when unknown)
        name = client.names.name_of(sent.user_id) if out.as_json and client.names is not None else None
    if out.as_json:
        out.json(sent_json(sent, user_name=name))
    else:
        where = f" in conversation {sent.conversation_id}" if sent.conversation_id else ""
        out.line(f"sent message {sent.id or '(no id returned)'} to {args.address_id}{where}")
    return EXIT_OK


def cmd_join(args: argparse.Namespace, out: _Output) -> int:
    with client_from_args(args) as client, address_errors(client, args.address_id):
        result = client.conversation.join(args.address_id)
    if out.as_json:
        out.json(join_json(result))
    else:
        out.table(
            ["FIELD", "VALUE"],
            [["conversation (group) id", result.group_id], ["members", ", ".join(result.address_ids) or "-"]],
        )
    return EXIT_OK


def _is_join(exc: SignalWireError) -> bool:
    url = str(getattr(exc, "url", None) or "").split("?", 1)[0].rstrip("/")
    return getattr(exc, "method", None) == "POST" and url.endswith("/conversations/join")


def _own_addresses(client: "Client") -> Tuple[str, ...]:
    try:
        return tuple(client.conversation.get_subscriber_info().address_ids)
    except SignalWireError:
        return ()


@contextlib.contextmanager
def address_errors(client: "Client", address_id: str) -> Iterator[None]:
    """A refused join (the first step of ``messages ADDRESS_ID``, ``send`` and ``join``) said
    in the command line's terms: ``no such address: ...`` instead of the API's request and
    field names."""
    try:
        yield
    except (NotFoundError, UnprocessableEntityError) as exc:
        if not _is_join(exc):
            raise
        if address_id.strip() in _own_addresses(client):
            raise CLIError(
                f"{address_id} is your own address: give the other party's "
                f"(see '{PROG} conversations')",
                EXIT_FAILURE,
            ) from None
        raise CLIError(f"no such address: {address_id}", EXIT_FAILURE) from None


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {
    "whoami": cmd_whoami,
    "conversations": cmd_conversations,
    "messages": cmd_messages,
    "send": cmd_send,
    "join": cmd_join,
}
