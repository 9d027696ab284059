"""Fuzz the decoders in ``models.py`` directly.

Whatever JSON the server sends, a decoder gives a tolerant model or raises
``ResponseValidationError``; never another exception. A decoded model's ``repr``, ``to_dict()``,
``_repr_html_()`` and datetime helpers never raise either, and an event survives
``decode_event(event.to_dict())``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalwire_conversation import models
from signalwire_conversation.errors import ResponseValidationError

from .conftest import FUZZ

FUZZ_SMALL = settings(FUZZ, max_examples=50)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

DECODERS: Dict[str, Callable[[Any], Any]] = {
    "conversation": models.decode_conversation,
    "message": models.decode_message,
    "event": models.decode_event,
    "join": models.decode_join_result,
    "sent": models.decode_sent_message,
    "subscriber": models.decode_subscriber_info,
}

MODEL_OF = {
    "conversation": models.Conversation,
    "message": models.ConversationMessage,
    "event": models.ConversationMessageEvent,
    "join": models.JoinResult,
    "sent": models.SentMessage,
    "subscriber": models.SubscriberInfo,
}

# Every field name any decoder reads, from both wire generations.
WIRE_KEYS = [
    "id", "name", "metadata", "created_at", "last_message_at", "group_id", "address_id",
    "from_fabric_address_id", "from_address_id", "conversation_id", "user_id", "ts", "details",
    "type", "subtype", "kind", "text", "hidden", "conversation_name", "user_name", "is_author",
    "recovered", "fabric_address_ids", "address_ids", "table", "fabric_addresses",
    "display_name", "extra", "raw",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(WIRE_KEYS), children, max_size=4),
    max_leaves=20,
)
# Objects that look like the real thing: the known keys, with values of any type.
wire_objects = st.dictionaries(st.sampled_from(WIRE_KEYS) | st.text(max_size=6), json_values, max_size=8)
# ...and the valid shapes the decoders want, with one field swapped for a wrong type.
wrong_type = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3), st.text(max_size=5),
)


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


VALID = {
    "conversation": {"id": "c1", "group_id": "c1", "name": "n", "metadata": {}, "created_at": 1,
                     "last_message_at": 2, "from_fabric_address_id": "a"},
    "message": _fixture("v3-client-test-event-chat.json"),
    "event": _fixture("v3-client-test-event-chat.json"),
    "join": {"group_id": "g", "fabric_address_ids": ["a", "b"], "from_fabric_address_id": "a"},
    "sent": {"id": "m", "group_id": "g", "text": "t", "from_fabric_address_id": "a"},
    "subscriber": {"id": "s", "fabric_addresses": [{"id": "a"}], "display_name": "d"},
}


DATETIME_HELPERS = ("datetime", "created_datetime", "last_message_datetime")


def exercise(kind: str, data: Any, *, datetimes: bool = False) -> Any:
    """Decode ``data``; on success touch every helper of the model. The model or ``None``.

    The ``*_datetime`` helpers are touched with ``datetimes=True``.
    """
    try:
        model = DECODERS[kind](data)
    except ResponseValidationError as exc:
        assert str(exc), "a ResponseValidationError with an empty message"
        return None
    assert isinstance(model, MODEL_OF[kind])
    repr(model)
    model.to_dict()
    model._repr_html_()
    for helper in ("address_id", "conversation_id") + (DATETIME_HELPERS if datetimes else ()):
        if hasattr(type(model), helper):
            value = getattr(model, helper)
            if helper in DATETIME_HELPERS:
                assert value is None or value.tzinfo is not None
    return model


def _finite(value: Any) -> bool:
    """No NaN anywhere (NaN != NaN makes equality meaningless, not the decoder wrong)."""
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ
@given(data=json_values)
def test_any_json_value(kind: str, data: Any) -> None:
    exercise(kind, data)


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ_SMALL
@given(data=wire_objects)
def test_wire_shaped_objects(kind: str, data: Any) -> None:
    exercise(kind, data)


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ
@given(data=st.data())
def test_valid_shape_with_one_wrong_type(kind: str, data: st.DataObject) -> None:
    base = dict(VALID[kind])
    key = data.draw(st.sampled_from(sorted(base)))
    base[key] = data.draw(wrong_type)
    exercise(kind, base)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_valid_shapes_decode(kind: str) -> None:
    assert exercise(kind, VALID[kind]) is not None


@FUZZ_SMALL
@given(data=wire_objects.filter(_finite))
def test_event_round_trip(data: Dict[str, Any]) -> None:
    event = exercise("event", data)
    if event is not None:
        again = models.decode_event(json.loads(json.dumps(event.to_dict())))
        assert again == event


# -- extreme inputs -------------------------------------------------------------------------

# D1 (fixed): to_dict() recursed without bound; D2 (fixed): the datetime helpers raised on
# out-of-range timestamps. The tests below guard both.


def _deepest_json() -> Any:
    """The most deeply nested ``metadata`` list that ``json.loads`` itself accepts."""
    depth = sys.getrecursionlimit() * 4
    while depth > 1:
        text = '{"id": "x", "group_id": "g", "metadata": ' + "[" * depth + "]" * depth + "}"
        try:
            return json.loads(text)
        except RecursionError:
            depth //= 2
    raise AssertionError("json.loads accepts no nesting at all?")


@pytest.mark.parametrize("kind", ["conversation", "message", "event"])
def test_deeply_nested_list_from_json(kind: str) -> None:
    # metadata must be an object: a list there is dropped, so nothing deep is kept
    exercise(kind, _deepest_json())


def _nested(depth: int, key: str = "details") -> Dict[str, Any]:
    inner: Any = 1
    for _ in range(depth):
        inner = {"a": inner}
    return {"id": "x", "group_id": "g", key: inner}


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_deeply_nested_object(kind: str) -> None:
    exercise(kind, _nested(5_000))


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_moderately_nested_object(kind: str) -> None:
    exercise(kind, _nested(200))


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_huge_payload(kind: str) -> None:
    big = "x" * (8 * 1024 * 1024)
    data = dict(VALID[kind])
    data.update({"text": big, "name": big, "metadata": {str(i): i for i in range(50_000)},
                 "fabric_address_ids": [str(i) for i in range(50_000)]})
    model = exercise(kind, data)
    assert model is not None


BAD_TIMESTAMPS = [1e300, -1e300, 2**80, -(2**80), float("inf"), float("-inf"), float("nan"),
                  "1e999", "nan", -62135596801, 253402300800000]


@pytest.mark.parametrize("kind", sorted(DECODERS))
@pytest.mark.parametrize("ts", BAD_TIMESTAMPS)
def test_out_of_range_timestamps_decode(kind: str, ts: Any) -> None:
    data = dict(VALID[kind])
    data.update({"ts": ts, "created_at": ts, "last_message_at": ts})
    exercise(kind, data)


@pytest.mark.parametrize("kind", ["conversation", "message", "event"])
@pytest.mark.parametrize("ts", BAD_TIMESTAMPS)
def test_out_of_range_timestamps_datetime_helpers(kind: str, ts: Any) -> None:
    data = dict(VALID[kind])
    data.update({"ts": ts, "created_at": ts, "last_message_at": ts})
    exercise(kind, data, datetimes=True)


@FUZZ
@given(ts=st.one_of(st.floats(min_value=-1e10, max_value=1e13), st.integers(0, 10**13)))
def test_datetime_helpers_in_range(ts: float) -> None:
    exercise("message", {"id": "m", "ts": ts}, datetimes=True)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_lone_surrogates_and_control_characters(kind: str) -> None:
    data = json.loads('{"id": "\\ud800x", "group_id": "\\udfff", "text": "\\u0000\\u001b[31m",'
                      ' "name": "\\ud83d", "metadata": {"\\ud800": "\\udc00"}}')
    model = exercise(kind, data)
    if model is not None:
        json.dumps(model.to_dict())
