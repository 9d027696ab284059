"""The paging fast paths decide exactly as the per-item paths: page decoding, link verdicts.

``decode_messages`` (a whole page, with a decoder generated per key order) must equal
``[decode_message(item) ...]`` for every payload; the transport's per-origin cache of
:func:`link_allowed` verdicts must refuse exactly what the function refuses.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Dict, List

import attrs
import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from signalwire_conversation import Client, ResponseValidationError
from signalwire_conversation import models
from signalwire_conversation.config import TokenProvider
from signalwire_conversation.transport import Transport, link_allowed
from signalwire_conversation.models import decode_message, decode_messages

from .helpers import BASE, TOKEN, message

WIRE = {
    "id": "m1", "group_id": "g", "from_fabric_address_id": "u", "ts": 1700000000.5, "details": {},
    "type": "message", "subtype": "chat", "kind": None, "text": "hi", "metadata": {},
}


def same(items: List[Any]) -> None:
    fast = decode_messages(items)
    slow = [decode_message(item) for item in items]
    assert fast == slow
    assert [m.extra for m in fast] == [m.extra for m in slow]
    assert [type(m) for m in fast] == [type(m) for m in slow]


@pytest.mark.parametrize("payload", [
    WIRE,
    {k: v for k, v in WIRE.items() if k not in ("details", "metadata", "kind")},
    dict(WIRE, details=None, metadata=None),
    {"id": "m", "conversation_id": "c", "user_id": "u", "ts": 5},  # the older wire
    {"id": "m", "conversation_id": "c", "from_address_id": "a"},
    {"id": "m", "conversation_id": "c", "group_id": "g", "user_id": "u"},  # both names: extra keeps one
    {"id": "m", "conversation_id": None, "group_id": "g", "user_id": "u"},
    {"id": "m", "group_id": None, "from_fabric_address_id": "u"},  # a None id goes to extra
    {"id": "m", "group_id": "g", "from_fabric_address_id": None, "from_address_id": "a"},
    dict(WIRE, extra={"x": 1}),  # a key named "extra"
    dict(WIRE, unknown=[1, 2]),  # unknown keys are kept in extra
    dict(WIRE, ts="1700000000.5"),  # coercions: the converter's path
    dict(WIRE, ts=True),
    dict(WIRE, id=5),
    dict(WIRE, details=[1]),
    dict(WIRE, metadata="x"),
    dict(WIRE, text=None, type=None, subtype=None),
    {"group_id": "g", "from_fabric_address_id": "u"},
    {},
])
def test_decode_messages_equals_decode_message(payload: Dict[str, Any]) -> None:
    same([payload])
    same([payload, WIRE, payload, dict(payload), WIRE])  # a shape change in the middle of a page
    keys = list(payload)
    random.Random(len(keys)).shuffle(keys)
    same([{k: payload[k] for k in keys}, payload])  # another key order of the same keys


def test_decode_messages_bad_items_raise_as_decode_message_does() -> None:
    for bad in (None, 5, "x", [WIRE]):
        with pytest.raises(ResponseValidationError):
            decode_message(bad)
        with pytest.raises(ResponseValidationError):
            decode_messages([WIRE, bad])
    assert decode_messages([]) == []


def test_shape_cache_is_bounded() -> None:
    names = ["id", "ts", "text", "kind", "type", "subtype", "details"]
    before = len(models._message_shapes)
    items = []
    for order in itertools.islice(itertools.permutations(names), 200):
        item = {"group_id": "g", "from_fabric_address_id": "u"}
        item.update({k: WIRE[k] for k in order})
        items.append(item)
    same(items)
    assert len(models._message_shapes) <= models._SHAPE_CACHE_MAX
    assert len(models._message_shapes) >= min(before + 1, models._SHAPE_CACHE_MAX)


_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.lists(st.integers(), max_size=2),
)
_keys = st.sampled_from(sorted(
    {a.name for a in attrs.fields(models.ConversationMessage)}
    | {alias for aliases in models._ALIASES.values() for alias in aliases}
    | {"other", "hidden"}
))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.dictionaries(_keys, _values, max_size=12), max_size=6))
def test_decode_messages_equals_decode_message_for_any_payloads(items: List[Dict[str, Any]]) -> None:
    try:
        slow = [decode_message(item) for item in items]
    except ResponseValidationError:
        with pytest.raises(ResponseValidationError):
            decode_messages(items)
        return
    fast = decode_messages(items)
    # compared through repr: a NaN timestamp equals itself there, not under ==
    assert [repr(m) for m in fast] == [repr(m) for m in slow]
    assert [repr(m.extra) for m in fast] == [repr(m.extra) for m in slow]
    assert [type(m) for m in fast] == [type(m) for m in slow]


# -- link verdicts, cached per origin ------------------------------------------------------------


@pytest.mark.parametrize("base", [
    "https://fabric.signalwire.com", "http://127.0.0.1:8080", "https://example.com", "https://[::1]:9000",
])
def test_cached_link_verdicts_match_link_allowed(base: str) -> None:
    transport = Transport(base_url=base, tokens=TokenProvider(TOKEN))
    links = [
        "https://fabric.signalwire.com/api/x?a=1", "https://space.signalwire.com/api/x",
        "http://space.signalwire.com/api/x", "https://space.signalwire.com:8443/api/x",
        "https://signalwire.com.evil.io/api/x", "http://127.0.0.1:8080/api/x?page_token=1",
        "http://127.0.0.1:8081/api/x", "https://user@space.signalwire.com/api/x",
        "https://example.com/api/x", "https://[::1]:9000/api/x", "//space.signalwire.com/api/x",
    ]
    for _ in range(3):  # the first round fills the cache, the later ones read it
        for link in links:
            absolute = link if not link.startswith("//") else base.split(":")[0] + ":" + link
            if link_allowed(transport.base_url, absolute):
                assert transport.url_for(link) == absolute
            else:
                with pytest.raises(ResponseValidationError):
                    transport.url_for(link)
    assert len(transport._link_verdicts) <= 32
    transport.close()


def test_link_cache_is_bounded() -> None:
    transport = Transport(base_url="https://fabric.signalwire.com", tokens=TokenProvider(TOKEN))
    for i in range(100):
        with pytest.raises(ResponseValidationError):
            transport.url_for(f"https://evil{i}.example/api/x")
        assert transport.url_for(f"https://space{i}.signalwire.com/api/x").endswith("/api/x")
    assert len(transport._link_verdicts) <= 32
    with pytest.raises(ResponseValidationError):
        transport.url_for("https://evil0.example/api/x")  # still refused once the cache is full
    transport.close()


def test_a_page_of_mixed_items_decodes_like_one_by_one(client: Client, rsps: responses.RequestsMock) -> None:
    items = [message(1, 30), dict(message(2, 29), extra_key=1), message(3, 28), {"id": "x", "ts": "27"}]
    rsps.add("GET", f"{BASE}/api/fabric/messages", json={"data": items, "links": {}})
    got = list(client.conversation.get_messages())
    assert got == [decode_message(item) for item in items]
    assert got[1].extra == {"extra_key": 1}


def test_a_payload_with_very_many_keys_goes_to_the_converter() -> None:
    wide = dict(WIRE, **{f"k{i}": i for i in range(models._SHAPE_KEYS_MAX)})
    before = len(models._message_shapes)
    (message,) = decode_messages([wide])
    assert message == decode_message(wide) == models._message_hook(wide)
    assert message.extra == {f"k{i}": i for i in range(models._SHAPE_KEYS_MAX)}
    assert tuple(wide) not in models._message_shapes  # no decoder generated for it
    assert len(models._message_shapes) == before
