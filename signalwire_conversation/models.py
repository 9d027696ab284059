"""Typed results: attrs models and the one converter that decodes them from the wire.

Wire names are mapped here and nowhere else (docs/protocol.md §3.5): ``group_id`` becomes
``conversation_id``; ``from_fabric_address_id`` / ``from_address_id`` become ``user_id``;
``fabric_address_ids`` becomes ``address_ids``. Both backend generations decode. Fields the
models do not know are kept in ``extra`` (and come back out of ``to_dict()``), so a newer backend
never breaks an older SDK. Timestamps stay as the wire sent them; the ``*_datetime`` helpers
read seconds or milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import reprlib
from operator import attrgetter
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from .errors import ResponseValidationError

__all__ = [
    "Conversation",
    "ConversationMessage",
    "ConversationMessageEvent",
    "JoinResult",
    "SentMessage",
    "SubscriberInfo",
    "timestamp_to_datetime",
    "decode_conversation",
    "decode_message",
    "decode_messages",
    "decode_event",
    "decode_join_result",
    "decode_sent_message",
    "decode_subscriber_info",
    "event_from_message",
]

JSONDict = Dict[str, Any]

# A wire timestamp below this is seconds since the epoch; at or above it, milliseconds.
_MILLISECONDS_THRESHOLD = 1e11


def timestamp_to_datetime(value: Optional[float]) -> Optional[_dt.datetime]:
    """An aware UTC ``datetime`` from a wire timestamp in seconds or milliseconds.

    ``None`` for ``None`` and for a value no ``datetime`` can hold (NaN, infinite, out of range).

    >>> timestamp_to_datetime(1708192187.6779745).isoformat()
    '2024-02-17T17:49:47.677974+00:00'
    >>> timestamp_to_datetime(1708192187729).isoformat()
    '2024-02-17T17:49:47.729000+00:00'
    >>> timestamp_to_datetime(None) is None
    True
    """
    if value is None:
        return None
    try:
        seconds = value / 1000.0 if value >= _MILLISECONDS_THRESHOLD else float(value)
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        # NaN, infinite, or outside datetime's range (years 1..9999): no datetime for it
        return None


class _Model:
    """Behaviour shared by every model: ``to_dict()``/``from_dict()`` and an HTML table for notebooks."""

    __slots__ = ()

    # Per class (filled in by _prepare below): the names to_dict() emits (all fields but
    # ``extra``) and one attrgetter that reads them all in a single C call.
    _dict_names: ClassVar[Tuple[str, ...]] = ()
    _dict_getter: ClassVar[Callable[[Any], Tuple[Any, ...]]]
    _has_extra: ClassVar[bool] = False

    def to_dict(self) -> JSONDict:
        """A plain ``dict`` with the SDK's field names (unknown wire fields included).

        JSON-ready and independent of the model: nested mappings are copied (tuples become
        lists). :meth:`from_dict` reads it back (also after a trip through ``json``).
        """
        cls = type(self)
        names = cls._dict_names
        values = cls._dict_getter(self)
        out: JSONDict = dict(zip(names, values))
        if not _SCALARS.issuperset(map(type, values)):
            for name, value in zip(names, values):
                if type(value) not in _SCALARS:
                    out[name] = _plain(value)
        if cls._has_extra:
            extra = self.extra  # type: ignore[attr-defined]
            if extra:
                for key, value in extra.items():
                    if key not in out:
                        out[key] = value if type(value) in _SCALARS else _plain(value)
        return out

    @classmethod
    def from_dict(cls: Type[_M], data: Mapping[str, Any]) -> _M:
        """The model from a ``dict``: the output of :meth:`to_dict` (also after ``json``) or a
        wire payload, decoded by the same converter as every API answer (tolerant coercions,
        unknown keys kept).

        Raises:
            ResponseValidationError: ``data`` is not a mapping or lacks a required field.
        """
        return cast(_M, _FROM_DICT[cls](data))

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(str(k))}</th><td>{escape(_safe_repr(v))}</td></tr>"
            for k, v in self.to_dict().items()
        )
        return f"<table><caption>{escape(type(self).__name__)}</caption>{rows}</table>"


_M = TypeVar("_M", bound=_Model)
_SCALARS = frozenset({str, int, float, bool, type(None)})


_REPR = reprlib.Repr()
_REPR.maxlevel = 4
_REPR.maxdict = 12
_REPR.maxlist = 12
_REPR.maxstring = 120
_REPR.maxother = 120


def _safe_repr(value: Any) -> str:
    """A bounded repr for payload mappings: depth and size capped, never a RecursionError."""
    return _REPR.repr(value)


_CONTAINERS = (Mapping, list, tuple)


def _plain(value: Any) -> Any:
    """A deep copy made of ``dict``/``list`` (tuples become lists), without recursion.

    Iterative on purpose: a payload nested thousands of levels deep (which ``json.loads``
    accepts) must not make ``to_dict()`` raise ``RecursionError``. Fast path: a flat ``dict``,
    ``list`` or ``tuple`` of plain scalars (the common ``metadata``/``details``/``address_ids``)
    is copied in one C call, without the stack.
    """
    cls = type(value)
    if cls is dict:
        if not value or _SCALARS.issuperset(map(type, value.values())):
            return dict(value)
    elif cls is list or cls is tuple:
        if _SCALARS.issuperset(map(type, value)):
            return list(value)
    elif not isinstance(value, _CONTAINERS):
        return value
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, holder, 0)]
    while stack:
        source, parent, key = stack.pop()
        if isinstance(source, Mapping):
            copy: Any = {}
            for k, v in source.items():
                if isinstance(v, _CONTAINERS):
                    copy[k] = None
                    stack.append((v, copy, k))
                else:
                    copy[k] = v
        else:
            copy = list(source)
            for i, v in enumerate(copy):
                if isinstance(v, _CONTAINERS):
                    stack.append((v, copy, i))
        parent[key] = copy
    return holder[0]


@attrs.define(frozen=True, kw_only=True)
class Conversation(_Model):
    """A conversation the subscriber takes part in (an item of ``get_conversations()``).

    ``id`` is the conversation's id: the wire ``group_id`` on the current backend.
    """

    id: str
    name: Optional[str] = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict, repr=_safe_repr)
    created_at: Optional[float] = None
    last_message_at: Optional[float] = None
    group_id: Optional[str] = None
    address_id: Optional[str] = None
    from_fabric_address_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def created_datetime(self) -> Optional[_dt.datetime]:
        """``created_at`` as an aware UTC ``datetime`` (seconds or milliseconds on the wire)."""
        return timestamp_to_datetime(self.created_at)

    @property
    def last_message_datetime(self) -> Optional[_dt.datetime]:
        """``last_message_at`` as an aware UTC ``datetime``."""
        return timestamp_to_datetime(self.last_message_at)


@attrs.define(frozen=True, kw_only=True)
class ConversationMessage(_Model):
    """A stored message or call-log entry (``get_conversation_messages()``, ``get_messages()``).

    ``conversation_id`` is the wire ``group_id``; ``user_id`` is the sender's address id (wire
    ``from_fabric_address_id``). Chat messages have ``subtype == "chat"``; call history has
    ``subtype == "log"`` with ``kind`` (e.g. ``"call_started"``) and ``details``. ``id`` is
    ``None`` only when the server sent none.
    """

    id: Optional[str] = None
    conversation_id: Optional[str] = None
    user_id: Optional[str] = None
    ts: Optional[float] = None
    details: Mapping[str, Any] = attrs.field(factory=dict, repr=_safe_repr)
    type: Optional[str] = None
    subtype: Optional[str] = None
    kind: Optional[str] = None
    text: Optional[str] = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict, repr=_safe_repr)
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def datetime(self) -> Optional[_dt.datetime]:
        """``ts`` as an aware UTC ``datetime`` (seconds or milliseconds on the wire)."""
        return timestamp_to_datetime(self.ts)


@attrs.define(frozen=True, kw_only=True)
class ConversationMessageEvent(ConversationMessage):
    """A new message delivered live by a subscription (or recovered by gap fill).

    Adds to the message fields: ``hidden``, ``address_id``, ``conversation_name``,
    ``user_name`` and ``is_author`` (``True`` when this subscriber sent it). Messages recovered
    over REST after a reconnect carry only what the REST API returns (``recovered`` is
    ``True``; the names may be ``None``).
    """

    hidden: bool = False
    address_id: Optional[str] = None
    conversation_name: Optional[str] = None
    user_name: Optional[str] = None
    is_author: Optional[bool] = None
    recovered: bool = False


@attrs.define(frozen=True, kw_only=True)
class JoinResult(_Model):
    """What ``join()`` answered: the conversation (group) id and its member addresses."""

    group_id: str
    address_ids: tuple[str, ...] = ()
    from_address_id: Optional[str] = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def conversation_id(self) -> str:
        """The same as ``group_id``: the id messages of this conversation carry."""
        return self.group_id


@attrs.define(frozen=True, kw_only=True)
class SentMessage(_Model):
    """What ``send_message()`` answered. ``id`` is ``None`` when the server did not return one."""

    id: Optional[str] = None
    conversation_id: Optional[str] = None
    user_id: Optional[str] = None
    text: Optional[str] = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.define(frozen=True, kw_only=True)
class SubscriberInfo(_Model):
    """The subscriber the token belongs to (``GET /api/fabric/subscriber/info``)."""

    id: Optional[str] = None
    address_ids: tuple[str, ...] = ()
    display_name: Optional[str] = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def address_id(self) -> Optional[str]:
        """The subscriber's own (first) address id, used as the sender of messages."""
        return self.address_ids[0] if self.address_ids else None


# ---------------------------------------------------------------------------------------------
# The converter: one private cattrs instance; per model, one small dialect function that turns
# either wire generation into the model's names, then a generated structure hook.
# ---------------------------------------------------------------------------------------------

_converter = cattrs.Converter(detailed_validation=False, forbid_extra_keys=False)

M = TypeVar("M")


def _str_or_none(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _number_or_none(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if v is not None)
    return ()


# Hot path: the generated hooks call these two-argument forms directly (no wrapper lambda);
# the common well-typed value returns after one type check.


def _hook_str(value: Any, _: Any) -> Optional[str]:
    return value if value is None or type(value) is str else _str_or_none(value)


def _hook_number(value: Any, _: Any) -> Optional[float]:
    cls = type(value)
    return value if cls is float or cls is int or value is None else _number_or_none(value)


def _hook_mapping(value: Any, _: Any) -> Mapping[str, Any]:
    return value if type(value) is dict else _mapping(value)


def _hook_str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    return _str_tuple(value)


def _register(exact: Any, hook: Callable[[Any, Any], Any]) -> None:
    _converter.register_structure_hook_func(lambda t: t == exact, hook)


_register(Optional[str], _hook_str)
_register(Optional[float], _hook_number)
_register(Mapping[str, Any], _hook_mapping)
_register(tuple[str, ...], _hook_str_tuple)


def _pop_first(data: JSONDict, *names: str) -> Any:
    """Remove and return the first of ``names`` present with a non-null value."""
    for name in names:
        if data.get(name) is not None:
            return data.pop(name)
    return None


def _message_dialect(data: JSONDict) -> JSONDict:
    d = dict(data)
    conversation_id = _pop_first(d, "conversation_id", "group_id")
    user_id = _pop_first(d, "user_id", "from_fabric_address_id", "from_address_id")
    d["conversation_id"] = conversation_id
    d["user_id"] = user_id
    return d


def _event_dialect(data: JSONDict) -> JSONDict:
    d = _message_dialect(data)
    if "hidden" in d:
        d["hidden"] = _bool(d["hidden"])
    for flag in ("is_author", "recovered"):
        if flag in d and d[flag] is not None:
            d[flag] = _bool(d[flag])
    return d


def _conversation_dialect(data: JSONDict) -> JSONDict:
    d = dict(data)
    if d.get("id") is None and d.get("group_id") is not None:
        d["id"] = d["group_id"]
    if d.get("from_fabric_address_id") is None and d.get("from_address_id") is not None:
        d["from_fabric_address_id"] = d.pop("from_address_id")
    return d


def _unwrap_table(data: JSONDict) -> JSONDict:
    # An older backend wrapped results in {"table": {...}} (a Ruby OpenStruct leak).
    table = data.get("table")
    if isinstance(table, dict) and len(data) == 1:
        return dict(table)
    return dict(data)


def _join_dialect(data: JSONDict) -> JSONDict:
    d = _unwrap_table(data)
    group_id = _pop_first(d, "group_id", "conversation_id")
    return {
        "group_id": group_id,
        "address_ids": d.get("fabric_address_ids") or d.get("address_ids") or (),
        "from_address_id": d.get("from_fabric_address_id") or d.get("from_address_id"),
        "raw": data,
    }


def _sent_dialect(data: JSONDict) -> JSONDict:
    d = _message_dialect(_unwrap_table(data))
    return {
        "id": d.get("id"),
        "conversation_id": d.get("conversation_id"),
        "user_id": d.get("user_id"),
        "text": d.get("text"),
        "raw": data,
    }


def _subscriber_dialect(data: JSONDict) -> JSONDict:
    addresses = data.get("fabric_addresses")
    ids = [a.get("id") for a in addresses if isinstance(a, dict)] if isinstance(addresses, list) else []
    return {
        "id": data.get("id"),
        "address_ids": [i for i in ids if i],
        "display_name": data.get("display_name") or data.get("name"),
        "raw": data,
    }


def _decoder(
    cls: Type[M],
    dialect: Callable[[JSONDict], JSONDict],
    required: tuple[str, ...],
    *,
    keep_extra: bool,
) -> Callable[[Any], M]:
    names = frozenset(a.name for a in attrs.fields(cast(Any, cls)))
    hook = make_dict_structure_fn(cls, _converter, _cattrs_detailed_validation=False)
    label = cls.__name__

    def decode(data: Any) -> M:
        if not isinstance(data, dict):
            raise ResponseValidationError(
                f"expected a JSON object for a {label}, got {type(data).__name__}"
            )
        d = dialect(data)
        for name in required:
            value = d.get(name)
            if value is None or value == "":
                raise ResponseValidationError(f"{label} without {name!r}: {_preview(data)}")
        if keep_extra:
            # one pass: the dialect's copy becomes the known fields, unknown ones move out
            extra = {k: d[k] for k in d.keys() - names}
            for k in extra:
                del d[k]
            d["extra"] = extra
            known = d
        else:
            known = d
        try:
            return hook(known, cls)
        except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
            raise ResponseValidationError(f"could not decode a {label}: {exc}") from None

    return decode


def _preview(data: Mapping[str, Any], limit: int = 200) -> str:
    text = repr(dict(data))
    return text if len(text) <= limit else text[:limit] + "…"


_conversation_hook = _decoder(Conversation, _conversation_dialect, ("id",), keep_extra=True)
_message_hook = _decoder(ConversationMessage, _message_dialect, (), keep_extra=True)
_event_hook = _decoder(ConversationMessageEvent, _event_dialect, (), keep_extra=True)
_join_hook = _decoder(JoinResult, _join_dialect, ("group_id",), keep_extra=False)
_sent_hook = _decoder(SentMessage, _sent_dialect, (), keep_extra=False)
_subscriber_hook = _decoder(SubscriberInfo, _subscriber_dialect, (), keep_extra=False)


# -- per-class to_dict() tables ---------------------------------------------------------------


def _prepare(cls: Type[_Model]) -> None:
    names = tuple(a.name for a in attrs.fields(cast(Any, cls)) if a.name != "extra")
    cls._dict_names = names
    cls._dict_getter = attrgetter(*names)
    cls._has_extra = "extra" in attrs.fields_dict(cast(Any, cls))


for _cls in (Conversation, ConversationMessage, ConversationMessageEvent, JoinResult, SentMessage, SubscriberInfo):
    _prepare(_cls)


# -- the fast path of the two hot decoders (REST message lists, live events) -------------------
#
# For a payload whose values already have the model's types (what a sane server sends), the
# generated hook would return every value unchanged: this path does exactly that, inline, and
# calls the model's generated __init__ once. Anything else (a number as a string, a list where a
# mapping belongs, ...) goes through the converter above, so the coercions live in one place.

def _builder(cls: Type[M]) -> Callable[..., M]:
    """A positional constructor for ``cls`` that fills its slots directly.

    Exactly what the generated frozen ``__init__`` does for these classes (one
    ``object.__setattr__`` per field, nothing else), minus the keyword-argument parsing, which
    is most of its cost. The instance is as frozen as any other. Only valid while the class has
    no validator, converter, ``on_setattr`` hook or ``__attrs_post_init__``/``__attrs_pre_init__``:
    checked here, at import, so adding one fails loudly instead of being skipped.
    """
    fields = attrs.fields(cast(Any, cls))
    for a in fields:
        if a.validator is not None or a.converter is not None or a.on_setattr not in (None, attrs.setters.NO_OP):
            raise TypeError(f"{cls.__name__}.{a.name}: the fast builder cannot run validators or converters")
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        raise TypeError(f"{cls.__name__}: the fast builder cannot run __attrs_post_init__/__attrs_pre_init__")
    # generated (as attrs generates __init__): one positional parameter and one slot store
    # (the slot's member descriptor) per field
    namespace: Dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    args = ", ".join(f"v{i}" for i in range(len(fields)))
    lines = [f"def build({args}):", "    obj = _new(_cls)"]
    for i, a in enumerate(fields):
        namespace[f"_set{i}"] = getattr(cls, a.name).__set__
        lines.append(f"    _set{i}(obj, v{i})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # noqa: S102 - fixed source built from field names above
    return cast(Callable[..., M], namespace["build"])


_MESSAGE_NAMES = frozenset(a.name for a in attrs.fields(ConversationMessage))
_EVENT_NAMES = frozenset(a.name for a in attrs.fields(ConversationMessageEvent))
_ALIASES = frozenset({"group_id", "from_fabric_address_id", "from_address_id"})
_MESSAGE_NAMES_AND_ALIASES = _MESSAGE_NAMES | _ALIASES
_EVENT_NAMES_AND_ALIASES = _EVENT_NAMES | _ALIASES
_STR = (str, type(None))
_NUM = (float, int, type(None))


# field order of attrs.fields(): the builders take the values in that order
assert [a.name for a in attrs.fields(ConversationMessageEvent)] == [
    "id", "conversation_id", "user_id", "ts", "details", "type", "subtype", "kind", "text", "metadata",
    "extra", "hidden", "address_id", "conversation_name", "user_name", "is_author", "recovered",
]
_build_message = _builder(ConversationMessage)
_build_event = _builder(ConversationMessageEvent)


def _fast_message(data: JSONDict, event: bool, default_is_author: Optional[bool] = None) -> Any:
    """The model for a well-typed payload, or ``None`` when the converter must decide.

    ``default_is_author`` is the event's ``is_author`` when the payload has none (the
    envelope's flag), so an event is built once instead of built and evolved.
    """
    get = data.get
    conversation_id = get("conversation_id")
    alias_c: Optional[str] = None
    if conversation_id is None:
        conversation_id = get("group_id")
        if conversation_id is not None:
            alias_c = "group_id"
    user_id = get("user_id")
    alias_u: Optional[str] = None
    if user_id is None:
        for alias in ("from_fabric_address_id", "from_address_id"):
            user_id = get(alias)
            if user_id is not None:
                alias_u = alias
                break
    id_ = get("id")
    ts = get("ts")
    details = get("details")
    type_ = get("type")
    subtype = get("subtype")
    kind = get("kind")
    text = get("text")
    metadata = get("metadata")
    if (
        type(id_) not in _STR
        or type(conversation_id) not in _STR
        or type(user_id) not in _STR
        or type(type_) not in _STR
        or type(subtype) not in _STR
        or type(kind) not in _STR
        or type(text) not in _STR
        or type(ts) not in _NUM
        or (details is not None and type(details) is not dict)
        or (metadata is not None and type(metadata) is not dict)
    ):
        return None
    # keys the model does not know (an alias that was not used counts), in the payload's order
    if (_EVENT_NAMES_AND_ALIASES if event else _MESSAGE_NAMES_AND_ALIASES).issuperset(data):
        # (no allocation on the common path: only known names and aliases)
        extra: JSONDict = {}
        if alias_c is None and "group_id" in data:
            extra["group_id"] = data["group_id"]
        if "from_fabric_address_id" in data and alias_u != "from_fabric_address_id":
            extra["from_fabric_address_id"] = data["from_fabric_address_id"]
        if "from_address_id" in data and alias_u != "from_address_id":
            extra["from_address_id"] = data["from_address_id"]
    else:
        names = _EVENT_NAMES if event else _MESSAGE_NAMES
        extra = {k: v for k, v in data.items() if k not in names and k != alias_c and k != alias_u}
    if details is None:
        details = {}
    if metadata is None:
        metadata = {}
    if not event:
        return _build_message(
            id_, conversation_id, user_id, ts, details, type_, subtype, kind, text, metadata, extra
        )
    hidden = get("hidden", False)
    if type(hidden) is not bool:
        hidden = _bool(hidden)
    is_author = get("is_author")
    if is_author is None:
        is_author = default_is_author
    elif type(is_author) is not bool:
        is_author = _bool(is_author)
    recovered = get("recovered", False)
    if type(recovered) is not bool:
        recovered = False if recovered is None else _bool(recovered)
    address_id = get("address_id")
    conversation_name = get("conversation_name")
    user_name = get("user_name")
    if type(address_id) not in _STR or type(conversation_name) not in _STR or type(user_name) not in _STR:
        return None
    return _build_event(
        id_, conversation_id, user_id, ts, details, type_, subtype, kind, text, metadata, extra,
        hidden, address_id, conversation_name, user_name, is_author, recovered,
    )


def decode_conversation(data: Any) -> Conversation:
    """Decode one item of ``GET /api/fabric/conversations`` (either wire generation)."""
    return _conversation_hook(data)


def decode_message(data: Any) -> ConversationMessage:
    """Decode one stored message of a message list (either wire generation)."""
    if type(data) is dict:
        message = _fast_message(data, False)
        if message is not None:
            return cast(ConversationMessage, message)
    return _message_hook(data)


# -- a whole page of messages at once -----------------------------------------------------------
#
# A page of a message list holds items of one shape (the same keys in the same order). For each
# shape a tiny decoder is generated once that unpacks ``data.values()`` positionally instead of
# looking every field up by name; it accepts exactly the payloads for which _fast_message would
# return a model with an empty ``extra`` (each field from one fixed key, the conversation and
# sender ids present as strings, every value already of the model's type), and answers ``None``
# for anything else, which then takes the per-item path (decode_message). Keys are never part of
# the generated source (values are bound to ``v0``, ``v1``, ...), so a hostile server cannot
# inject code; the cache is bounded, so it cannot grow memory with endless key orders.

_SHAPE_FIELDS = ("id", "conversation_id", "user_id", "ts", "details", "type", "subtype", "kind", "text", "metadata")
_SHAPE_SOURCES: Dict[str, Tuple[str, ...]] = {
    "conversation_id": ("conversation_id", "group_id"),
    "user_id": ("user_id", "from_fabric_address_id", "from_address_id"),
}
_SHAPE_CACHE_MAX = 64
_shape_cache: Dict[Tuple[Any, ...], Optional[Callable[[JSONDict], Optional[ConversationMessage]]]] = {}


def _shape_decoder(shape: Tuple[Any, ...]) -> Optional[Callable[[JSONDict], Optional[ConversationMessage]]]:
    """The generated decoder of messages whose keys are ``shape`` (in order), or ``None``."""
    keys = set(shape)
    if not keys <= _MESSAGE_NAMES_AND_ALIASES or "extra" in keys:
        return None  # unknown keys go to ``extra``; a key "extra" is ignored: the general path
    source: Dict[str, Optional[str]] = {}
    for name in _SHAPE_FIELDS:
        present = [key for key in _SHAPE_SOURCES.get(name, (name,)) if key in keys]
        if len(present) > 1:
            return None  # which one is used depends on the values: the general path decides
        source[name] = present[0] if present else None
    if source["conversation_id"] is None or source["user_id"] is None:
        return None
    var = {key: f"v{i}" for i, key in enumerate(shape)}
    value = {name: (var[key] if key is not None else "None") for name, key in source.items()}
    checks = [f"type({value['conversation_id']}) is str", f"type({value['user_id']}) is str"]
    checks += [f"type({value[n]}) in _STR" for n in ("id", "type", "subtype", "kind", "text") if source[n]]
    if source["ts"]:
        checks.append(f"type({value['ts']}) in _NUM")
    for name in ("details", "metadata"):
        if source[name]:
            checks.append(f"({value[name]} is None or type({value[name]}) is dict)")
            value[name] = f"({{}} if {value[name]} is None else {value[name]})"
        else:
            value[name] = "{}"
    args = ", ".join(value[n] for n in _SHAPE_FIELDS) + ", {}"
    source_code = (
        "def decode(data):\n"
        f"    ({', '.join(var[key] for key in shape)},) = data.values()\n"
        f"    if {' and '.join(checks)}:\n"
        f"        return _build({args})\n"
        "    return None\n"
    )
    namespace: Dict[str, Any] = {"_build": _build_message, "_STR": _STR, "_NUM": _NUM}
    exec(source_code, namespace)  # noqa: S102 - fixed source: field names and v0..vN only
    return cast(Callable[[JSONDict], Optional[ConversationMessage]], namespace["decode"])


def decode_messages(items: Any) -> "list[ConversationMessage]":
    """``[decode_message(item) for item in items]``, faster for a page of same-shaped items."""
    out: list[ConversationMessage] = []
    append = out.append
    cache = _shape_cache
    last: Optional[Tuple[Any, ...]] = None
    decoder: Optional[Callable[[JSONDict], Optional[ConversationMessage]]] = None
    for data in items:
        if type(data) is dict:
            shape = tuple(data)
            if shape != last:
                last = shape
                if shape in cache:
                    decoder = cache[shape]
                else:
                    decoder = _shape_decoder(shape) if len(shape) <= len(_MESSAGE_NAMES_AND_ALIASES) else None
                    if len(cache) < _SHAPE_CACHE_MAX:
                        cache[shape] = decoder
            if decoder is not None:
                message = decoder(data)
                if message is not None:
                    append(message)
                    continue
        append(decode_message(data))
    return out


def decode_event(payload: Any, *, is_author: Optional[bool] = None) -> ConversationMessageEvent:
    """Decode the ``params.params`` payload of a ``conversation.message`` event.

    Also accepts the output of :meth:`ConversationMessageEvent.to_dict`, so an event that went
    through a queue as JSON decodes back to an equal event.
    """
    event: Optional[ConversationMessageEvent] = None
    if type(payload) is dict:
        event = _fast_message(payload, True, is_author)
    if event is None:
        event = _event_hook(payload)
    if is_author is not None and event.is_author is None:
        event = attrs.evolve(event, is_author=is_author)
    return event


def decode_join_result(data: Any) -> JoinResult:
    """Decode the body of ``POST /api/fabric/conversations/join``."""
    return _join_hook(data)


def decode_sent_message(data: Any) -> SentMessage:
    """Decode the body of ``POST /api/fabric/messages`` (an empty body gives an empty result)."""
    return _sent_hook(data if data is not None else {})


def decode_subscriber_info(data: Any) -> SubscriberInfo:
    """Decode the body of ``GET /api/fabric/subscriber/info``."""
    return _subscriber_hook(data)


def event_from_message(message: ConversationMessage) -> ConversationMessageEvent:
    """The event a subscription delivers for a message recovered over REST (gap fill)."""
    fields = {a.name: getattr(message, a.name) for a in attrs.fields(ConversationMessage)}
    extra = dict(fields.pop("extra"))
    hidden = _bool(extra.pop("hidden", False))
    address_id = _str_or_none(extra.pop("address_id", None))
    conversation_name = _str_or_none(extra.pop("conversation_name", None))
    user_name = _str_or_none(extra.pop("user_name", None))
    return ConversationMessageEvent(
        **fields,
        extra=extra,
        hidden=hidden,
        recovered=True,
        address_id=address_id,
        conversation_name=conversation_name,
        user_name=user_name,
    )


def _join_from_dict(data: Any) -> JoinResult:
    # to_dict() output carries the model's own names and the body in "raw"
    if isinstance(data, Mapping) and isinstance(data.get("raw"), Mapping) and "fabric_address_ids" not in data:
        return _fields_hook(JoinResult, data, ("group_id",))
    return decode_join_result(data)


def _sent_from_dict(data: Any) -> SentMessage:
    if isinstance(data, Mapping) and isinstance(data.get("raw"), Mapping):
        return _fields_hook(SentMessage, data, ())
    return decode_sent_message(data)


def _subscriber_from_dict(data: Any) -> SubscriberInfo:
    if isinstance(data, Mapping) and isinstance(data.get("raw"), Mapping) and "fabric_addresses" not in data:
        return _fields_hook(SubscriberInfo, data, ())
    return decode_subscriber_info(data)


_FIELD_HOOKS: Dict[type, Callable[[Any, Any], Any]] = {
    cls: make_dict_structure_fn(cls, _converter, _cattrs_detailed_validation=False)
    for cls in (JoinResult, SentMessage, SubscriberInfo)
}


def _fields_hook(cls: Type[M], data: Mapping[str, Any], required: Tuple[str, ...]) -> M:
    """A model from its own field names (what to_dict() wrote), through the same type hooks."""
    known = {a.name for a in attrs.fields(cast(Any, cls))}
    d = {k: v for k, v in data.items() if k in known}
    for name in required:
        if d.get(name) in (None, ""):
            raise ResponseValidationError(f"{cls.__name__} without {name!r}: {_preview(data)}")
    try:
        return cast(M, _FIELD_HOOKS[cls](d, cls))
    except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
        raise ResponseValidationError(f"could not decode a {cls.__name__}: {exc}") from None


def _mapping_only(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def from_dict(data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ResponseValidationError(f"from_dict() needs a mapping, got {type(data).__name__}")
        return decode(data if type(data) is dict else dict(data))

    return from_dict


# ``Model.from_dict(d)``: the same decoders as the API answers (one converter).
_FROM_DICT: Dict[type, Callable[[Any], Any]] = {
    Conversation: _mapping_only(decode_conversation),
    ConversationMessage: _mapping_only(decode_message),
    ConversationMessageEvent: _mapping_only(decode_event),
    JoinResult: _mapping_only(_join_from_dict),
    SentMessage: _mapping_only(_sent_from_dict),
    SubscriberInfo: _mapping_only(_subscriber_from_dict),
}
