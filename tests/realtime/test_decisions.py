"""Unit tests of the realtime decision functions: no sockets, no threads (except the queue's)."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from typing import Any, List, Optional, Tuple

import websocket

import pytest

from signalwire_conversation.errors import ValidationError
from signalwire_conversation.models import ConversationMessageEvent, decode_message
from signalwire_conversation.realtime import ConnectionState, Listener
from signalwire_conversation.realtime.backoff import Backoff
from signalwire_conversation.realtime.connection import (
    AUTH_REFUSAL_CODES,
    Connection,
    FrameKind,
    RawEvent,
    _CappedFrameBuffer,
    _CappedWebSocket,
    ack_frame,
    ack_text,
    classify_frame,
    mask_frame,
    connect_params,
    is_auth_refusal,
    parse_frame,
    ping_reply,
    token_expiry,
)
from signalwire_conversation.realtime.delivery import (
    Position,
    RecentIds,
    decode_cursor,
    encode_cursor,
    plan_recovery,
    position_of_newest,
    since_for,
    ts_seconds,
)
from signalwire_conversation.realtime.subscription import BoundedQueue, QueueClosed


def ev(id: Optional[str], ts: Optional[float], group: str = "g1") -> ConversationMessageEvent:
    return ConversationMessageEvent(id=id, ts=ts, conversation_id=group, text=f"m{id}")


# -- backoff -----------------------------------------------------------------------------------


class TestBackoff:
    def test_ceiling_grows_and_caps(self) -> None:
        b = Backoff(0.25, 4.0)
        assert [b.ceiling(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
        assert b.ceiling(10_000) == 4.0  # no overflow
        assert b.ceiling(-3) == 0.25

    def test_full_jitter_uses_the_one_random_method(self, monkeypatch: pytest.MonkeyPatch) -> None:
        b = Backoff(1.0, 30.0)
        seen: List[float] = []

        def fake(self: Backoff, upper: float) -> float:
            seen.append(upper)
            return upper / 2

        monkeypatch.setattr(Backoff, "_random", fake)
        assert b.delay(3) == 4.0
        assert seen == [8.0]

    def test_delays_stay_in_the_window(self) -> None:
        b = Backoff(0.5, 2.0)
        for attempt in range(8):
            for _ in range(50):
                assert 0.0 <= b.delay(attempt) <= b.ceiling(attempt)

    @pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, 0.5)])
    def test_bad_parameters(self, args: Any) -> None:
        with pytest.raises(ValueError):
            Backoff(*args)


# -- frames ------------------------------------------------------------------------------------


class TestFrames:
    @pytest.mark.parametrize(
        "frame, kind",
        [
            ({"jsonrpc": "2.0", "id": "1", "method": "signalwire.event", "params": {}}, FrameKind.EVENT),
            ({"jsonrpc": "2.0", "id": "1", "method": "signalwire.ping", "params": {}}, FrameKind.PING),
            ({"id": "1", "method": "signalwire.disconnect"}, FrameKind.DISCONNECT),
            ({"id": "1", "method": "something.else"}, FrameKind.REQUEST),
            ({"id": "1", "result": {}}, FrameKind.RESPONSE),
            ({"id": "1", "error": {"code": -32002}}, FrameKind.RESPONSE),
            ({"result": {}}, FrameKind.INVALID),
            ({"id": "1"}, FrameKind.INVALID),
            ({"method": 5}, FrameKind.INVALID),
            ({}, FrameKind.INVALID),
        ],
    )
    def test_classify(self, frame: Any, kind: FrameKind) -> None:
        assert classify_frame(frame) is kind

    @pytest.mark.parametrize("data", ["", "nope", "[1,2]", "42", b"\xff\xfe{", '{"a":', "null"])
    def test_parse_rejects_non_objects(self, data: Any) -> None:
        assert parse_frame(data) is None

    def test_parse_survives_deep_nesting(self) -> None:
        assert parse_frame("[" * 100_000 + "]" * 100_000) is None

    def test_parse_accepts_bytes_and_str(self) -> None:
        assert parse_frame(b'{"a": "\xc3\xa9"}') == {"a": "é"}
        assert parse_frame('{"a": 1}') == {"a": 1}

    def test_ack_and_ping_reply(self) -> None:
        assert ack_frame("e1") == {"jsonrpc": "2.0", "id": "e1", "result": {}}
        assert ping_reply("p1", {"timestamp": 12.5}) == {
            "jsonrpc": "2.0",
            "id": "p1",
            "result": {"timestamp": 12.5},
        }
        assert ping_reply("p2", None, now=7.0)["result"] == {"timestamp": 7.0}
        assert ping_reply("p3", {"timestamp": True}, now=8.0)["result"] == {"timestamp": 8.0}

    def test_connect_params_fresh_and_resume(self) -> None:
        fresh = connect_params("TOK")
        assert fresh["version"] == {"major": 4, "minor": 0, "revision": 0}
        assert fresh["event_acks"] is True
        assert fresh["authentication"] == {"jwt_token": "TOK"}
        assert "protocol" not in fresh and "authorization_state" not in fresh
        assert not any(v == [] for v in fresh.values())  # no empty arrays
        resume = connect_params("TOK", protocol="p", authorization_state="a")
        assert resume["protocol"] == "p" and resume["authorization_state"] == "a"
        # one without the other is never sent
        assert "protocol" not in connect_params("TOK", protocol="p")
        assert "authorization_state" not in connect_params("TOK", authorization_state="a")

    def test_auth_refusal_codes(self) -> None:
        for code in AUTH_REFUSAL_CODES:
            assert is_auth_refusal({"code": code, "message": "x"})
            assert is_auth_refusal({"code": str(code)})
        assert not is_auth_refusal({"code": -32000})
        assert not is_auth_refusal({"code": "x"})
        assert not is_auth_refusal(None)

    def test_token_expiry(self) -> None:
        result = {"authorization": {"fabric_subscriber": {"expires_at": 1_700_000_000}}}
        assert token_expiry(result) == 1_700_000_000.0
        assert token_expiry({"authorization": {"fabric_subscriber": {"expires_at": 1_700_000_000_000}}}) == 1_700_000_000.0
        assert token_expiry({"authorization": {}}) is None
        assert token_expiry({"authorization": {"fabric_subscriber": {"expires_at": "soon"}}}) is None
        assert token_expiry(None) is None


class _FakeWS:
    def __init__(self) -> None:
        self.sent: List[Any] = []

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


class TestConnectionFrameHandling:
    """handle_text() without a socket: what is answered and what is handed on."""

    def make(self) -> "tuple[Connection, _FakeWS, List[RawEvent], List[str]]":
        ws = _FakeWS()
        events: List[RawEvent] = []
        states: List[str] = []
        conn = Connection(ws, url="ws://x", on_events=events.extend, on_authorization_state=states.append)
        return conn, ws, events, states

    def test_event_is_acked_first_and_handed_on_undecoded(self) -> None:
        conn, ws, events, _ = self.make()
        frame = {
            "jsonrpc": "2.0",
            "id": "ev-1",
            "method": "signalwire.event",
            "params": {
                "event_type": "conversation.message",
                "is_author": True,
                "params": {"id": "m1", "group_id": "g", "ts": 1.5, "text": "hi", "hidden": "false"},
            },
        }
        conn.handle_text(json.dumps(frame))
        assert ws.sent == [{"jsonrpc": "2.0", "id": "ev-1", "result": {}}]
        # decoded later, on the dispatcher thread (so that decoding never delays an ack)
        assert events == [(frame["params"]["params"], True)]  # type: ignore[index]

    def test_is_author_that_is_not_a_boolean_is_dropped(self) -> None:
        conn, _, events, _ = self.make()
        params = {"event_type": "conversation.message", "is_author": "yes", "params": {"id": "m"}}
        conn.handle_text(json.dumps({"id": "e", "method": "signalwire.event", "params": params}))
        assert events == [({"id": "m"}, None)]

    def test_ack_text_is_the_encoded_ack_frame(self) -> None:
        for frame_id in ["ev-1", "é\"\\\n\u2028", 7, 1.5, ["x"]]:
            assert json.loads(ack_text(frame_id)) == ack_frame(frame_id)
            assert ack_text(frame_id) == json.dumps(ack_frame(frame_id), separators=(",", ":"))

    def test_every_event_is_acked_even_unknown_or_broken(self) -> None:
        conn, ws, events, states = self.make()
        for i, params in enumerate(
            [
                {"event_type": "other.thing", "params": {}},
                {"event_type": "conversation.message", "params": "not an object"},
                {"event_type": "conversation.message"},
                "junk",
                {"event_type": "signalwire.authorization.state", "params": {"authorization_state": "AS"}},
            ]
        ):
            conn.handle_text(json.dumps({"id": f"e{i}", "method": "signalwire.event", "params": params}))
        assert [f["id"] for f in ws.sent] == ["e0", "e1", "e2", "e3", "e4"]
        assert events == []
        assert states == ["AS"]

    def test_ping_disconnect_unknown_and_junk(self) -> None:
        conn, ws, events, _ = self.make()
        conn.handle_text(json.dumps({"id": "p", "method": "signalwire.ping", "params": {"timestamp": 3.25}}))
        conn.handle_text(json.dumps({"id": "d", "method": "signalwire.disconnect", "params": {}}))
        conn.handle_text(json.dumps({"id": "u", "method": "weird.method"}))
        conn.handle_text("{{{ not json")
        conn.handle_text(b"\xff\xff")
        conn.handle_text("[]")
        assert ws.sent[0] == {"jsonrpc": "2.0", "id": "p", "result": {"timestamp": 3.25}}
        assert ws.sent[1] == {"jsonrpc": "2.0", "id": "d", "result": {}}
        assert ws.sent[2]["error"]["code"] == -32601
        assert len(ws.sent) == 3
        assert conn.frames_skipped == 3

    def test_responses_complete_pending_requests(self) -> None:
        conn, ws, _, _ = self.make()
        pending = conn.request("signalwire.reauthenticate", {"a": 1})
        request = ws.sent[-1]
        assert request["method"] == "signalwire.reauthenticate" and isinstance(request["id"], str)
        conn.handle_text(json.dumps({"jsonrpc": "2.0", "id": "other", "result": {}}))
        assert not pending.done.is_set()
        conn.handle_text(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"ok": 1}}))
        assert pending.done.is_set() and pending.result == {"ok": 1} and pending.error is None


class TestFraming:
    """The fast paths: outgoing masked frames, the read-ahead buffer, batched acks."""

    def test_mask_frame_is_what_websocket_client_parses(self) -> None:
        for size in [0, 1, 5, 125, 126, 127, 4000, 65535, 65536, 70000]:
            payload = os.urandom(size)
            key = os.urandom(4)
            data = mask_frame(payload, key, opcode=0x2)
            chunks = [data]
            buf = websocket.frame_buffer(lambda n: chunks.pop(0) if chunks else b"", True)
            frame = buf.recv_frame()
            assert data[1] & 0x80 and data[0] == 0x82  # final, binary, masked
            assert frame.fin == 1 and frame.opcode == 0x2
            assert frame.data == payload, size

    def _reader(self, data: bytes, max_bytes: int = 1 << 20) -> Tuple[_CappedFrameBuffer, List[int]]:
        reads: List[int] = []
        chunks = [data]

        def recv(n: int) -> bytes:
            reads.append(n)
            if not chunks:
                raise websocket.WebSocketTimeoutException("no more")
            out = chunks[0][:n]
            chunks[0] = chunks[0][n:]
            if not chunks[0]:
                chunks.pop(0)
            return out

        buf = _CappedFrameBuffer(recv, True)
        buf.max_bytes = max_bytes
        return buf, reads

    @staticmethod
    def server_frame(payload: bytes, first: int = 0x81) -> bytes:
        n = len(payload)
        head = bytes([first, n]) if n < 126 else bytes([first, 126]) + n.to_bytes(2, "big")
        return head + payload

    def test_read_ahead_serves_several_frames_from_one_read(self) -> None:
        frames = [b"a" * 10, b"b" * 300, b"c" * 125]
        buf, reads = self._reader(b"".join(self.server_frame(f) for f in frames))
        assert buf.take_text() is None  # nothing read yet: the fast path never reads
        first = buf.recv_frame()  # websocket-client's reader, over the buffer
        assert first.data == frames[0] and len(reads) == 1
        assert buf.take_text() == frames[1] and buf.take_text() == frames[2]
        assert buf.take_text() is None and len(reads) == 1

    def test_fast_path_leaves_anything_unusual_to_websocket_client(self) -> None:
        ping = bytes([0x89, 0])
        fragment = self.server_frame(b"part", first=0x01)
        rsv = self.server_frame(b"x", first=0xC1)
        for data in [ping, fragment, rsv, self.server_frame(b"x" * 300)[:100]]:
            buf, _ = self._reader(data)
            try:
                buf.recv_strict(1)  # fill the buffer, then put the byte back
            except websocket.WebSocketTimeoutException:
                pass
            buf._pos = 0
            assert buf.take_text() is None

    def test_partial_frame_survives_a_timeout(self) -> None:
        frame = self.server_frame(b"z" * 1000)
        chunks = [frame[:3], frame[3:500]]
        buf = _CappedFrameBuffer(lambda n: chunks.pop(0) if chunks else (_ for _ in ()).throw(
            websocket.WebSocketTimeoutException("t")), True)
        with pytest.raises(websocket.WebSocketTimeoutException):
            buf.recv_frame()
        chunks.append(frame[500:])
        assert buf.recv_frame().data == b"z" * 1000

    def test_cap_holds_on_the_fast_path(self) -> None:
        buf, _ = self._reader(self.server_frame(b"y" * 200) * 2, max_bytes=100)
        with pytest.raises(websocket.WebSocketPayloadException):
            buf.recv_frame()

    def test_batch_acks_in_one_write_before_handing_on(self) -> None:
        """A real socket pair: events read together are acked with one write, then handed on."""
        client_sock, server_sock = socket.socketpair()
        try:
            ws = _CappedWebSocket(skip_utf8_validation=True, enable_multithread=True)
            ws.sock = client_sock
            ws.connected = True
            order: List[str] = []
            handed: List[RawEvent] = []

            def on_events(events: List[RawEvent]) -> None:
                order.append("handed")
                # every ack is already on the wire
                server_sock.settimeout(2)
                got = b""
                while got.count(b"\x81") < 3 and len(got) < 3 * 60:
                    got += server_sock.recv(4096)
                order.append("acks-read")
                handed.extend(events)

            conn = Connection(ws, url="ws://x", on_events=on_events, on_authorization_state=lambda s: None)
            frames = [
                json.dumps({"jsonrpc": "2.0", "id": f"e{i}", "method": "signalwire.event",
                            "params": {"event_type": "conversation.message", "params": {"id": f"m{i}"}}})
                for i in range(3)
            ]
            server_sock.sendall(b"".join(self.server_frame(f.encode()) for f in frames))
            deadline = 50
            while len(handed) < 3 and deadline:
                deadline -= 1
                conn.poll(1.0)
            assert [e[0]["id"] for e in handed] == ["m0", "m1", "m2"]
            assert order == ["handed", "acks-read"]
            assert conn.events_received == 3
        finally:
            client_sock.close()
            server_sock.close()


# -- delivery decisions ------------------------------------------------------------------------


class TestDelivery:
    def test_ts_seconds(self) -> None:
        assert ts_seconds(1708192187.5) == 1708192187.5
        assert ts_seconds(1708192187500) == 1708192187.5
        assert ts_seconds(None) is None and ts_seconds(True) is None and ts_seconds("1") is None

    def test_recent_ids_bounded(self) -> None:
        r = RecentIds(3)
        assert r.add("a") and r.add("b") and r.add("c")
        assert not r.add("a")
        assert r.add("d")  # evicts "a"
        assert "a" not in r and len(r) == 3
        assert r.add("a")

    def test_recent_ids_keep_the_window_whatever_the_rate(self) -> None:
        # a burst of 50 inside a 2 s window with maxlen 3: every id of the window is kept (a gap
        # fill re-reads the window), and only ids older than the window are let go
        r = RecentIds(3, window=2.0)
        for i in range(50):
            assert r.add(f"m{i}", 100.0 + i * 0.01)
        assert len(r) == 50 and all(not r.add(f"m{i}", 100.0 + i * 0.01) for i in range(50))
        assert r.add("late", 110.0)  # the window moved on: the burst is older than it
        assert len(r) == 3 and "m0" not in r and "m49" in r and "late" in r

    def test_position_orders_by_server_ts_then_ties(self) -> None:
        p = Position()
        assert p.empty and p.precedes(0.0, "a")
        p.advance(10.0, "a")
        assert not p.precedes(9.0, "x") and not p.precedes(10.0, "a")
        assert p.precedes(10.0, "b") and p.precedes(10.5, "a")
        p.advance(10.0, "b")
        assert not p.precedes(10.0, "b")
        p.advance(5.0, "old")  # never moves back
        assert p == Position(10.0, {"a", "b"})
        p.advance(11.0, "c")
        assert p == Position(11.0, {"c"})

    def test_cursor_round_trip_and_refusals(self) -> None:
        for ts in (0.0, 1708192187.6779745, 1.7e9 + 1e-6, 1708192187500 / 1000.0):
            cursor = encode_cursor(ts, "id:with:colons")
            assert decode_cursor(cursor) == (ts, "id:with:colons")
        for bad in ("", "x", "2:1.0:a", "1:nan:a", "1:-5:a", "1:1.0:", "1:abc:a", 5, None):
            with pytest.raises(ValueError):
                decode_cursor(bad)

    def test_position_of_newest(self) -> None:
        assert position_of_newest([]).empty
        newest = position_of_newest([ev("c", 12.0), ev("b", 12.0), ev("a", 11.0), ev(None, 99.0), ev("x", None)])
        assert newest == Position(12.0, {"b", "c"})

    def test_since_for_uses_the_earliest_position(self) -> None:
        assert since_for([Position(100.0, {"a"}), Position(50.0, {"b"})], 2.0) == 48.0
        assert since_for([Position(100.0, {"a"}), Position()], 2.0) == 0.0
        assert since_for([], 2.0) == 0.0

    def test_plan_orders_filters_and_dedups(self) -> None:
        fetched = [  # newest first, as the server lists them
            ev("c", 12.0),
            ev("b", 10.0),  # same ts as "a", listed first: stored after it
            ev("a", 10.0),
            ev("a", 10.0),  # twice in the batch
            ev("at", 9.0),  # at the position: not after it
            ev("early", 5.0),
            ev("nots", None),  # cannot be placed
            ev(None, 13.0),  # cannot be de-duplicated
        ]
        plan = plan_recovery(fetched, after=Position(9.0, {"at"}))
        assert [(e.id, ts) for ts, e in plan] == [("a", 10.0), ("b", 10.0), ("c", 12.0)]

    def test_plan_with_an_anchor_leaves_out_older_ties(self) -> None:
        fetched = [ev("z", 11.0), ev("y", 10.0), ev("anchor", 10.0), ev("older", 10.0)]
        plan = plan_recovery(fetched, after=Position(10.0, {"anchor"}), anchor="anchor")
        assert [e.id for _, e in plan] == ["y", "z"]

    def test_plan_accepts_stored_messages(self) -> None:
        msg = decode_message({"id": "m", "group_id": "g", "ts": 20.0, "text": "x"})
        plan = plan_recovery([msg], after=Position())
        assert isinstance(plan[0][1], ConversationMessageEvent) and plan[0][1].recovered


# -- the bounded queue -------------------------------------------------------------------------


class TestBoundedQueue:
    def test_offer_force_get(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(2)
        assert q.offer(1) and q.offer(2) and not q.offer(3)
        q.force(4)
        assert [q.get(0), q.get(0), q.get(0)] == [1, 2, 4]
        with pytest.raises(queue.Empty):
            q.get(0.01)

    def test_close_wakes_a_blocked_get_and_put(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(1)
        q.offer(1)
        results: List[str] = []

        def putter() -> None:
            results.append("put:" + str(q.put(2)))

        t = threading.Thread(target=putter)
        t.start()
        q.close(discard=True)
        t.join(2)
        assert results == ["put:False"]
        with pytest.raises(QueueClosed):
            q.get()

    def test_batches(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(4)
        assert q.offer_many([1, 2, 3]) == 3
        assert q.offer_many([4, 5, 6]) == 1  # as many as fit, in order
        assert q.offer_many([7]) == 0
        assert q.get_many(3) == [1, 2, 3]
        assert q.get_many(10) == [4]
        with pytest.raises(queue.Empty):
            q.get_many(10, timeout=0.01)
        q.close(discard=False)
        assert q.offer_many([8, 9]) == 2  # swallowed
        with pytest.raises(QueueClosed):
            q.get_many(1)

    def test_a_waiting_consumer_is_woken_by_a_batch(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(10)
        got: List[List[int]] = []
        t = threading.Thread(target=lambda: got.append(q.get_many(10, timeout=5)))
        t.start()
        deadline = threading.Event()
        while q._getters == 0 and not deadline.wait(0.001):
            pass
        q.offer_many([1, 2])
        t.join(5)
        assert got == [[1, 2]]

    def test_a_full_put_is_woken_by_a_batch_get(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(1)
        q.offer(1)
        t = threading.Thread(target=q.put, args=(2,))
        t.start()
        while q._putters == 0:
            threading.Event().wait(0.001)
        assert q.get_many(5) == [1]
        t.join(5)
        assert not t.is_alive() and q.get(0) == 2

    def test_close_without_discard_drains(self) -> None:
        q: BoundedQueue[int] = BoundedQueue(5)
        q.offer(1)
        q.close(discard=False)
        assert q.get() == 1
        with pytest.raises(QueueClosed):
            q.get(1.0)


# -- construction ------------------------------------------------------------------------------


def test_listener_starts_no_thread_and_validates(token_provider: Any) -> None:
    before = set(threading.enumerate())
    listener = Listener(tokens=token_provider, relay_url="ws://127.0.0.1:9", fetch_missed=lambda s: [])
    assert set(threading.enumerate()) == before
    assert listener.state is ConnectionState.IDLE
    listener.close()
    listener.close()
    assert listener.state is ConnectionState.CLOSED
    with pytest.raises(ValidationError):
        Listener(tokens=token_provider, relay_url="http://x", fetch_missed=lambda s: [])
    with pytest.raises(ValidationError):
        Listener(tokens=token_provider, relay_url="ws://x", fetch_missed=lambda s: [], ping_timeout=0)
    with pytest.raises(ValidationError):
        Listener(tokens=token_provider, relay_url="ws://x", fetch_missed=lambda s: [], queue_size=0)
