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
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, cast

import attrs

from ._timestamps import MILLISECONDS_THRESHOLD
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
        seconds = value / 1000.0 if value >= MILLISECONDS_THRESHOLD else float(value)
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        # NaN, infinite, or outside datetime's range (years 1..9999): no datetime for it
        return None


class _Model:
    """Behaviour shared by every model: ``to_dict()``/``from_dict()``, ``repr``, equality and an
    HTML table for notebooks."""

    __slots__ = ()

    # Per class (filled in by _prepare below): the names to_dict() emits (all fields but
    # ``extra``) and one attrgetter that reads them all in a single C call; the same for every
    # field (equality) and the fields ``repr`` shows, each with its repr function.
    _dict_names: ClassVar[Tuple[str, ...]] = ()
    _dict_getter: ClassVar[Callable[[Any], Tuple[Any, ...]]]
    _has_extra: ClassVar[bool] = False
    _eq_getter: ClassVar[Callable[[Any], Tuple[Any, ...]]]
    _repr_fields: ClassVar[Tuple[Tuple[str, Callable[[Any], str]], ...]] = ()

    # __repr__, __eq__ and __hash__ are written once here rather than generated for each class
    # by attrs (``repr=False, eq=False`` on the classes): the same results as attrs' (tested
    # against attrs-made twins), and ~0.25 ms less per class at import.

    def __repr__(self) -> str:
        cls = type(self)
        shown = ", ".join(f"{name}={show(getattr(self, name))}" for name, show in cls._repr_fields)
        return f"{cls.__qualname__.rsplit('>.', 1)[-1]}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        getter = type(self)._eq_getter
        return getter(self) == getter(other)

    def __hash__(self) -> int:
        # as attrs' for a frozen class: unhashable while a field holds a dict (most do)
        return hash((type(self).__qualname__,) + type(self)._eq_getter(self))

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
        return _FROM_DICT[cls](data)  # type: ignore[no-any-return]

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


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
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


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
class ConversationMessage(_Model):
    """A stored message or call-log entry (``get_conversation_messages()``, ``get_messages()``).

    ``conversation_id`` is the wire ``group_id``; ``user_id`` is the sender's address id (wire
    ``from_fabric_address_id``). Chat messages have ``subtype == "chat"``; call history has
    ``subtype == "log"`` with ``kind`` (e.g. ``"call_started"``) and ``details``. ``id`` is
    ``None`` only when the server sent none.

    ``user_name`` is the sender's name: the ``display_name`` (else ``name``) of the address
    ``user_id`` in the address directory, looked up by the client (cached for a few minutes);
    ``None`` when the lookup failed or the client was made with ``resolve_names=False``.
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
    user_name: Optional[str] = None

    @property
    def datetime(self) -> Optional[_dt.datetime]:
        """``ts`` as an aware UTC ``datetime`` (seconds or milliseconds on the wire)."""
        return timestamp_to_datetime(self.ts)


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
class ConversationMessageEvent(ConversationMessage):
    """A new message delivered live by a subscription (or recovered by gap fill).

    Adds to the message fields: ``hidden``, ``address_id``, ``conversation_name`` and
    ``is_author`` (``True`` when this subscriber sent it). ``user_name`` comes from the event
    when the server sent it; else, for a callback subscription, from the address directory as
    for stored messages (``client.names.fill(event)`` does it for any event). Messages
    recovered over REST after a reconnect carry what the REST API returns plus the looked-up
    ``user_name`` (``recovered`` is ``True``, ``is_author`` set; ``conversation_name`` may be
    ``None``). ``cursor`` is the resume point of a delivered event (pass it to
    ``subscribe(after=...)``); ``""`` on an event no subscription delivered.
    """

    hidden: bool = False
    address_id: Optional[str] = None
    conversation_name: Optional[str] = None
    is_author: Optional[bool] = None
    recovered: bool = False
    cursor: str = ""


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
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


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
class SentMessage(_Model):
    """What ``send_message()`` answered. ``id`` is ``None`` when the server did not return one."""

    id: Optional[str] = None
    conversation_id: Optional[str] = None
    user_id: Optional[str] = None
    text: Optional[str] = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.define(frozen=True, kw_only=True, repr=False, eq=False)
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
# either wire generation into the model's names, then a generated structure hook. It decides
# every payload the fast path below does not take (coercions, odd values, the other models).
# cattrs is imported, and the converter and its hooks built, on first use: a program that never
# needs them does not pay for them at import.
# ---------------------------------------------------------------------------------------------

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


_converter: Any = None
_structure_fns: Dict[type, Callable[[Any, Any], Any]] = {}


def _get_converter() -> Any:
    """The converter, built on the first call (a race builds two equal ones: harmless)."""
    global _converter
    if _converter is None:
        import cattrs

        converter = cattrs.Converter(detailed_validation=False, forbid_extra_keys=False)
        hooks: Tuple[Tuple[Any, Callable[[Any, Any], Any]], ...] = (
            (Optional[str], _hook_str),
            (Optional[float], _hook_number),
            (Mapping[str, Any], _hook_mapping),
            (tuple[str, ...], _hook_str_tuple),
        )
        for exact, hook in hooks:
            converter.register_structure_hook_func(_is(exact), hook)
        _converter = converter
    return _converter


def _is(exact: Any) -> Callable[[Any], bool]:
    return lambda t: bool(t == exact)


def _structure_fn(cls: type) -> Callable[[Any, Any], Any]:
    """The generated cattrs structure function of ``cls`` (made on first use, then kept)."""
    fn = _structure_fns.get(cls)
    if fn is None:
        from cattrs.gen import make_dict_structure_fn

        fn = _structure_fns[cls] = make_dict_structure_fn(
            cls, _get_converter(), _cattrs_detailed_validation=False
        )
    return fn


def _structure_errors() -> Tuple[Type[BaseException], ...]:
    """What a structure function raises for a value it cannot convert (cattrs is loaded by then)."""
    import cattrs

    return (TypeError, ValueError, cattrs.BaseValidationError)


def _pop_first(data: JSONDict, *names: str) -> Any:
    """Remove and return the first of ``names`` present with a non-null value."""
    for name in names:
        if data.get(name) is not None:
            return data.pop(name)
    return None


#: The wire names a message field is also read from, in order after its own name: the first
#: one with a non-null value is the field's value, the others stay in ``extra``. The converter
#: (``_message_dialect``) and the fast path read this one table.
_ALIASES: Dict[str, Tuple[str, ...]] = {
    "conversation_id": ("group_id",),
    "user_id": ("from_fabric_address_id", "from_address_id"),
}


def _message_dialect(data: JSONDict) -> JSONDict:
    d = dict(data)
    for name, aliases in _ALIASES.items():
        d[name] = _pop_first(d, name, *aliases)
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
            return cast(M, _structure_fn(cls)(known, cls))
        except _structure_errors() as exc:
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


# -- per-class to_dict(), equality and repr tables ---------------------------------------------------------------


def _prepare(cls: Type[_Model]) -> None:
    fields = attrs.fields(cast(Any, cls))
    names = tuple(a.name for a in fields if a.name != "extra")
    cls._dict_names = names
    cls._dict_getter = attrgetter(*names)
    cls._has_extra = "extra" in attrs.fields_dict(cast(Any, cls))
    cls._eq_getter = attrgetter(*(a.name for a in fields))  # (every model has several fields)
    cls._repr_fields = tuple((a.name, repr if a.repr is True else a.repr) for a in fields if a.repr is not False)


for _cls in (Conversation, ConversationMessage, ConversationMessageEvent, JoinResult, SentMessage, SubscriberInfo):
    _prepare(_cls)


# -- the fast path: one decoder per model and key order --------------------------------------
#
# A payload whose values already have the model's types (what a sane server sends) would come
# out of the converter unchanged but for the renames of _ALIASES and the unknown keys moved to
# ``extra``. For each key order ("shape") seen, a small decoder is generated once: it unpacks
# ``data.values()`` positionally, checks each value's type, and fills the model's slots directly;
# any value of another type makes it answer ``None`` and the converter decides, so every coercion
# lives in one place (``test_models.py`` proves both paths equal on generated payloads). Keys
# never enter the generated source (values are ``v0``, ``v1``, ...; keys are bound as constants),
# so a hostile server cannot inject code; the caches are bounded, and a shape seen after one is
# full goes to the converter. The table below comes from the models' own fields, so a new field
# of ConversationMessage or ConversationMessageEvent needs no change here.

#: Per field type (as written in the class): the check that a value needs no conversion.
_CHECKS: Dict[str, str] = {
    "Optional[str]": "type({v}) in _STR",
    "Optional[float]": "type({v}) in _NUM",
    "Optional[bool]": "type({v}) in _OPT_BOOL",
    "bool": "type({v}) is bool",
    "str": "type({v}) is str",
    "Mapping[str, Any]": "({v} is None or type({v}) is dict)",  # None reads as {}
}
_STR = (str, type(None))
_NUM = (float, int, type(None))
_OPT_BOOL = (bool, type(None))
#: The field a decode call may give a default for (the envelope's flag of a live event).
_CALL_DEFAULT = "is_author"
#: The field a decode call may set (a delivered event's resume cursor): when the call gives one,
#: it wins over the payload's.
_CALL_OVERRIDE = "cursor"
_SHAPE_CACHE_MAX = 128
_SHAPE_KEYS_MAX = 64
_Decoder = Callable[..., Any]


def _field_checks(cls: type) -> Dict[str, str]:
    """Each field's check, read at import (while the annotations are still the strings of the
    source: cattrs later resolves them); refuses a class the generated decoders could not build
    faithfully, so adding such a field fails loudly instead of being decoded wrong."""
    checks: Dict[str, str] = {}
    for a in attrs.fields(cast(Any, cls)):
        if a.validator is not None or a.converter is not None or a.on_setattr not in (None, attrs.setters.NO_OP):
            raise TypeError(f"{cls.__name__}.{a.name}: the fast path cannot run validators or converters")
        if isinstance(a.default, attrs.Factory) and a.default.takes_self:  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}.{a.name}: the fast path cannot run a factory that takes self")
        if a.name != "extra":
            if a.type not in _CHECKS:
                raise TypeError(f"{cls.__name__}.{a.name}: the fast path has no check for type {a.type!r}")
            checks[a.name] = _CHECKS[a.type]
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        raise TypeError(f"{cls.__name__}: the fast path cannot run __attrs_post_init__/__attrs_pre_init__")
    return checks


def _shape_source(cls: type, shape: Tuple[Any, ...]) -> Tuple[str, Dict[str, Any]]:
    """The source of the decoder of ``cls`` for payloads whose keys are ``shape``, in order,
    and the namespace it runs in."""
    fields = attrs.fields(cast(Any, cls))
    names = {a.name for a in fields}
    kinds = _fast_checks[cls]
    position = {key: i for i, key in enumerate(shape)}
    namespace: Dict[str, Any] = {
        "_new": object.__new__, "_cls": cls, "_STR": _STR, "_NUM": _NUM, "_OPT_BOOL": _OPT_BOOL,
    }
    body: List[str] = []
    checks: List[str] = []
    stores: List[str] = []
    alias_keys: "set[str]" = set()
    extra_if: List[str] = []  # an alias key goes to ``extra`` unless its value was the one used
    for j, a in enumerate(fields):
        namespace[f"_set{j}"] = getattr(cls, a.name).__set__  # the slot's member descriptor
        if a.name == "extra":
            stores.append(f"_set{j}(obj, extra)")
            continue
        sources = [key for key in (a.name, *_ALIASES.get(a.name, ())) if key in position]
        alias_keys.update(_ALIASES.get(a.name, ()))
        if not sources:  # absent: the field's default
            if a.name == _CALL_DEFAULT:
                value = "default"
            elif a.name == _CALL_OVERRIDE:
                value = "override"
            elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
                namespace[f"_d{j}"] = a.default.factory
                value = "{}" if a.default.factory is dict else f"_d{j}()"
            else:
                namespace[f"_d{j}"] = a.default
                value = f"_d{j}"
            stores.append(f"_set{j}(obj, {value})")
            continue
        value = f"v{position[sources[0]]}"
        if len(sources) > 1:  # the first non-null of the present sources, in priority order
            value = f"f{j}"
            chain = " else ".join(f"v{position[key]} if v{position[key]} is not None" for key in sources[:-1])
            body.append(f"    {value} = {chain} else v{position[sources[-1]]}")
        for rank, key in enumerate(sources):
            if key != a.name:
                earlier = "".join(f" and v{position[k]} is None" for k in sources[:rank])
                i = position[key]
                extra_if.append(f"        if not (v{i} is not None{earlier}): extra[_k{i}] = v{i}")
        checks.append(kinds[a.name].format(v=value))
        if a.name == _CALL_DEFAULT:
            value = f"(default if {value} is None else {value})"
        elif a.name == _CALL_OVERRIDE:
            value = f"(override or {value})"
        elif kinds[a.name] == _CHECKS["Mapping[str, Any]"]:
            value = f"({{}} if {value} is None else {value})"
        stores.append(f"_set{j}(obj, {value})")
    unknown = [i for i, key in enumerate(shape) if key not in names and key not in alias_keys and key != "extra"]
    for i in set(unknown) | {position[key] for key in alias_keys if key in position}:
        namespace[f"_k{i}"] = shape[i]
    lines = ["def decode(data, default=None, override=''):"]
    if shape:
        lines.append(f"    ({', '.join(f'v{i}' for i in range(len(shape)))},) = data.values()")
    lines += body
    lines.append(f"    if {' and '.join(checks) or 'True'}:")
    lines.append("        extra = {" + ", ".join(f"_k{i}: v{i}" for i in unknown) + "}")
    lines += extra_if
    lines.append("        obj = _new(_cls)")
    lines += [f"        {store}" for store in stores]
    lines.append("        return obj")
    lines.append("    return None")
    return "\n".join(lines) + "\n", namespace


def _shape_decoder(cls: type, shape: Tuple[Any, ...]) -> Optional[_Decoder]:
    """The cached decoder of ``cls`` for ``shape``, generated when new; ``None`` (the converter
    decides) when the cache is full or the payload has too many keys."""
    cache = _shape_caches[cls]
    decoder = cache.get(shape)
    if decoder is None:
        if len(cache) >= _SHAPE_CACHE_MAX or len(shape) > _SHAPE_KEYS_MAX:
            return None
        decoder = cache[shape] = _generate(cls, shape)
    return decoder


def _generate(cls: type, shape: Tuple[Any, ...]) -> _Decoder:
    source, namespace = _shape_source(cls, shape)
    exec(source, namespace)  # noqa: S102 - fixed source: field names and v0..vN only
    return cast(_Decoder, namespace["decode"])


_fast_checks: Dict[type, Dict[str, str]] = {
    ConversationMessage: _field_checks(ConversationMessage),
    ConversationMessageEvent: _field_checks(ConversationMessageEvent),
}
_message_shapes: Dict[Tuple[Any, ...], _Decoder] = {}
_event_shapes: Dict[Tuple[Any, ...], _Decoder] = {}
_shape_caches: Dict[type, Dict[Tuple[Any, ...], _Decoder]] = {
    ConversationMessage: _message_shapes,
    ConversationMessageEvent: _event_shapes,
}
# Sets ``user_name`` on a model just built and not yet handed out (the name fill of a page,
# ``names.py``), as the decoders above set every slot.
_set_user_name: Callable[[ConversationMessage, Optional[str]], None] = ConversationMessage.__dict__["user_name"].__set__


def decode_conversation(data: Any) -> Conversation:
    """Decode one item of ``GET /api/fabric/conversations`` (either wire generation)."""
    return _conversation_hook(data)


def decode_message(data: Any) -> ConversationMessage:
    """Decode one stored message of a message list (either wire generation)."""
    if type(data) is dict:
        shape = tuple(data)
        decoder = _message_shapes.get(shape) or _shape_decoder(ConversationMessage, shape)
        if decoder is not None:
            message = decoder(data)
            if message is not None:
                return cast(ConversationMessage, message)
    return _message_hook(data)


def decode_messages(items: Any) -> "list[ConversationMessage]":
    """``[decode_message(item) for item in items]``, faster for a page of same-shaped items."""
    out: List[ConversationMessage] = []
    append = out.append
    cache = _message_shapes
    last: Any = None
    decoder: Optional[_Decoder] = None
    for data in items:
        if type(data) is dict:
            shape = tuple(data)
            if shape != last:
                last = shape
                decoder = cache.get(shape) or _shape_decoder(ConversationMessage, shape)
            if decoder is not None:
                message = decoder(data)
                if message is not None:
                    append(message)
                    continue
        append(_message_hook(data))
    return out


def decode_event(
    payload: Any, *, is_author: Optional[bool] = None, cursor: str = ""
) -> ConversationMessageEvent:
    """Decode the ``params.params`` payload of a ``conversation.message`` event.

    Also accepts the output of :meth:`ConversationMessageEvent.to_dict`, so an event that went
    through a queue as JSON decodes back to an equal event. ``cursor`` (when not empty) is the
    event's resume cursor.
    """
    if type(payload) is dict:
        shape = tuple(payload)
        decoder = _event_shapes.get(shape) or _shape_decoder(ConversationMessageEvent, shape)
        if decoder is not None:
            event = decoder(payload, is_author, cursor)
            if event is not None:
                return cast(ConversationMessageEvent, event)
    event = _event_hook(payload)
    if cursor and event.cursor != cursor:
        event = attrs.evolve(event, cursor=cursor)
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


def event_from_message(
    message: ConversationMessage, *, is_author: Optional[bool] = None
) -> ConversationMessageEvent:
    """The event a subscription delivers for a message recovered over REST (gap fill);
    ``is_author`` is whether this subscriber sent it, when the caller knows."""
    fields = {a.name: getattr(message, a.name) for a in attrs.fields(ConversationMessage)}
    extra = dict(fields.pop("extra"))
    hidden = _bool(extra.pop("hidden", False))
    address_id = _str_or_none(extra.pop("address_id", None))
    conversation_name = _str_or_none(extra.pop("conversation_name", None))
    return ConversationMessageEvent(
        **fields,
        extra=extra,
        hidden=hidden,
        recovered=True,
        is_author=is_author,
        address_id=address_id,
        conversation_name=conversation_name,
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


def _fields_hook(cls: Type[M], data: Mapping[str, Any], required: Tuple[str, ...]) -> M:
    """A model from its own field names (what to_dict() wrote), through the same type hooks."""
    known = {a.name for a in attrs.fields(cast(Any, cls))}
    d = {k: v for k, v in data.items() if k in known}
    for name in required:
        if d.get(name) in (None, ""):
            raise ResponseValidationError(f"{cls.__name__} without {name!r}: {_preview(data)}")
    try:
        return cast(M, _structure_fn(cls)(d, cls))
    except _structure_errors() as exc:
        raise ResponseValidationError(f"could not decode a {cls.__name__}: {exc}") from None


def _mapping_only(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def from_dict(data: Any) -> Any:
        if type(data) is dict:  # (first: the common case skips the ABC check)
            return decode(data)
        if not isinstance(data, Mapping):
            raise ResponseValidationError(f"from_dict() needs a mapping, got {type(data).__name__}")
        return decode(dict(data))

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
