"""``ConversationAPI``: the five REST methods of the seed API, plus ``subscribe``.

The live backend is group based (docs/protocol.md §1.3-1.5): a conversation with an address is
reached through the ``group_id`` that ``POST /api/fabric/conversations/join`` returns. This
module looks up the subscriber's own address once (``GET /api/fabric/subscriber/info``),
joins lazily before the first read of or send to a conversation, and caches
``address_id -> group_id``. Both caches are thread-safe, and two threads asking for the same
uncached address at once cause one join, not two.

Every argument is validated before any request: a bad one raises
:class:`~signalwire_conversation.ValidationError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

import attrs

from ._timestamps import MILLISECONDS_THRESHOLD
from .errors import ConfigurationError, ResponseValidationError, ValidationError
from .transport import NOT_GIVEN, NotGiven, TimeoutArg, Transport, resolve_timeout
from .models import (
    Conversation,
    ConversationMessage,
    ConversationMessageEvent,
    JoinResult,
    SentMessage,
    SubscriberInfo,
    decode_conversation,
    decode_join_result,
    decode_message,
    decode_messages,
    decode_sent_message,
    decode_subscriber_info,
)
from .pagination import Page, _Chain

if TYPE_CHECKING:
    from .names import NameResolver
    from .realtime import Listener, Subscription

__all__ = ["ConversationAPI", "TimeArg", "CallTimeout"]

#: A per-call ``timeout=``: omitted (:data:`NOT_GIVEN`) means the client's default, ``None``
#: means no timeout, else seconds or a ``(connect, read)`` pair.
CallTimeout = Union[TimeoutArg, NotGiven]

#: What ``since``/``until`` accept: seconds since the epoch (finite, ``>= 0``; a value of 1e11 or
#: more is milliseconds, as for wire timestamps), or a ``datetime`` (a naive one is local time, as
#: ``datetime.timestamp()`` reads it; pass an aware one to be explicit) from 1970-01-01 UTC to
#: the year 5138, the same range as numbers.
TimeArg = Union[int, float, _dt.datetime]

#: A numeric ``since``/``until`` at or above this (about the year 5138) is read as milliseconds,
#: as the models read a wire timestamp (so ``since=message.ts`` works whatever unit the server
#: used); in seconds, after that reading, it must be below it. A ``datetime`` must be too.
MAX_EPOCH_SECONDS = MILLISECONDS_THRESHOLD

#: When only ``limit`` is given, pages of at most this many items are requested.
MAX_IMPLICIT_PAGE_SIZE = 100

#: How deeply ``send_message``'s ``metadata``/``details`` may nest dicts and lists (the dict
#: itself is level 1). Deeper values are refused with a ValidationError before any request: the
#: limit is this number, not whatever the interpreter's recursion limit lets ``json.dumps`` reach.
MAX_JSON_DEPTH = 100

PATH_SUBSCRIBER_INFO = "/api/fabric/subscriber/info"
PATH_CONVERSATIONS = "/api/fabric/conversations"
PATH_JOIN = "/api/fabric/conversations/join"
PATH_MESSAGES = "/api/fabric/messages"

DEFAULT_SUBSCRIBE_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------------------
# Validation (before any request)
# ---------------------------------------------------------------------------------------------


def _check_address(value: Any, name: str = "address_id") -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a non-empty string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(name, "must be a non-empty string, got an empty one")
    return value.strip()


def _check_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("text", f"must be a non-empty string, got {type(value).__name__}")
    if value == "":
        raise ValidationError("text", "must be a non-empty string, got an empty one")
    return value


def _check_positive_int(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be a positive int, got {value!r}")
    if value <= 0:
        raise ValidationError(name, f"must be a positive int (>= 1), got {value!r}")
    return value


def _check_time(value: Any, name: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        try:
            seconds = value.timestamp()
        except (ValueError, OverflowError, OSError) as exc:
            # datetime.min/max (naive: read as local time) fall outside what the platform holds
            raise ValidationError(name, f"the datetime {value!r} has no epoch timestamp: {exc}") from None
        if not math.isfinite(seconds) or seconds < 0 or seconds >= MAX_EPOCH_SECONDS:
            raise ValidationError(
                name, f"must be between 1970-01-01 UTC and the year 5138, got {value.isoformat()}"
            )
        return seconds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            name,
            f"must be seconds since the epoch (int or float) or a datetime, got {type(value).__name__}",
        )
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValidationError(name, f"must be a finite number of seconds >= 0, got {value!r}")
    seconds = float(value)
    if seconds >= MAX_EPOCH_SECONDS:
        # milliseconds, as the models read a wire timestamp this large
        seconds = seconds / 1000.0
        if seconds >= MAX_EPOCH_SECONDS:
            raise ValidationError(
                name, f"must be seconds (below 1e11) or milliseconds (below 1e14) since the epoch, got {value!r}"
            )
    return seconds


def _check_window(since: Any, until: Any) -> "tuple[Optional[float], Optional[float]]":
    s = _check_time(since, "since")
    u = _check_time(until, "until")
    if s is not None and u is not None and s > u:
        raise ValidationError("since", f"must not be later than until ({s!r} > {u!r})")
    return s, u


def _check_json_dict(value: Any, name: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(name, f"must be a dict, got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise ValidationError(name, "must have string keys only")
    too_deep = f"must not nest dicts and lists more than {MAX_JSON_DEPTH} levels deep"
    try:
        json.dumps(value, allow_nan=False)
    except RecursionError:
        raise ValidationError(name, too_deep) from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"must be JSON-serialisable: {exc}") from None
    if _json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValidationError(name, too_deep)
    return dict(value)


def _json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests dicts and lists (a flat dict is 1), counted up to ``limit + 1``.

    Iterative, so the answer never depends on the interpreter's recursion limit.
    """
    deepest = 0
    stack: List[Tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
        for child in item.values() if isinstance(item, Mapping) else item:
            if isinstance(child, (Mapping, list, tuple)):
                stack.append((child, depth + 1))
    return deepest


def _check_timeout(value: Any) -> float:
    """``subscribe``'s wait: positive seconds; ``float("inf")`` waits without a bound."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        # (NaN fails ``value > 0`` too)
        raise ValidationError(
            "timeout", f"must be a positive number of seconds (or float('inf')), got {value!r}"
        )
    return float(value)


def _check_call_timeout(value: Any) -> Any:
    """A per-call REST timeout: validated now (before any request), passed on as given."""
    if not isinstance(value, NotGiven):
        resolve_timeout(value)
    return value


def _wire_time(seconds: float) -> str:
    """Epoch seconds as a query value: ``1700000000`` or ``1700000000.5``."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


def _message_ts(message: ConversationMessage) -> Optional[float]:
    return message.ts


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


class ConversationAPI:
    """The Conversation API of one :class:`~signalwire_conversation.Client` (``client.conversation``).

    Safe to use from many threads at once.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        listener: Optional[Callable[[], "Listener"]] = None,
        names: Optional["NameResolver"] = None,
    ) -> None:
        self._transport = transport
        self._listener = listener
        self._names = names
        self._lock = threading.Lock()
        self._info: Optional[SubscriberInfo] = None
        self._info_lock = threading.Lock()
        self._groups: Dict[str, str] = {}
        self._join_locks: Dict[str, threading.Lock] = {}

    def _after_fork(self) -> None:
        """In a forked child: fresh locks (one may have been held at fork time)."""
        self._lock = threading.Lock()
        self._info_lock = threading.Lock()
        self._join_locks = {}

    # -- own address -------------------------------------------------------------------------

    def get_subscriber_info(self, *, timeout: CallTimeout = NOT_GIVEN) -> SubscriberInfo:
        """The subscriber the token belongs to (fetched once, then cached)."""
        info = self._info
        if info is not None:
            return info
        timeout = _check_call_timeout(timeout)
        with self._info_lock:
            if self._info is None:
                body = self._transport.get(PATH_SUBSCRIBER_INFO, timeout=timeout)
                self._info = decode_subscriber_info(body)
            return self._info

    def _my_address(self, timeout: CallTimeout = NOT_GIVEN) -> str:
        address = self.get_subscriber_info(timeout=timeout).address_id
        if not address:
            raise ResponseValidationError(
                f"GET {PATH_SUBSCRIBER_INFO} lists no fabric_addresses for this subscriber, so it "
                f"has no address to send or join from"
            )
        return address

    # -- join ----------------------------------------------------------------------------------

    def join(self, address_id: str, *, timeout: CallTimeout = NOT_GIVEN) -> JoinResult:
        """Join (or re-join: the server is idempotent) the conversation with ``address_id``.

        Sends ``POST /api/fabric/conversations/join`` and caches the returned ``group_id``.
        """
        address_id = _check_address(address_id)
        timeout = _check_call_timeout(timeout)
        with self._join_lock(address_id):
            return self._join(address_id, timeout)

    def _join(self, address_id: str, timeout: CallTimeout) -> JoinResult:
        me = self._my_address(timeout)
        body = {"from_fabric_address_id": me, "fabric_address_ids": [address_id, me]}
        result = decode_join_result(self._transport.post(PATH_JOIN, json_body=body, timeout=timeout))
        with self._lock:
            self._groups[address_id] = result.group_id
        return result

    def _join_lock(self, address_id: str) -> threading.Lock:
        with self._lock:
            lock = self._join_locks.get(address_id)
            if lock is None:
                lock = self._join_locks[address_id] = threading.Lock()
            return lock

    def _group_id(self, address_id: str, timeout: CallTimeout = NOT_GIVEN) -> str:
        """The cached group id of ``address_id``, joining first when unknown (single-flight)."""
        with self._lock:
            group = self._groups.get(address_id)
        if group is not None:
            return group
        with self._join_lock(address_id):
            with self._lock:
                group = self._groups.get(address_id)
            if group is not None:
                return group
            return self._join(address_id, timeout).group_id

    # -- reads ---------------------------------------------------------------------------------

    def get_conversations(
        self,
        *,
        limit: Optional[int] = None,
        page_size: Optional[int] = None,
        timeout: CallTimeout = NOT_GIVEN,
    ) -> Page[Conversation]:
        """The conversations of this subscriber (``GET /api/fabric/conversations``).

        ``limit`` caps how many the whole iteration yields, as for the message listings.
        """
        limit_ = _check_positive_int(limit, "limit")
        size = _check_positive_int(page_size, "page_size")
        timeout = _check_call_timeout(timeout)
        if size is None and limit_ is not None:
            size = min(limit_, MAX_IMPLICIT_PAGE_SIZE)
        params: Dict[str, Any] = {}
        if size is not None:
            params["page_size"] = size
        chain: _Chain[Conversation] = _Chain(
            fetch=self._fetcher(timeout),
            decode=decode_conversation,
            url_of=self._transport.url_for,
            params=params,
            limit=limit_,
            item_name="Conversation",
        )
        return Page._fetch_first(chain, PATH_CONVERSATIONS)

    def get_conversation_messages(
        self,
        address_id: str,
        *,
        limit: Optional[int] = None,
        since: Optional[TimeArg] = None,
        until: Optional[TimeArg] = None,
        page_size: Optional[int] = None,
        timeout: CallTimeout = NOT_GIVEN,
    ) -> Page[ConversationMessage]:
        """The messages of the conversation with ``address_id``, newest first.

        Joins the conversation first when its ``group_id`` is not known yet.
        """
        address_id = _check_address(address_id)
        chain = self._message_chain(limit, since, until, page_size, timeout)
        group = self._group_id(address_id, timeout)
        return Page._fetch_first(chain, f"{PATH_CONVERSATIONS}/{quote(group, safe='')}/messages")

    def get_messages(
        self,
        *,
        limit: Optional[int] = None,
        since: Optional[TimeArg] = None,
        until: Optional[TimeArg] = None,
        page_size: Optional[int] = None,
        timeout: CallTimeout = NOT_GIVEN,
    ) -> Page[ConversationMessage]:
        """Every message of every conversation of this subscriber, newest first."""
        chain = self._message_chain(limit, since, until, page_size, timeout)
        return Page._fetch_first(chain, PATH_MESSAGES)

    def _latest_positions(self, limit: int) -> "list[ConversationMessage]":
        """The newest ``limit`` stored messages without their senders' names (a subscription's
        start position needs only their times and ids: no directory lookups)."""
        chain = self._message_chain(limit, None, None, None, NOT_GIVEN, fill_names=False)
        return list(Page._fetch_first(chain, PATH_MESSAGES))

    def _message_chain(
        self, limit: Any, since: Any, until: Any, page_size: Any, timeout: Any, *, fill_names: bool = True
    ) -> "_Chain[ConversationMessage]":
        limit_ = _check_positive_int(limit, "limit")
        size = _check_positive_int(page_size, "page_size")
        since_, until_ = _check_window(since, until)
        timeout_ = _check_call_timeout(timeout)
        if size is None and limit_ is not None:
            size = min(limit_, MAX_IMPLICIT_PAGE_SIZE)
        params: Dict[str, Any] = {}
        if size is not None:
            params["page_size"] = size
        if since_ is not None:
            params["since"] = _wire_time(since_)
        if until_ is not None:
            params["until"] = _wire_time(until_)
        names = self._names if fill_names else None
        decode_all: Callable[[Any], "list[ConversationMessage]"] = decode_messages
        if names is not None:
            # each page's senders are looked up once (cached across pages and listings)
            def decode_all(items: Any) -> "list[ConversationMessage]":
                return names.fill_page(decode_messages(items))

        return _Chain(
            fetch=self._fetcher(timeout_),
            decode=decode_message,
            decode_all=decode_all,
            url_of=self._transport.url_for,
            params=params,
            limit=limit_,
            since=since_,
            until=until_,
            timestamp=_message_ts,
            item_name="ConversationMessage",
        )

    def _fetcher(self, timeout: CallTimeout) -> Callable[[str, Mapping[str, Any]], Any]:
        """The page fetcher of one listing: every page uses the call's timeout."""
        transport = self._transport

        def fetch(target: str, params: Mapping[str, Any]) -> Any:
            return transport.get(target, params=params or None, timeout=timeout)

        return fetch

    # -- send ----------------------------------------------------------------------------------

    def send_message(
        self,
        address_id: str,
        text: str,
        *,
        metadata: Optional[Mapping[str, Any]] = None,
        details: Optional[Mapping[str, Any]] = None,
        timeout: CallTimeout = NOT_GIVEN,
    ) -> SentMessage:
        """Send ``text`` to the conversation with ``address_id`` (joined first when needed).

        Sends ``POST /api/fabric/messages`` with ``group_id``, ``from_fabric_address_id`` and
        ``text`` (plus ``metadata``/``details`` when given). The result carries what the server
        answered; ``conversation_id``, ``user_id`` and ``text`` are filled from the request when
        the answer leaves them out. A send is retried only when it provably did not reach the
        server (see :mod:`signalwire_conversation.transport`).
        """
        address_id = _check_address(address_id)
        text = _check_text(text)
        metadata_ = _check_json_dict(metadata, "metadata")
        details_ = _check_json_dict(details, "details")
        timeout = _check_call_timeout(timeout)
        group = self._group_id(address_id, timeout)
        me = self._my_address(timeout)
        body: Dict[str, Any] = {"group_id": group, "from_fabric_address_id": me, "text": text}
        if metadata_ is not None:
            body["metadata"] = metadata_
        if details_ is not None:
            body["details"] = details_
        sent = decode_sent_message(self._transport.post(PATH_MESSAGES, json_body=body, timeout=timeout))
        return attrs.evolve(
            sent,
            conversation_id=sent.conversation_id or group,
            user_id=sent.user_id or me,
            text=sent.text if sent.text is not None else text,
        )

    # -- live ----------------------------------------------------------------------------------

    def subscribe(
        self,
        callback: Optional[Callable[[ConversationMessageEvent], Any]] = None,
        *,
        address_id: Optional[str] = None,
        timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,
        after: Optional[str] = None,
    ) -> "Subscription":
        """Receive new messages live; returns a ``Subscription``.

        With ``callback``, it is called once per new message, in order, on the SDK's dispatcher
        thread; an event without ``user_name`` gets it from the address directory first (unless
        the client has ``resolve_names=False``; a lookup, cached, may delay it by up to a few
        seconds). Without one, iterate the subscription or call ``get(timeout=...)``.
        ``address_id`` keeps only the messages of that conversation (joined first when needed).
        Blocks until the websocket is connected and authenticated, at most ``timeout`` seconds
        (``float("inf")``: no bound, wait until connected, refused or closed); a bad or revoked
        token raises :class:`~signalwire_conversation.AuthenticationError`.

        Delivers the messages stored after this call, never one stored before. With
        ``after=cursor`` (an event's ``cursor``, stored by a worker that restarts) it first
        delivers every message stored after that one, in order, exactly once, then live ones.
        ``Subscription.cursor`` is the cursor of the last event it handed over.
        """
        if callback is not None and not callable(callback):
            raise ValidationError("callback", f"must be callable or None, got {type(callback).__name__}")
        timeout_ = _check_timeout(timeout)
        group: Optional[str] = None
        if address_id is not None:
            group = self._group_id(_check_address(address_id))
        if self._listener is None:
            raise ConfigurationError("this ConversationAPI has no realtime listener (build it through Client)")
        if callback is not None and self._names is not None:
            callback = _with_names(callback, self._names)
        listener = self._listener()
        return listener.subscribe(callback, group_id=group, timeout=timeout_, after=after)

    def __repr__(self) -> str:
        return f"ConversationAPI(base_url={self._transport.base_url!r})"


def _with_names(
    callback: Callable[[ConversationMessageEvent], Any], names: "NameResolver"
) -> Callable[[ConversationMessageEvent], Any]:
    """``callback`` receiving events whose missing ``user_name`` was looked up first."""
    fill = names.fill

    def named(event: ConversationMessageEvent) -> Any:
        return callback(fill(event))

    named.__wrapped__ = callback  # type: ignore[attr-defined]
    return named
