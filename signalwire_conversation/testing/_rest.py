"""REST handlers (moto's ``responses.py``): request in, :class:`Response` out, state in between.

Lists are newest first in the envelope ``{"data": [...], "links": {...}}`` whose links are
absolute URLs (``self`` and ``first`` always, ``next`` when there is more, ``prev`` when this
is not the first page), docs/protocol.md §1.5. Cursors (``page_token``) are keyset cursors, so a
message posted while a client pages through a list never shifts or repeats items.
"""

from __future__ import annotations

import base64
import bisect
import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlencode

from .._timestamps import MILLISECONDS_THRESHOLD
from ._errors import HTTPError, validation_error
from ._http import Request, Response
from ._state import Store, Subscriber

__all__ = ["RestContext", "Handler"]

Handler = Callable[["RestContext", Request, Subscriber, Dict[str, str]], Response]


class RestContext:
    """What a handler needs: the store and the absolute base URL for links."""

    def __init__(self, store: Store, base_url: str) -> None:
        self.store = store
        #: scheme://host:port the client used (absolute links point back there).
        self.base_url = base_url


# -- pagination ---------------------------------------------------------------------------

Cursor = Tuple[str, Optional[Any]]  # ("older" | "newer", key or None for "no bound")


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor[0], cursor[1]], separators=(",", ":")).encode("utf-8")
    return "PA" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> Cursor:
    try:
        if not token.startswith("PA"):
            raise ValueError(token)
        body = token[2:]
        direction, key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if direction not in ("older", "newer"):
            raise ValueError(direction)
        if isinstance(key, list):
            key = tuple(key)
        return direction, key
    except (ValueError, TypeError, UnicodeDecodeError):
        raise validation_error("invalid_parameter", "page_token is not valid", "page_token") from None


def keyset_window(
    keys: Sequence[Any], lo: int, hi: int, size: int, cursor: Optional[Cursor]
) -> Tuple[int, int, Optional[Cursor], Optional[Cursor]]:
    """The slice ``[start, end)`` of ascending ``keys[lo:hi]`` shown newest first, and the
    cursors of the next (older) and previous (newer) pages."""
    if cursor is None:
        end = hi
        start = max(lo, end - size)
    elif cursor[0] == "older":
        end = hi if cursor[1] is None else bisect.bisect_left(keys, cursor[1], lo, hi)
        start = max(lo, end - size)
    else:
        start = lo if cursor[1] is None else bisect.bisect_right(keys, cursor[1], lo, hi)
        end = min(hi, start + size)
    older: Optional[Cursor] = None
    newer: Optional[Cursor] = None
    if start > lo:
        older = ("older", keys[start]) if start < hi else ("older", None)
    if end < hi:
        newer = ("newer", keys[end - 1]) if end > lo else ("newer", None)
    return start, end, older, newer


def _page_size(ctx: RestContext, request: Request) -> int:
    raw = request.first("page_size")
    if raw is None or raw == "":
        return ctx.store.default_page_size
    try:
        size = int(raw)
    except ValueError:
        raise validation_error("invalid_parameter", "page_size must be an integer", "page_size") from None
    if size < 1 or size > ctx.store.max_page_size:
        raise validation_error(
            "invalid_parameter", f"page_size must be between 1 and {ctx.store.max_page_size}", "page_size"
        )
    return size


def _time_filter(request: Request, name: str) -> Optional[float]:
    raw = request.first(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise validation_error("invalid_parameter", f"{name} must be a number (seconds since the epoch)", name) from None
    if value >= MILLISECONDS_THRESHOLD:
        value /= 1000.0
    return value


def _links(ctx: RestContext, request: Request, size: int, older: Optional[Cursor], newer: Optional[Cursor]) -> Dict[str, str]:
    base = ctx.base_url + request.path
    keep = [(k, v) for k, vs in request.query.items() if k not in ("page_token", "page_size") for v in vs]
    keep.append(("page_size", str(size)))

    def url(cursor: Optional[Cursor]) -> str:
        query = list(keep)
        if cursor is not None:
            query.append(("page_token", encode_cursor(cursor)))
        return f"{base}?{urlencode(query)}"

    links = {
        "self": base + (f"?{request.query_string}" if request.query_string else ""),
        "first": url(None),
    }
    if older is not None:
        links["next"] = url(older)
    if newer is not None:
        links["prev"] = url(newer)
    return links


def _cursor(request: Request) -> Optional[Cursor]:
    token = request.first("page_token")
    return decode_cursor(token) if token else None


def _message_page(ctx: RestContext, request: Request, caller: Subscriber, group: Any) -> Response:
    store = ctx.store
    size = _page_size(ctx, request)
    since = _time_filter(request, "since")
    until = _time_filter(request, "until")
    cursor = _cursor(request)
    with store.lock:
        timeline = store.message_page_source(subscriber=caller, group=group)
        if not store.honour_time_filters:
            since = until = None
        lo, hi = timeline.window(since, until)
        start, end, older, newer = keyset_window(timeline.keys, lo, hi, size, cursor)
        data = [m.data for m in reversed(timeline.items[start:end])]
    return Response(200, {"data": data, "links": _links(ctx, request, size, older, newer)})


# -- handlers -------------------------------------------------------------------------------


def subscriber_info(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    return Response(200, ctx.store.subscriber_info(caller))


def get_address(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    store = ctx.store
    with store.lock:
        sid = store.by_address.get(params["address_id"])
        if sid is None:
            raise HTTPError(404)
        return Response(200, store.address_object(store.subscribers[sid].public))


def list_addresses(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    store = ctx.store
    size = _page_size(ctx, request)
    name = request.first("name")
    display = request.first("display_name")
    kind = request.first("type")
    cursor = _cursor(request)
    with store.lock:
        subs = sorted(store.subscriber_list(), key=lambda s: (s.name, s.subscriber_id))
        items = [
            store.address_object(s)
            for s in subs
            if (name is None or s.name == name)
            and (display is None or display.lower() in s.display_name.lower())
            and (kind is None or kind == "subscriber")
        ]
    if request.first("sort_order") != "desc":
        items.reverse()  # the paginator shows its input newest (last) first
    keys = list(range(len(items)))
    start, end, older, newer = keyset_window(keys, 0, len(items), size, cursor)
    data = list(reversed(items[start:end]))
    return Response(200, {"data": data, "links": _links(ctx, request, size, older, newer)})


def list_conversations(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    store = ctx.store
    size = _page_size(ctx, request)
    cursor = _cursor(request)
    with store.lock:
        groups = store.conversations_of(caller)
        keys = [g.sort_key() for g in groups]
        start, end, older, newer = keyset_window(keys, 0, len(groups), size, cursor)
        data = [store.conversation_object(g, caller) for g in reversed(groups[start:end])]
    return Response(200, {"data": data, "links": _links(ctx, request, size, older, newer)})


def _required_str(body: Dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise validation_error("missing_required_parameter", "Required parameter is missing", name)
    if not isinstance(value, str) or not value:
        raise validation_error("invalid_parameter", f"{name} must be a non-empty string", name)
    return value


def _own_address(caller: Subscriber, body: Dict[str, Any], *names: str) -> None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise validation_error("invalid_parameter", f"{name} must be a string", name)
        if value != caller.address_id:
            raise HTTPError(403)


def join(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    body = request.json_object()
    _own_address(caller, body, "from_fabric_address_id", "from_address_id")
    ids = body.get("fabric_address_ids")
    if ids is None:
        raise validation_error("missing_required_parameter", "Required parameter is missing", "fabric_address_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(a, str) and a for a in ids):
        raise validation_error(
            "invalid_parameter", "fabric_address_ids must be a non-empty list of address ids", "fabric_address_ids"
        )
    try:
        group = ctx.store.join(caller, ids)
    except LookupError as exc:
        raise validation_error("invalid_parameter", f"unknown address: {exc.args[0]}", "fabric_address_ids") from None
    except ValueError as exc:
        raise validation_error("invalid_parameter", str(exc), "fabric_address_ids") from None
    return Response(
        200,
        {
            "group_id": group.group_id,
            "fabric_address_ids": list(group.members),
            "from_fabric_address_id": caller.address_id,
        },
    )


def _optional_object(body: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation_error("invalid_parameter", f"{name} must be an object", name)
    return value


def send_message(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    body = request.json_object()
    _own_address(caller, body, "from_fabric_address_id", "from_address_id")
    group_id = _required_str(body, "group_id")
    text = body.get("text")
    if text is None:
        raise validation_error("missing_required_parameter", "Required parameter is missing", "text")
    if not isinstance(text, str) or not text:
        raise validation_error("invalid_parameter", "text must be a non-empty string", "text")
    metadata = _optional_object(body, "metadata")
    details = _optional_object(body, "details")
    group = ctx.store.group_for(caller, group_id)
    if group is None:
        raise HTTPError(404)
    message = ctx.store.post(caller, group, text, metadata=metadata, details=details)
    return Response(201, message)


def conversation_messages(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    group = ctx.store.group_for(caller, params["group_id"])
    if group is None:
        raise HTTPError(404)
    return _message_page(ctx, request, caller, group)


def conversation_message(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    group = ctx.store.group_for(caller, params["group_id"])
    if group is None:
        raise HTTPError(404)
    message = ctx.store.get_message(group, params["message_id"])
    if message is None:
        raise HTTPError(404)
    return Response(200, message)


def all_messages(ctx: RestContext, request: Request, caller: Subscriber, params: Dict[str, str]) -> Response:
    return _message_page(ctx, request, caller, None)


def handlers() -> List[Tuple[str, str, Handler]]:
    """``(method, path pattern, handler)``; path patterns use ``{name}`` segments."""
    return [
        ("GET", "/api/fabric/subscriber/info", subscriber_info),
        ("GET", "/api/fabric/addresses", list_addresses),
        ("GET", "/api/fabric/addresses/{address_id}", get_address),
        ("GET", "/api/fabric/conversations", list_conversations),
        ("POST", "/api/fabric/conversations/join", join),
        ("GET", "/api/fabric/conversations/{group_id}/messages", conversation_messages),
        ("GET", "/api/fabric/conversations/{group_id}/messages/{message_id}", conversation_message),
        ("GET", "/api/fabric/messages", all_messages),
        ("POST", "/api/fabric/messages", send_message),
    ]
