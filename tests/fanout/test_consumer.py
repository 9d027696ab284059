"""The consumer-group helper: reads, acks, XAUTOCLAIM of a dead consumer's entries, bad entries."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, List

import pytest

from signalwire_conversation.fanout import StreamConsumer, StreamMessage, StreamWriter
from signalwire_conversation.models import ConversationMessageEvent

from .conftest import wait_until

pytestmark = pytest.mark.redis

STREAM = "signalwire:conversation:test"


def event(i: int) -> ConversationMessageEvent:
    return ConversationMessageEvent(
        id=f"m{i}", conversation_id="g1", user_id="u1", ts=1_700_000_000.0 + i,
        type="message", subtype="chat", text=f"hello {i}",
    )


def publish(r: Any, n: int, start: int = 0) -> List[str]:
    r.set(f"{STREAM}:lease", "me", px=60_000)
    writer = StreamWriter(r, STREAM, token="me", seen_ttl=60)
    ids = writer.append([event(i) for i in range(start, start + n)])
    return [i for i in ids if i]


def consumer(r: Any, name: str, **kwargs: Any) -> StreamConsumer:
    kwargs.setdefault("block", 0.05)
    return StreamConsumer(r, STREAM, "workers", name, **kwargs)


def test_group_is_created_with_the_stream(r: Any) -> None:
    c = consumer(r, "c1")
    assert c.ensure_group() is True
    assert c.ensure_group() is False
    assert r.exists(STREAM) == 1
    assert [g["name"] for g in r.xinfo_groups(STREAM)] == ["workers"]


def test_reads_decoded_events_and_acks(r: Any) -> None:
    ids = publish(r, 3)
    c = consumer(r, "c1")
    batch = c.read()
    assert [m.entry_id for m in batch] == ids
    assert [m.event for m in batch] == [event(i) for i in range(3)]
    assert all(not m.claimed for m in batch)
    assert batch[0].fields["conversation_id"] == "g1"
    assert r.xpending(STREAM, "workers")["pending"] == 3
    assert c.ack(batch[0], batch[1].entry_id) == 2
    assert c.ack(batch[0]) == 0  # already acknowledged
    assert r.xpending(STREAM, "workers")["pending"] == 1
    assert c.read() == []  # nothing new; its own pending one was re-read only at start


def test_new_group_from_now_skips_history(r: Any) -> None:
    publish(r, 3)
    c = consumer(r, "c1", start_id="$")
    assert c.read() == []
    publish(r, 1, start=3)
    assert [m.event.id for m in c.read()] == ["m3"]


def test_each_entry_goes_to_one_consumer_of_a_group(r: Any) -> None:
    publish(r, 10)
    a, b = consumer(r, "a", count=4), consumer(r, "b", count=4)
    seen: List[str] = []
    for _ in range(10):
        for c in (a, b):
            batch = c.read()
            seen += [m.event.id for m in batch]
            c.ack(*batch)
    assert sorted(seen) == sorted(f"m{i}" for i in range(10))
    assert len(seen) == 10


def test_a_restarted_consumer_first_rereads_its_own_pending_entries(r: Any) -> None:
    publish(r, 3)
    first = consumer(r, "c1")
    assert len(first.read()) == 3  # ... and dies without acking
    again = consumer(r, "c1")
    batch = again.read()
    assert [m.event.id for m in batch] == ["m0", "m1", "m2"]
    assert all(m.claimed for m in batch)


def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(r: Any) -> None:
    publish(r, 5)
    dead = consumer(r, "dead", claim_idle=0.2)
    got = dead.read()
    assert len(got) == 5
    dead.ack(got[0])  # it managed one before dying
    survivor = consumer(r, "alive", claim_idle=0.2)
    claimed: List[StreamMessage] = []
    wait_until(lambda: claimed.extend(survivor.read()) or len(claimed) >= 4, 5.0, "nothing was claimed")
    assert [m.event.id for m in claimed] == ["m1", "m2", "m3", "m4"]
    assert all(m.claimed for m in claimed)
    assert survivor.ack(*claimed) == 4
    assert r.xpending(STREAM, "workers")["pending"] == 0


def test_entries_are_not_claimed_before_the_idle_time(r: Any) -> None:
    publish(r, 2)
    consumer(r, "busy", claim_idle=30).read()
    other = consumer(r, "other", claim_idle=30)
    assert other.read() == []
    assert r.xpending(STREAM, "workers")["consumers"] == [{"name": "busy", "pending": 2}]


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "x"},                                   # no event field
        {"id": "x", "event": "{not json"},             # not JSON
        {"id": "x", "event": "[1, 2]"},                # JSON, not an object
        {"id": "x", "event": json.dumps("just a string")},  # JSON, not an object
        {"id": "x", "event": b"\xff\xfe{"},             # not even UTF-8
    ],
)
def test_malformed_entries_are_skipped_logged_and_acked(
    r: Any, redis_server: Any, fields: dict, caplog: pytest.LogCaptureFixture
) -> None:
    publish(r, 1)
    bad = r.xadd(STREAM, fields)
    publish(r, 1, start=1)
    # A client built from a URL (the documented way) does not decode replies itself, so even
    # bytes that are not UTF-8 reach the consumer's own decoding.
    c = StreamConsumer(redis_server.url, STREAM, "workers", "c1", block=0.05, dead_letter=f"{STREAM}:dead")
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.fanout"):
        batch = c.read()
    assert [m.event.id for m in batch] == ["m0", "m1"]
    assert c.malformed == 1
    assert bad in caplog.text
    [(_, copy)] = r.xrange(f"{STREAM}:dead")
    assert copy["source_entry"] == bad and copy["source_stream"] == STREAM
    pending = {p["message_id"] for p in r.xpending_range(STREAM, "workers", "-", "+", 10)}
    assert bad not in pending and len(pending) == 2


def test_trimmed_pending_entries_are_acked_not_returned(r: Any) -> None:
    publish(r, 2)
    first = consumer(r, "c1")
    got = first.read()
    r.xdel(STREAM, got[0].entry_id)
    again = consumer(r, "c1")
    assert [m.event.id for m in again.read()] == ["m1"]


def test_a_vanished_group_is_recreated(r: Any, caplog: pytest.LogCaptureFixture) -> None:
    publish(r, 1)
    c = consumer(r, "c1")
    c.read()
    r.delete(STREAM)
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.fanout"):
        assert c.read() == []
    assert "creating it again" in caplog.text
    publish(r, 1, start=5)
    assert [m.event.id for m in c.read()] == ["m5"]


def test_run_acks_after_the_handler_and_keeps_failures_pending(r: Any) -> None:
    publish(r, 4)
    c = consumer(r, "c1")
    handled: List[str] = []

    def handler(message: StreamMessage) -> None:
        if message.event.id == "m2":
            raise RuntimeError("boom")
        handled.append(message.event.id or "")
        if len(handled) == 3:
            c.close()

    c.run(handler)
    assert handled == ["m0", "m1", "m3"]
    pending = r.xpending_range(STREAM, "workers", "-", "+", 10)
    assert [p["message_id"] for p in pending] == [m for m in [r.xrange(STREAM)[2][0]]]


def test_iteration_waits_out_a_redis_outage(make_redis_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = make_redis_server()
    url = server.url
    c = StreamConsumer(url, STREAM, "workers", "c1", block=0.05)
    server.stop()
    got: List[str] = []

    def consume() -> None:
        for m in c:
            got.append(m.event.id or "")
            c.ack(m)
            c.close()

    with caplog.at_level(logging.WARNING, logger="signalwire_conversation.fanout"):
        t = threading.Thread(target=consume, daemon=True)
        t.start()
        wait_until(lambda: "cannot read" in caplog.text, 5.0, "no warning about the outage")
        server.start()
        publish(server.client(), 1)
        t.join(15)
    assert got == ["m0"]
    assert "Traceback" not in caplog.text


def test_bad_arguments(r: Any) -> None:
    for kwargs in ({"claim_idle": 0}, {"count": 0}, {"block": 0}):
        with pytest.raises(ValueError):
            StreamConsumer(r, STREAM, "g", **kwargs)
    with pytest.raises(ValueError):
        StreamConsumer(r, "", "g")
    with pytest.raises(ValueError):
        StreamConsumer(r, STREAM, "")
