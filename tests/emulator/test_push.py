"""What ``send_message(s)`` and ``send_raw`` put on the wire: exact frames, ids, bulk order."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Callable, Dict

import pytest
import websocket

from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import Relay, connected

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRICKY = ["plain", 'quotes " and \\ backslash', "tab\tnew\nline\x00\x1f", "ünïcødé 日本 🎉", "\u2028\u2029", ""]


def _expected_frame(raw: str) -> str:
    """``raw`` re-encoded by json.dumps in the documented key order: equal iff same bytes."""
    frame = json.loads(raw)
    p = frame["params"]
    m = p["params"]
    keys = ["id", "group_id", "from_fabric_address_id", "ts", "details", "type", "subtype", "kind", "text",
            "metadata", "hidden", "conversation_name", "user_name"]
    assert list(m) == keys
    ordered: Dict[str, Any] = {
        "jsonrpc": "2.0", "id": frame["id"], "method": "signalwire.event",
        "params": {k: p[k] for k in ("event_type", "event_channel", "project_id", "node_id", "timestamp",
                                     "is_author")} | {"params": {k: m[k] for k in keys}},
    }
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def test_event_frames_are_exactly_json(emu: Emulator, alice: Subscriber, bob: Subscriber,
                                       relay: Callable[..., Relay]) -> None:
    a, b = connected(relay, alice), connected(relay, bob)
    sent = [emu.send_message(bob, alice.address_id, t, metadata={"k": "v ü"}, details={"n": [1, None]})
            for t in TRICKY[:2]]
    sent += emu.send_messages(bob, alice.address_id, TRICKY)
    sent.append(emu.send_message(bob, alice.address_id, None, subtype="log", kind="call_started", ts=1.5e9))
    for conn, author in ((a, False), (b, True)):
        for message in sent:
            frame = conn.event()
            raw = conn.raw[len(conn.frames) - 1]
            assert raw == _expected_frame(raw)
            params = frame["params"]
            assert params["is_author"] is author and params["timestamp"] == repr(message["ts"])
            payload = dict(params["params"])
            assert {k: payload.pop(k) for k in ("hidden", "conversation_name", "user_name")}["hidden"] is False
            assert payload == message
    event_ids = [f["id"] for f in a.frames + b.frames if f.get("method") == "signalwire.event"]
    assert len(set(event_ids)) == len(event_ids) and all(UUID.match(i) for i in event_ids)
    assert all(UUID.match(m["id"]) for m in sent) and len({m["id"] for m in sent}) == len(sent)


def test_ids_differ_between_emulators() -> None:
    with Emulator(ping_interval=None) as one, Emulator(ping_interval=None) as two:
        ids = []
        for emu in (one, two):
            x, y = emu.add_subscriber("x"), emu.add_subscriber("y")
            ids.append(emu.send_message(x, y.address_id, "hi")["id"])
        assert ids[0] != ids[1]


def test_bulk_push_keeps_order_across_chunks_and_records_acks(emu: Emulator, alice: Subscriber,
                                                              bob: Subscriber, relay: Callable[..., Relay]) -> None:
    a = connected(relay, alice)
    texts = [f"m{i}" for i in range(1300)]  # more than two chunks
    stored = emu.send_messages(bob, alice.address_id, texts)
    assert [m["text"] for m in stored] == texts
    got = [a.event()["params"]["params"]["text"] for _ in texts]
    assert got == texts
    emu.wait_for(lambda: not emu.unacked_events(alice), message=f"{len(emu.unacked_events(alice))} unacked")
    assert emu.connections[0].events_sent == len(texts) + 1  # + the authorization.state event


def test_send_raw_bytes_go_out_as_is(emu: Emulator, alice: Subscriber) -> None:
    ws = websocket.create_connection(emu.relay_url, timeout=5, skip_utf8_validation=True)
    try:
        emu.wait_for(lambda: len(emu.connections) == 1)
        bad = b'{"jsonrpc":"2.0","x":"\xff\xfe\xc3("}'
        assert emu.send_raw(bad) == 1
        assert emu.send_raw("ünï") == 1
        assert emu.send_raw(b"\x00\x01\xffbin", binary=True) == 1
        assert emu.send_raw("txt as binary", binary=True) == 1
        big = b"\xff" * 70000  # the 64-bit length form
        assert emu.send_raw(big) == 1
        frames = [ws.recv_data() for _ in range(5)]
        assert frames == [
            (websocket.ABNF.OPCODE_TEXT, bad),
            (websocket.ABNF.OPCODE_TEXT, "ünï".encode()),
            (websocket.ABNF.OPCODE_BINARY, b"\x00\x01\xffbin"),
            (websocket.ABNF.OPCODE_BINARY, b"txt as binary"),
            (websocket.ABNF.OPCODE_TEXT, big),
        ]
        with pytest.raises(TypeError):
            emu.send_raw(123)  # type: ignore[arg-type]
    finally:
        ws.close()


def test_invalid_utf8_text_frame_is_a_protocol_error_for_a_strict_client(emu: Emulator) -> None:
    ws = websocket.create_connection(emu.relay_url, timeout=5)  # websocket-client validates UTF-8
    try:
        emu.wait_for(lambda: len(emu.connections) == 1)
        emu.send_raw(b"\xff")
        with pytest.raises(websocket.WebSocketPayloadException):  # a strict client refuses it
            ws.recv()
    finally:
        ws.close()


def test_wait_connected(emu: Emulator, alice: Subscriber, bob: Subscriber, relay: Callable[..., Relay]) -> None:
    with pytest.raises(TimeoutError, match="alice"):
        emu.wait_connected(alice, timeout=0.1)
    r = relay()  # open but not authenticated: not counted
    emu.wait_for(lambda: len(emu.connections) == 1)
    with pytest.raises(TimeoutError):
        emu.wait_connected("alice", timeout=0.1)

    def connect_later() -> None:
        r.connect(alice.token)

    t = threading.Thread(target=connect_later)
    t.start()
    infos = emu.wait_connected(alice, timeout=5)
    t.join(5)
    assert [i.subscriber for i in infos] == [alice] and infos[0].authenticated
    emu.send_message(bob, alice.address_id, "after wait_connected")
    assert r.event()["params"]["params"]["text"] == "after wait_connected"
    connected(relay, alice)
    assert len(emu.wait_connected(alice.address_id, count=2)) == 2


def test_wait_for_is_not_cut_short_by_a_flood_of_changes(emu: Emulator) -> None:
    stop = threading.Event()

    def flood() -> None:
        for _ in range(2_000_000):  # bounded; far more notifications than the old turn budget
            if stop.is_set():
                return
            emu._store.notify()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        started = time.monotonic()
        emu.wait_for(lambda: time.monotonic() - started > 0.6, timeout=1.0)
    finally:
        stop.set()
        t.join(5)
