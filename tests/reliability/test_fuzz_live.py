"""Fuzz a live listener through the emulator's ``send_raw``.

Random and malformed JSON-RPC frames (wrong field types, unknown methods, ids of every type,
payloads of every shape, huge strings) are pushed down a live, authenticated websocket. After
each batch a real message is sent: it must arrive, exactly once. Every few batches the link is
dropped first, so the message has to come back through resume + gap fill, after the junk.

Invalid UTF-8 and deeply nested frames are in ``test_hostile_ws.py`` (the emulator's
``send_raw`` sends text only).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, Iterator, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalwire_conversation import Client, ConversationMessageEvent
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import FUZZ_LIVE

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
                    st.text(max_size=12))
json_any = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                        max_leaves=12)
ids = st.one_of(st.none(), st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                st.booleans())
methods = st.one_of(st.sampled_from(["signalwire.event", "signalwire.ping", "signalwire.disconnect",
                                     "signalwire.connect", "signalwire.reauthenticate", "nope", ""]),
                    st.text(max_size=10), st.integers(), st.none())
event_types = st.one_of(st.sampled_from(["conversation.message", "conversation.message.updated",
                                         "signalwire.authorization.state", "subscriber.online"]),
                        st.text(max_size=10), st.integers(), st.none())
payload_keys = ["id", "group_id", "conversation_id", "text", "ts", "from_fabric_address_id", "user_id",
                "hidden", "details", "metadata", "type", "subtype", "kind", "authorization_state"]
payloads = st.one_of(json_any, st.dictionaries(st.sampled_from(payload_keys), json_any, max_size=8))
frames_obj = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), st.text(max_size=4), st.integers()),
        "id": ids,
        "method": methods,
        "params": st.one_of(json_any, st.fixed_dictionaries({}, optional={
            "event_type": event_types, "params": payloads, "is_author": json_any,
            "event_channel": json_any, "timestamp": json_any})),
        "result": json_any,
        "error": json_any,
    },
)
raw_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["", "{", "}", "[]", "null", "true", "1e999", '{"jsonrpc":', "\x00", '"\\ud800"',
                     '{"method": "signalwire.event", "params": {"params": {"id": 1}}}']),
    st.integers(1, 3).map(lambda n: json.dumps({"jsonrpc": "2.0", "method": "signalwire.event",
                                                "params": {"event_type": "conversation.message",
                                                           "params": {"text": "x" * (n * 400_000)}}})),
)
frames = st.one_of(frames_obj.map(lambda f: json.dumps(f)), raw_text)


class Live:
    def __init__(self, emu: Emulator, alice: Subscriber, bob: Subscriber, client: Client) -> None:
        self.emu, self.alice, self.bob, self.client = emu, alice, bob, client
        self.lock = threading.Lock()
        self.texts: List[str] = []
        self.errors: List[BaseException] = []
        self.n = 0
        self.junk = 0


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with Emulator(ping_interval=1.0) as emu:
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
        client = Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                        listener_options={"backoff_initial": 0.02, "backoff_max": 0.2})
        state = Live(emu, alice, bob, client)

        def on_message(event: ConversationMessageEvent) -> None:
            with state.lock:
                state.texts.append(event.text if isinstance(event.text, str) else repr(event.text))

        client._on_error = lambda exc, ev: state.errors.append(exc)
        sub = client.conversation.subscribe(on_message, timeout=10)
        try:
            yield state
        finally:
            sub.unsubscribe()
            client.close()


@FUZZ_LIVE
@given(batch=st.lists(frames, min_size=1, max_size=4), drop=st.integers(0, 5))
def test_listener_survives_junk_and_keeps_delivering(live: Live, batch: List[str], drop: int) -> None:
    live.n += 1
    for frame in batch:
        live.emu.send_raw(frame, live.alice)
        live.junk += 1
    if drop == 0:
        live.emu.drop_connections(live.alice)
    marker = f"ok-{live.n}"
    live.emu.send_message(live.bob, live.alice.address_id, marker)
    try:
        live.emu.wait_for(lambda: marker in live.texts, timeout=15)
    except TimeoutError:
        listener = live.client._listener
        raise AssertionError(
            f"{marker} never arrived after {batch!r}; state={listener.state} "
            f"fatal={listener._fatal!r} last_error={listener.last_error!r} stats={listener.stats}") from None
    assert live.client._listener._fatal is None


def test_after_fuzzing_each_marker_arrived_once(live: Live, report: Callable[[str], None]) -> None:
    markers = [t for t in live.texts if t.startswith("ok-")]
    assert len(markers) == len(set(markers)) == live.n, "each marker exactly once"
    assert not [e for e in live.errors if not isinstance(e, Exception)], live.errors
    stats = live.client._listener.stats
    report(f"{live.junk} junk frames in {live.n} batches sent to a live listener; {live.n} markers "
           f"delivered once each; listener alive; connects={stats['connects']} "
           f"gap_fills={stats['gap_fills']}")


def _unused(d: Dict[str, Any]) -> None:
    pass


# D12 (fixed upstream in 45e5baa): a future-stamped live event poisoned later gap fills. The
# bound is now the server's own clock (its pings' timestamps), never the client's.


@pytest.mark.parametrize("ts", [
    pytest.param(1e15, id="ms-in-year-33658"),
    pytest.param(4102444800.0, id="year-2100"),
    pytest.param(-5, id="negative"),
    pytest.param(0, id="zero"),
])
@pytest.mark.parametrize("offset", [0.0, -3600.0, 3600.0], ids=["clock-0", "server-1h-behind", "server-1h-ahead"])
def test_odd_timestamp_in_a_live_event_does_not_poison_gap_fill(ts: Any, offset: float) -> None:
    """A live event with a timestamp far in the future (or the past) is delivered; the next gap
    fill must still recover what was sent while the link was down."""
    with Emulator(ping_interval=0.2) as emu:
        emu.clock_offset = offset
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
        group = emu.group_id(bob, alice.address_id)
        got: List[str] = []
        with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                    listener_options={"backoff_initial": 0.3, "backoff_max": 0.3}) as client:
            client.conversation.subscribe(lambda e: got.append(e.text or ""), timeout=10)
            listener = client._listener
            assert listener is not None
            emu.wait_for(lambda: listener._server_clock is not None, timeout=10)  # a server ping
            frame = {"jsonrpc": "2.0", "id": "odd-1", "method": "signalwire.event",
                     "params": {"event_type": "conversation.message", "event_channel": "c",
                                "params": {"id": "odd-1", "group_id": group, "text": "odd", "ts": ts,
                                           "type": "message", "subtype": "chat",
                                           "from_fabric_address_id": bob.address_id}}}
            emu.send_raw(json.dumps(frame), alice)
            emu.wait_for(lambda: "odd" in got, timeout=10)
            emu.drop_connections(alice)
            emu.send_message(bob, alice.address_id, "while-down")  # stored; pushed to no one
            emu.wait_for(lambda: "while-down" in got, timeout=2.5,
                         message=f"the message sent while down was not recovered (ts={ts!r}); got {got}")
