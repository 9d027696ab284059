"""The append script (lease fence, seen-id de-duplication, MAXLEN ~) and the checkpoint."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from signalwire_conversation.fanout import Fenced, StreamWriter
from signalwire_conversation.fanout.stream import dedup_id
from signalwire_conversation.models import ConversationMessageEvent, decode_event

pytestmark = pytest.mark.redis

STREAM = "signalwire:conversation:test"


def event(i: int, *, conversation: str = "g1", mid: Optional[str] = "auto", ts: Optional[float] = None) -> ConversationMessageEvent:
    return ConversationMessageEvent(
        id=f"m{i}" if mid == "auto" else mid,
        conversation_id=conversation,
        user_id="u1",
        ts=1_700_000_000.0 + i if ts is None else ts,
        type="message",
        subtype="chat",
        text=f"hello {i}",
        user_name="Alice",
    )


@pytest.fixture
def writer(r: Any) -> StreamWriter:
    r.set(f"{STREAM}:lease", "me", px=60_000)
    return StreamWriter(r, STREAM, token="me", maxlen=1000, seen_ttl=60)


def entries(r: Any) -> list:
    return r.xrange(STREAM)


def test_entry_fields_and_round_trip(r: Any, writer: StreamWriter) -> None:
    e = event(1)
    [entry_id] = writer.append([e])
    assert entry_id is not None
    [(eid, fields)] = entries(r)
    assert eid == entry_id
    assert fields["id"] == "m1"
    assert fields["conversation_id"] == "g1"
    assert fields["subtype"] == "chat"
    assert fields["relay"] == "me"
    assert float(fields["ts"]) == e.ts
    assert decode_event(json.loads(fields["event"])) == e


def test_repeats_are_dropped_atomically(r: Any, writer: StreamWriter) -> None:
    first = writer.append([event(1), event(2)])
    assert all(first)
    again = writer.append([event(2), event(3), event(1), event(3)])
    assert again[0] is None and again[2] is None and again[3] is None
    assert again[1] is not None
    assert [f["id"] for _, f in entries(r)] == ["m1", "m2", "m3"]
    assert r.get(f"{STREAM}:seen:m3") == again[1]
    assert 0 < r.pttl(f"{STREAM}:seen:m3") <= 60_000


def test_a_writer_without_the_lease_appends_nothing(r: Any, writer: StreamWriter) -> None:
    writer.append([event(1)])
    r.set(f"{STREAM}:lease", "somebody-else", px=60_000)
    with pytest.raises(Fenced):
        writer.append([event(2), event(3)])
    r.delete(f"{STREAM}:lease")
    with pytest.raises(Fenced):
        writer.append([event(4)])
    assert [f["id"] for _, f in entries(r)] == ["m1"]
    assert r.exists(f"{STREAM}:seen:m2") == 0
    assert writer.checkpoint().message_id == "m1"


def test_two_writers_overlapping_append_each_message_once(r: Any) -> None:
    r.set(f"{STREAM}:lease", "a", px=60_000)
    a = StreamWriter(r, STREAM, token="a", seen_ttl=60)
    b = StreamWriter(r, STREAM, token="b", seen_ttl=60)
    a.append([event(i) for i in range(5)])
    r.set(f"{STREAM}:lease", "b", px=60_000)  # b took over and gap-fills from m3
    b.append([event(i) for i in range(3, 8)])
    with pytest.raises(Fenced):
        a.append([event(8)])
    ids = [f["id"] for _, f in entries(r)]
    assert ids == [f"m{i}" for i in range(8)]


def test_checkpoint_tracks_newest_appended(r: Any, writer: StreamWriter) -> None:
    assert writer.checkpoint() is None
    ids = writer.append([event(1), event(2)])
    cp = writer.checkpoint()
    assert cp is not None
    assert (cp.message_id, cp.entry_id, cp.ts) == ("m2", ids[1], 1_700_000_002.0)
    # An older message appended later (another conversation, late) does not move it back.
    writer.append([event(0, mid="late", ts=1_699_999_999.0)])
    assert writer.checkpoint().message_id == "m2"
    # A repeat does not move it either.
    writer.append([event(2)])
    assert writer.checkpoint().entry_id == ids[1]


def test_fractional_timestamps_keep_their_precision(r: Any, writer: StreamWriter) -> None:
    writer.append([event(1, ts=1708192187.6779745)])
    cp = writer.checkpoint()
    assert cp.ts == 1708192187.6779745


def test_init_checkpoint_only_once_and_fenced(r: Any, writer: StreamWriter) -> None:
    assert writer.init_checkpoint(1_700_000_000.5, "m0") is True
    assert writer.init_checkpoint(1_800_000_000.0, "m9") is False
    cp = writer.checkpoint()
    assert (cp.ts, cp.message_id, cp.entry_id) == (1_700_000_000.5, "m0", "")
    r.set(f"{STREAM}:lease", "other", px=60_000)
    r.delete(f"{STREAM}:checkpoint")
    with pytest.raises(Fenced):
        writer.init_checkpoint(1.0, "x")


def test_init_checkpoint_without_any_message(r: Any, writer: StreamWriter) -> None:
    assert writer.init_checkpoint(None, None)
    assert writer.checkpoint().ts == 0.0


def test_maxlen_caps_the_stream_approximately(r: Any) -> None:
    r.set(f"{STREAM}:lease", "me", px=60_000)
    w = StreamWriter(r, STREAM, token="me", maxlen=100, seen_ttl=60)
    for start in range(0, 1000, 100):
        w.append([event(i) for i in range(start, start + 100)])
    length = r.xlen(STREAM)
    assert 100 <= length < 300  # "~": trimmed by whole nodes, never below the cap


def test_no_maxlen_keeps_everything(r: Any) -> None:
    r.set(f"{STREAM}:lease", "me", px=60_000)
    w = StreamWriter(r, STREAM, token="me", maxlen=None, seen_ttl=60)
    w.append([event(i) for i in range(300)])
    assert r.xlen(STREAM) == 300


def test_messages_without_id_are_deduplicated_by_content(r: Any, writer: StreamWriter) -> None:
    a = event(1, mid=None)
    assert dedup_id(a).startswith("~")
    assert writer.append([a, a]) [1] is None
    assert writer.append([event(2, mid=None)])[0] is not None
    assert r.xlen(STREAM) == 2


def test_script_is_reloaded_after_a_script_flush(r: Any, writer: StreamWriter) -> None:
    writer.append([event(1)])
    r.script_flush()  # what a Redis restart does to the script cache
    assert writer.append([event(2)])[0] is not None


def test_works_with_a_bytes_client(redis_server: Any) -> None:
    import redis

    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)  # decode_responses=False
    raw.flushall()
    raw.set(f"{STREAM}:lease", "me", px=60_000)
    w = StreamWriter(raw, STREAM, token="me")
    [entry] = w.append([event(1)])
    assert isinstance(entry, str)
    assert w.checkpoint().message_id == "m1"
    raw.close()


def test_bad_arguments(r: Any) -> None:
    with pytest.raises(ValueError):
        StreamWriter(r, STREAM, token="t", maxlen=-1)
    with pytest.raises(ValueError):
        StreamWriter(r, STREAM, token="t", seen_ttl=0)
