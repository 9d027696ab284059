"""Models and the converter: every payload fixture decodes; both wire generations; round trips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalwire_conversation import (
    Conversation,
    ConversationMessage,
    ConversationMessageEvent,
    JoinResult,
    ResponseValidationError,
    SentMessage,
    SubscriberInfo,
)
from signalwire_conversation.models import (
    decode_conversation,
    decode_event,
    decode_join_result,
    decode_message,
    decode_sent_message,
    decode_subscriber_info,
    event_from_message,
    timestamp_to_datetime,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

CONVERSATIONS = ["docs-v3-conversation-object.json"]
MESSAGES = [
    "docs-v3-conversation-message-object.json",
    "docs-v3-chat-message-object.json",
    "v3-e2e-stored-chat-message-shape.json",
]
EVENTS = [
    "docs-v3-conversation-message-event-params.json",
    "v3-client-test-event-chat.json",
    "v3-js329-test-event-chat.json",
    "v3-repo-test-event-chat-fabric.json",
]
CONVERSATION_PAGES = [
    "v3-client-test-conversations-page.json",
    "v3-js329-test-conversations-page.json",
    "docs-v3-sdk-get-conversations-result.json",
]
MESSAGE_PAGES = ["v3-client-test-messages-page.json", "docs-v3-sdk-get-conversation-messages-result.json"]
JOINS = ["v3-client-test-join-response.json", "v3-js329-test-join-response.json", "v4-test-join-response-minimal.json"]
SENDS = ["v3-client-test-send-message-response.json", "v3-js329-test-send-message-response.json"]
SUBSCRIBERS = ["v4-test-subscriber-info.json", "v4-test-subscriber-info-minimal.json"]
# not conversation/message/event payloads or pages (JWE headers, websocket frames, errors,
# tokens, addresses, request bodies): listed so a new fixture cannot be forgotten silently
OTHERS = {
    "jwe-header-guest-sat.json", "jwe-header-refresh-token.json", "jwe-header-sat-with-ch.json",
    "jwe-header-sat-without-ch.json", "openapi-error-401.json", "openapi-error-404.json",
    "openapi-error-422-refresh-token-expired.json", "openapi-error-422-subscriber-token.json",
    "openapi-error-500.json", "openapi-fabric-addresses-page.json", "openapi-fabric-pagination-links.json",
    "openapi-subscriber-refresh-token-request.json", "openapi-subscriber-refresh-token-response.json",
    "openapi-subscriber-token-response.json", "v3-client-test-join-request.json",
    "v3-client-test-send-message-request.json", "v3-js329-test-join-request.json",
    "v3-js329-test-send-message-request.json", "v3-repo-send-message-request.json",
    "v3-e2e-ws-conversation-call-started-partial.json", "v4-join-request-1.json", "v4-join-request-2.json",
    "v4-test-send-message-error-body.json", "v4-test-ws-connect-request-subparams.json",
    "v4-test-ws-event-call-state-matching-channel.json", "v4-test-ws-event-conversation-message-frame.json",
    "v4-ws-authorization-state-event-params.json", "v4-ws-connect-request-dpop.json",
    "v4-ws-connect-request-jwt.json", "v4-ws-connect-result.json", "v4-ws-disconnect-response.json",
    "v4-ws-event-ack.json", "v4-ws-ping-request.json", "v4-ws-ping-response.json",
    "v4-ws-reauthenticate-request-dpop.json", "v4-ws-reauthenticate-request.json",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_every_fixture_is_classified() -> None:
    classified = set(CONVERSATIONS + MESSAGES + EVENTS + CONVERSATION_PAGES + MESSAGE_PAGES + JOINS + SENDS + SUBSCRIBERS) | OTHERS
    on_disk = {p.name for p in FIXTURES.glob("*.json")}
    assert on_disk - classified == set(), "new fixtures: decide whether they must decode"


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_conversation_fixtures(name: str) -> None:
    conv = decode_conversation(load(name))
    assert isinstance(conv, Conversation) and conv.id
    assert decode_conversation(conv.to_dict()) == conv


@pytest.mark.parametrize("name", MESSAGES)
def test_message_fixtures(name: str) -> None:
    msg = decode_message(load(name))
    assert isinstance(msg, ConversationMessage)
    assert msg.id and msg.conversation_id and msg.user_id
    assert decode_message(msg.to_dict()) == msg


@pytest.mark.parametrize("name", EVENTS)
def test_event_fixtures(name: str) -> None:
    event = decode_event(load(name))
    assert isinstance(event, ConversationMessageEvent)
    assert event.id and event.conversation_id and event.user_id
    assert event.hidden is False
    assert decode_event(event.to_dict()) == event
    assert decode_event(json.loads(json.dumps(event.to_dict()))) == event


@pytest.mark.parametrize("name", CONVERSATION_PAGES)
def test_conversation_pages(name: str) -> None:
    items = [decode_conversation(i) for i in load(name)["data"]]
    assert items and all(c.id for c in items)


@pytest.mark.parametrize("name", MESSAGE_PAGES)
def test_message_pages(name: str) -> None:
    items = [decode_message(i) for i in load(name)["data"]]
    assert items and all(isinstance(m, ConversationMessage) for m in items)


@pytest.mark.parametrize("name", JOINS)
def test_join_fixtures(name: str) -> None:
    assert decode_join_result(load(name)).group_id


@pytest.mark.parametrize("name", SENDS)
def test_send_fixtures(name: str) -> None:
    sent = decode_sent_message(load(name))
    assert sent.text == "test message" and sent.conversation_id


@pytest.mark.parametrize("name", SUBSCRIBERS)
def test_subscriber_fixtures(name: str) -> None:
    info = decode_subscriber_info(load(name))
    assert info.id


def test_subscriber_own_address() -> None:
    assert decode_subscriber_info(load("v4-test-subscriber-info.json")).address_id == "addr-123"
    assert decode_subscriber_info(load("v4-test-subscriber-info-minimal.json")).address_id is None


def test_both_generations_map_to_seed_names() -> None:
    v4 = decode_message({"id": "1", "group_id": "g", "from_fabric_address_id": "a", "ts": 1.5})
    v3new = decode_message({"id": "1", "group_id": "g", "from_address_id": "a", "ts": 1.5})
    old = decode_message({"id": "1", "conversation_id": "g", "user_id": "a", "ts": 1.5})
    assert (v4.conversation_id, v4.user_id) == (v3new.conversation_id, v3new.user_id) == (old.conversation_id, old.user_id) == ("g", "a")
    conv = decode_conversation({"group_id": "g", "from_address_id": "me"})
    assert conv.id == "g" and conv.from_fabric_address_id == "me"


@pytest.mark.parametrize("hidden, expected", [(True, True), (False, False), ("true", True), ("false", False), ("False", False), (None, False)])
def test_hidden_bool_or_string(hidden: Any, expected: bool) -> None:
    assert decode_event({"id": "1", "hidden": hidden}).hidden is expected


def test_tolerated_variations() -> None:
    e = decode_event({"id": "1", "kind": None, "text": None, "ts": 17})
    assert e.kind is None and e.text is None and e.ts == 17
    assert decode_event({"id": "1"}).kind is None
    assert decode_message({"id": 5, "ts": "1.5"}).id == "5"
    assert decode_message({"id": "x", "ts": "<any>"}).ts is None
    assert decode_message({"id": "x", "metadata": None, "details": None}).metadata == {}


def test_unknown_fields_kept_and_round_trip() -> None:
    msg = decode_message({"id": "1", "group_id": "g", "brand_new": {"x": 1}})
    assert msg.extra == {"brand_new": {"x": 1}}
    assert msg.to_dict()["brand_new"] == {"x": 1}
    assert "brand_new" not in repr(msg)


def test_decode_event_is_author() -> None:
    assert decode_event({"id": "1"}, is_author=True).is_author is True
    assert decode_event({"id": "1", "is_author": False}, is_author=True).is_author is False


def test_decode_event_is_author_on_the_fast_path() -> None:
    # a well-typed live payload takes the inline path: the envelope flag applies there too,
    # and the payload's own flag still wins
    payload = {
        "id": "m1", "group_id": "g", "from_fabric_address_id": "a", "ts": 1.5, "details": {},
        "type": "message", "subtype": "chat", "kind": None, "text": "hi", "metadata": {},
        "hidden": False, "conversation_name": "c", "user_name": "u",
    }
    assert decode_event(payload, is_author=True).is_author is True
    assert decode_event(payload).is_author is None
    assert decode_event(dict(payload, is_author=False), is_author=True).is_author is False
    # the converter's path (forced by a string ts it must coerce) gives the same event
    slow = decode_event(dict(payload, ts="1.5"), is_author=True)
    assert slow == decode_event(payload, is_author=True)


def test_event_from_message() -> None:
    msg = decode_message({"id": "1", "group_id": "g", "from_fabric_address_id": "a", "ts": 3, "user_name": "Ann", "hidden": "true"})
    event = event_from_message(msg)
    assert isinstance(event, ConversationMessageEvent)
    assert event.recovered is True and event.user_name == "Ann" and event.hidden is True
    assert (event.id, event.conversation_id, event.user_id, event.ts) == ("1", "g", "a", 3)
    assert "user_name" not in event.extra


@pytest.mark.parametrize(
    "decoder, bad",
    [
        (decode_conversation, {"name": "no id"}),
        (decode_conversation, []),
        (decode_message, "text"),
        (decode_event, None),
        (decode_join_result, {}),
        (decode_join_result, {"group_id": ""}),
    ],
)
def test_bad_data_is_response_validation_error(decoder: Callable[[Any], Any], bad: Any) -> None:
    with pytest.raises(ResponseValidationError):
        decoder(bad)


def test_models_are_frozen() -> None:
    msg = decode_message({"id": "1"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg.id = "2"  # type: ignore[misc]


def test_timestamps_seconds_and_milliseconds() -> None:
    assert timestamp_to_datetime(1708192187) == dt.datetime(2024, 2, 17, 17, 49, 47, tzinfo=dt.timezone.utc)
    assert timestamp_to_datetime(1708192187000) == timestamp_to_datetime(1708192187)
    assert decode_message({"id": "1", "ts": 1708192187.5}).datetime == dt.datetime(2024, 2, 17, 17, 49, 47, 500000, tzinfo=dt.timezone.utc)
    assert decode_message({"id": "1"}).datetime is None


def test_html_repr() -> None:
    html = decode_message({"id": "1", "text": "<b>hi</b>"})._repr_html_()
    assert "&lt;b&gt;" in html and "<b>hi</b>" not in html


def test_decode_speed_is_reasonable() -> None:
    """Guard against an accidental slow path: decoding stays within a small factor of json.loads."""
    import time

    payload = json.dumps([load("v3-repo-test-event-chat-fabric.json")] * 2000)
    t0 = time.perf_counter()
    for _ in range(3):
        json.loads(payload)
    t_json = time.perf_counter() - t0
    data = json.loads(payload)
    t0 = time.perf_counter()
    for _ in range(3):
        for item in data:
            decode_event(item)
    t_decode = time.perf_counter() - t0
    assert t_decode < 40 * t_json + 0.5  # loose: timing on shared CI; the benchmark is exact


@pytest.mark.parametrize("ts", [1e300, -1e300, float("inf"), float("nan"), -62135596801, 253402300800000])
def test_datetime_helpers_out_of_range_give_none(ts: float) -> None:
    assert timestamp_to_datetime(ts) is None
    assert decode_message({"id": "1", "ts": ts}).datetime is None
    assert decode_conversation({"id": "c", "created_at": ts}).created_datetime is None


def test_deep_payloads_do_not_recurse() -> None:
    inner: Any = 1
    for _ in range(5000):
        inner = {"a": [inner]}
    msg = decode_message({"id": "x", "details": inner})
    assert len(repr(msg)) < 1000
    msg._repr_html_()
    out = msg.to_dict()["details"]
    depth = 0
    while isinstance(out, dict):
        out = out["a"][0]
        depth += 1
    assert depth == 5000 and out == 1
    assert msg.to_dict()["details"] is not msg.details  # a copy, not the model's own dict


# -- from_dict (the public inverse of to_dict) ---------------------------------------------------


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _items(name: str) -> Any:
    body = _fixture(name)
    return body["data"] if isinstance(body, dict) and "data" in body else [body]


@pytest.mark.parametrize("cls,decode,names", [
    (Conversation, decode_conversation, CONVERSATIONS + CONVERSATION_PAGES),
    (ConversationMessage, decode_message, MESSAGES + MESSAGE_PAGES),
    (ConversationMessageEvent, lambda d: decode_event(d, is_author=True), EVENTS),
])
def test_from_dict_round_trips_through_json(cls: Any, decode: Callable[[Any], Any], names: Any) -> None:
    for name in names:
        for item in _items(name):
            model = decode(item)
            again = cls.from_dict(json.loads(json.dumps(model.to_dict())))
            assert again == model, name
            assert type(again) is cls
            assert cls.from_dict(item) == decode(item) or cls is ConversationMessageEvent


@pytest.mark.parametrize("cls,decode,names", [
    ("JoinResult", decode_join_result, JOINS),
    ("SentMessage", decode_sent_message, SENDS),
    ("SubscriberInfo", decode_subscriber_info, SUBSCRIBERS),
])
def test_from_dict_of_answer_models(cls: str, decode: Callable[[Any], Any], names: Any) -> None:
    import signalwire_conversation as sc

    model_cls = getattr(sc, cls)
    for name in names:
        model = decode(_fixture(name))
        assert model_cls.from_dict(json.loads(json.dumps(model.to_dict()))) == model, name
        assert model_cls.from_dict(_fixture(name)) == model  # the wire body decodes too


def test_from_dict_of_an_event_from_a_queue_keeps_extra_and_flags() -> None:
    event = decode_event({"id": "e1", "group_id": "g", "ts": 1.5, "hidden": "true", "new_field": [1, {"a": 2}]},
                         is_author=False)
    back = ConversationMessageEvent.from_dict(json.loads(json.dumps(event.to_dict())))
    assert back == event and back.hidden is True and back.is_author is False
    assert back.extra == {"new_field": [1, {"a": 2}]}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        back.text = "x"  # type: ignore[misc]


@pytest.mark.parametrize("bad", [None, [1], "x", 5])
def test_from_dict_refuses_non_mappings(bad: Any) -> None:
    with pytest.raises(ResponseValidationError):
        ConversationMessageEvent.from_dict(bad)
    with pytest.raises(ResponseValidationError):
        Conversation.from_dict({"name": "no id"})


# -- the fast decoding path decides exactly as the converter does --------------------------------


@pytest.mark.parametrize("payload", [
    {"id": "m", "group_id": "g", "from_fabric_address_id": "u", "ts": 1, "details": {}, "metadata": None},
    {"id": "m", "conversation_id": "c", "group_id": "g", "user_id": "u", "from_address_id": "a"},
    {"id": "m", "group_id": None, "from_fabric_address_id": None, "extra": {"x": 1}, "other": 2},
    {"id": 5, "ts": "1700000000.5", "details": [1], "text": 7},  # coercions: the converter's path
    {"id": "m", "ts": True, "hidden": "yes", "is_author": "0", "recovered": None},
    {"id": "m", "hidden": None, "address_id": 3, "user_name": "n"},
    {},
])
def test_fast_path_equals_the_converter(payload: Any) -> None:
    from signalwire_conversation import models

    assert decode_message(payload) == models._message_hook(payload)
    expected = models._event_hook(payload)
    assert decode_event(payload) == expected
    assert decode_event(payload).extra == expected.extra


def test_to_dict_copies_nested_values() -> None:
    m = decode_message({"id": "m", "details": {"a": {"b": [1, 2]}}, "metadata": {"k": "v"}, "more": [{"x": 1}]})
    d = m.to_dict()
    d["details"]["a"]["b"].append(3)
    d["metadata"]["k"] = "changed"
    d["more"][0]["x"] = 2
    assert m.details == {"a": {"b": [1, 2]}} and m.metadata == {"k": "v"} and m.extra == {"more": [{"x": 1}]}
    info = decode_subscriber_info({"id": "s", "fabric_addresses": [{"id": "a1"}]})
    assert info.to_dict()["address_ids"] == ["a1"]


def test_fast_path_refuses_classes_it_cannot_build() -> None:
    from signalwire_conversation import models

    @attrs.define(frozen=True, kw_only=True)
    class Checked:
        x: Optional[str] = attrs.field(default=None, validator=attrs.validators.instance_of(str))

    @attrs.define(frozen=True, kw_only=True)
    class Unknown:
        x: "list[str]" = attrs.field(factory=list)

    @attrs.define(frozen=True, kw_only=True)
    class PostInit:
        x: Optional[str] = None

        def __attrs_post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="validators"):
        models._field_checks(Checked)
    with pytest.raises(TypeError, match="no check for type"):
        models._field_checks(Unknown)
    with pytest.raises(TypeError, match="post_init"):
        models._field_checks(PostInit)


_SAMPLES = {
    Conversation: lambda: [decode_conversation({"group_id": "g", "name": "n", "metadata": {"a": 1}, "x": 2}),
                           decode_conversation({"group_id": "g"})],
    ConversationMessage: lambda: [decode_message({"id": "m", "group_id": "g", "text": "<hi>", "details": {"d": [1]},
                                                  "ts": 1.5, "zz": 3}),
                                  decode_message({"id": "m"})],
    ConversationMessageEvent: lambda: [decode_event({"id": "e", "hidden": True, "user_name": "U"}, is_author=True),
                                       decode_event({"id": "e"})],
    JoinResult: lambda: [decode_join_result({"group_id": "g", "fabric_address_ids": ["a", "b"]}),
                         decode_join_result({"group_id": "h"})],
    SentMessage: lambda: [decode_sent_message({"id": "s", "text": "t"}), decode_sent_message({})],
    SubscriberInfo: lambda: [decode_subscriber_info({"id": "s", "fabric_addresses": [{"id": "a"}]}),
                             decode_subscriber_info({})],
}


@pytest.mark.parametrize("cls", list(_SAMPLES), ids=lambda c: c.__name__)
def test_repr_eq_and_hash_are_what_attrs_would_generate(cls: Any) -> None:
    # the models write these once in _Model (import time); a twin made by attrs with its
    # defaults must behave the same
    twin = attrs.make_class(
        cls.__name__,
        {a.name: attrs.field(default=a.default, repr=a.repr, kw_only=True) for a in attrs.fields(cls)},
        frozen=True,
    )

    def twin_of(obj: Any) -> Any:
        return twin(**{a.name: getattr(obj, a.name) for a in attrs.fields(cls)})

    def changed(value: Any) -> Any:
        if isinstance(value, bool):
            return not value
        if isinstance(value, tuple):
            return value + ("z",)
        if isinstance(value, dict):
            return dict(value, changed=1)
        return 42.0 if isinstance(value, float) else f"{value}-changed"

    samples = _SAMPLES[cls]()
    samples.append(attrs.evolve(samples[0]))  # equal, not identical
    # and one variant per field, different in that field alone
    samples += [attrs.evolve(samples[0], **{a.name: changed(getattr(samples[0], a.name))}) for a in attrs.fields(cls)]
    for x in samples:
        assert repr(x) == repr(twin_of(x))
        for y in samples:
            assert (x == y) is (twin_of(x) == twin_of(y))
            assert (x != y) is (twin_of(x) != twin_of(y))
        assert (x == object()) is False and (x != object()) is True
        assert x != twin_of(x)  # another class: never equal, as with attrs
        with pytest.raises(TypeError):
            hash(twin_of(x))  # unhashable (a dict field), and so:
        with pytest.raises(TypeError):
            hash(x)


def test_generated_decoder_fills_defaults_and_calls_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    from signalwire_conversation import models

    @attrs.define(frozen=True, kw_only=True)
    class Custom:
        id: Optional[str] = None
        flag: bool = True
        tags: Mapping[str, Any] = attrs.field(factory=lambda: {"fresh": True})
        extra: Mapping[str, Any] = attrs.field(factory=dict)

    @attrs.define(frozen=True, kw_only=True)
    class TakesSelf:
        x: Mapping[str, Any] = attrs.field(default=attrs.Factory(lambda self: {}, takes_self=True))

    monkeypatch.setitem(models._fast_checks, Custom, models._field_checks(Custom))
    decode = models._generate(Custom, ("id", "other"))
    first, second = decode({"id": "x", "other": 1}), decode({"id": "y", "other": 2})
    assert first == Custom(id="x", extra={"other": 1}) and first.flag is True
    assert first.tags == {"fresh": True} and first.tags is not second.tags  # a new one each time
    assert decode({"id": 5, "other": 1}) is None  # not a str: the converter's business
    with pytest.raises(TypeError, match="takes self"):
        models._field_checks(TakesSelf)


# -- one fast path, proven equal to the converter ----------------------------------------------
#
# For any payload, the decoder generated for its key order either declines (None: the converter
# decides) or builds exactly the model the converter builds: same values of the same types,
# same ``extra``. And it does not decline what a sane server sends (every value already of its
# field's type), so the equality is not won by always declining.


def _typed(model: Any) -> Any:
    """The model's values with their types (``==`` alone has 1 == 1.0 == True)."""
    out = []
    for a in attrs.fields(type(model)):
        value = getattr(model, a.name)
        if a.name == "extra":
            value = sorted((repr(k), type(v).__name__, repr(v)) for k, v in value.items())
        out.append((a.name, type(value).__name__, repr(value)))
    return out


def _converter(cls: Any, payload: Any, default: Optional[bool]) -> Any:
    from signalwire_conversation import models

    if cls is ConversationMessage:
        return models._message_hook(payload)
    event = models._event_hook(payload)
    if default is not None and event.is_author is None:
        event = attrs.evolve(event, is_author=default)
    return event


def _fast(cls: Any, payload: Any, default: Optional[bool]) -> Any:
    from signalwire_conversation import models

    decoder = models._generate(cls, tuple(payload))  # (not the bounded cache: fills up here)
    return decoder(payload, default) if cls is ConversationMessageEvent else decoder(payload)


def _wire_keys() -> "list[str]":
    from signalwire_conversation import models

    names = {a.name for a in attrs.fields(ConversationMessageEvent)}
    return sorted(names | {alias for aliases in models._ALIASES.values() for alias in aliases})


_any_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.lists(st.integers(), max_size=2),
)
_any_payload = st.dictionaries(
    st.one_of(st.sampled_from(_wire_keys() + ["other"]), st.text(max_size=3), st.integers(0, 2)),
    _any_value, max_size=14,
)


def _sane_value(type_: str) -> Any:
    return {
        "Optional[str]": st.none() | st.text(max_size=4),
        "Optional[float]": st.none() | st.integers() | st.floats(allow_nan=False),
        "Optional[bool]": st.none() | st.booleans(),
        "bool": st.booleans(),
        "str": st.text(max_size=4),
        "Mapping[str, Any]": st.none() | st.dictionaries(st.text(max_size=2), _any_value, max_size=2),
    }[type_]


@st.composite
def _sane_payload(draw: Any) -> Dict[str, Any]:
    from signalwire_conversation import models

    # each field's type as written in the class, through the table the fast path read at import
    type_of = {check: type_ for type_, check in models._CHECKS.items()}
    checks = models._fast_checks[ConversationMessageEvent]
    optional = {name: _sane_value(type_of[check]) for name, check in checks.items()}
    for aliases in models._ALIASES.values():
        for alias in aliases:
            optional[alias] = _sane_value("Optional[str]")
    optional["unknown_key"] = _any_value
    payload = draw(st.fixed_dictionaries({}, optional=optional))
    order = draw(st.permutations(list(payload)))
    return {key: payload[key] for key in order}


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_any_payload, st.sampled_from([None, True, False]))
def test_the_fast_path_builds_what_the_converter_builds(payload: Dict[Any, Any], default: Optional[bool]) -> None:
    for cls in (ConversationMessage, ConversationMessageEvent):
        fast = _fast(cls, payload, default)
        if fast is not None:
            assert type(fast) is cls
            assert _typed(fast) == _typed(_converter(cls, payload, default))


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_sane_payload(), st.sampled_from([None, True, False]))
def test_the_fast_path_takes_every_well_typed_payload(payload: Dict[str, Any], default: Optional[bool]) -> None:
    for cls in (ConversationMessage, ConversationMessageEvent):
        fast = _fast(cls, payload, default)
        assert fast is not None, payload
        assert _typed(fast) == _typed(_converter(cls, payload, default))
    # and the public decoders answer the same
    assert _typed(decode_message(payload)) == _typed(_converter(ConversationMessage, payload, None))
    assert _typed(ConversationMessage.from_dict(payload)) == _typed(decode_message(payload))
    assert _typed(decode_event(payload, is_author=default)) == _typed(
        _converter(ConversationMessageEvent, payload, default)
    )


def test_every_reader_of_a_timestamp_uses_the_one_threshold() -> None:
    from signalwire_conversation import _timestamps
    from signalwire_conversation.conversation import MAX_EPOCH_SECONDS, _check_time
    from signalwire_conversation.realtime.delivery import ts_seconds

    limit = _timestamps.MILLISECONDS_THRESHOLD
    assert limit == 1e11 and MAX_EPOCH_SECONDS == limit
    below, at = limit - 1, limit  # seconds (year 5138), then milliseconds (March 1973)
    assert ts_seconds(below) == below and ts_seconds(at) == limit / 1000
    assert timestamp_to_datetime(at) == dt.datetime.fromtimestamp(limit / 1000, tz=dt.timezone.utc)
    assert _check_time(below, "since") == below and _check_time(at, "since") == limit / 1000
