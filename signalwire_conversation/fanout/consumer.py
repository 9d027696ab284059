"""Consumers of a relay's stream: a small helper over Redis consumer groups.

Each consumer group gets every entry once; within a group, each entry goes to one consumer.
A consumer acknowledges (``XACK``) an entry after handling it. Entries whose consumer died
before acknowledging are taken over by a live consumer of the same group (``XAUTOCLAIM``) once
they have been idle for ``claim_idle`` seconds. So delivery to the application is
**at-least-once**: an entry whose handler ran but whose ack was lost is handled again; use
``message.entry_id`` (or ``message.event.id``) to make the handler idempotent.

A malformed entry (no ``event`` field, not JSON, not an event) is logged, optionally copied to a
dead-letter stream, and acknowledged: it never stops the consumer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple, Union

from ..errors import ResponseValidationError
from ..models import ConversationMessageEvent, decode_event
from ._redis import UNAVAILABLE, Backoff, Redis, ResponseError, error_text, text
from .stream import entry_fields

__all__ = ["StreamConsumer", "StreamMessage"]

logger = logging.getLogger("signalwire_conversation.fanout.consumer")


@dataclass(frozen=True)
class StreamMessage:
    """One stream entry, decoded.

    ``entry_id`` is the stream entry id (unique per stream; use it, or ``event.id``, for
    idempotency); ``claimed`` is ``True`` when the entry was taken over from a consumer that did
    not acknowledge it in time (it may have been handled already).
    """

    entry_id: str
    event: ConversationMessageEvent
    fields: Mapping[str, str] = field(repr=False)
    claimed: bool = False


def default_consumer_name() -> str:
    """``host:pid``: unique per live process, stable for the process's lifetime."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StreamConsumer:
    """Read a relay's stream as one consumer of a consumer group.

    ::

        consumer = StreamConsumer("redis://localhost:6379/0", "signalwire:conversation:ADDR",
                                  group="workers")
        for message in consumer:              # blocks; ends after consumer.close()
            handle(message.event)
            consumer.ack(message)

    or ``consumer.run(handler)``, which acknowledges after ``handler(message)`` returns and
    leaves the entry pending (to be retried after ``claim_idle``) when it raises.

    Arguments: ``client`` (a URL or a ``redis.Redis``), ``stream``, ``group``, ``consumer`` (this
    consumer's name, default ``host:pid``), ``claim_idle`` (seconds an entry stays pending with
    a dead consumer before another takes it), ``count`` (entries per read), ``block`` (seconds
    one read waits for new entries), ``start_id`` (where a *new* group starts: ``"0"`` = every
    entry still in the stream, ``"$"`` = only entries appended from now on), ``dead_letter``
    (a stream name that receives malformed entries, or ``None``).
    """

    def __init__(
        self,
        client: Union[str, Redis],
        stream: str,
        group: str,
        consumer: Optional[str] = None,
        *,
        claim_idle: float = 30.0,
        count: int = 100,
        block: float = 1.0,
        start_id: str = "0",
        dead_letter: Optional[str] = None,
    ) -> None:
        from ._redis import connect

        if not stream:
            raise ValueError("stream must be a non-empty name")
        if not group:
            raise ValueError("group must be a non-empty name")
        if not claim_idle > 0:
            raise ValueError(f"claim_idle must be positive seconds, got {claim_idle!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        if not block > 0:
            raise ValueError(f"block must be positive seconds, got {block!r}")
        self.client = connect(client)
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.claim_idle = float(claim_idle)
        self.count = int(count)
        self.block = float(block)
        self.start_id = start_id
        self.dead_letter = dead_letter
        #: How many malformed entries were skipped (and acknowledged).
        self.malformed = 0
        self._closed = threading.Event()
        self._group_ready = False
        self._own_pending = True  # first, re-read what this consumer name left unacknowledged
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    # -- group ---------------------------------------------------------------------------

    def ensure_group(self) -> bool:
        """Create the group (and the stream) if needed; ``True`` if it was created now."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            created = True
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            created = False
        self._group_ready = True
        return created

    # -- reading -------------------------------------------------------------------------

    def read(self, block: Optional[float] = None) -> List[StreamMessage]:
        """One round: this consumer's own leftovers, then stale entries of dead consumers
        (every ``claim_idle / 2`` seconds), else new entries (waiting up to ``block`` seconds).

        Raises a ``redis`` error when Redis is unreachable (iteration and ``run()`` retry).
        """
        if not self._group_ready:
            self.ensure_group()
        try:
            return self._read(self.block if block is None else block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or the group vanished (deleted, or Redis restarted empty): recreate.
            logger.warning("consumer group %r on %r is gone; creating it again", self.group, self.stream)
            self._group_ready = False
            self.ensure_group()
            return []

    def _read(self, block: float) -> List[StreamMessage]:
        if self._own_pending:
            entries = self._xreadgroup("0", block=None)
            if entries:
                return self._decode(entries, claimed=True)
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            claimed = self._autoclaim()
            if claimed:
                return claimed
        entries = self._xreadgroup(">", block=max(1, int(block * 1000)))
        return self._decode(entries, claimed=False)

    def _xreadgroup(self, start: str, *, block: Optional[int]) -> List[Tuple[Any, Any]]:
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.count, block=block
        )
        return _stream_entries(reply)

    def _autoclaim(self) -> List[StreamMessage]:
        reply = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=max(1, int(self.claim_idle * 1000)),
            start_id=self._claim_cursor,
            count=self.count,
        )
        cursor = text(reply[0]) if reply else "0-0"
        entries = list(reply[1]) if reply and len(reply) > 1 and reply[1] else []
        self._claim_cursor = cursor or "0-0"
        if self._claim_cursor == "0-0":
            # A full pass over the pending list: wait before the next one.
            self._next_claim = time.monotonic() + self.claim_idle / 2
        messages = self._decode(entries, claimed=True)
        if messages:
            logger.info(
                "consumer %r claimed %d entr%s idle for over %.1f s",
                self.consumer, len(messages), "y" if len(messages) == 1 else "ies", self.claim_idle,
            )
        return messages

    def _decode(self, entries: List[Tuple[Any, Any]], *, claimed: bool) -> List[StreamMessage]:
        out: List[StreamMessage] = []
        for raw_id, raw_fields in entries:
            entry_id = text(raw_id)
            if entry_id is None:
                continue
            if raw_fields is None:
                # Pending, but trimmed from the stream meanwhile: nothing left to hand over.
                self._ack_ids([entry_id])
                continue
            fields, ok = entry_fields(raw_fields)
            try:
                if not ok:
                    raise ValueError("the entry has no field map")
                payload = fields.get("event")
                if payload is None:
                    raise ValueError("the entry has no 'event' field")
                event = decode_event(json.loads(payload))
            except (ValueError, ResponseValidationError) as exc:
                self._malformed(entry_id, fields, exc)
                continue
            out.append(StreamMessage(entry_id=entry_id, event=event, fields=fields, claimed=claimed))
        return out

    def _malformed(self, entry_id: str, fields: Mapping[str, str], exc: Exception) -> None:
        self.malformed += 1
        logger.warning(
            "skipping malformed entry %s of %r (%s: %s)%s",
            entry_id, self.stream, type(exc).__name__, exc,
            f"; copied to {self.dead_letter!r}" if self.dead_letter else "",
        )
        if self.dead_letter:
            copy = dict(fields) or {"raw": ""}
            copy.update({"source_stream": self.stream, "source_entry": entry_id, "error": str(exc)})
            self.client.xadd(self.dead_letter, copy, maxlen=10_000, approximate=True)  # type: ignore[arg-type]
        self._ack_ids([entry_id])

    # -- acknowledging -------------------------------------------------------------------

    def ack(self, *messages: Union[StreamMessage, str]) -> int:
        """Acknowledge entries (messages or entry ids); returns how many were still pending."""
        ids = [m.entry_id if isinstance(m, StreamMessage) else m for m in messages]
        return self._ack_ids(ids)

    def _ack_ids(self, ids: List[str]) -> int:
        if not ids:
            return 0
        return int(self.client.xack(self.stream, self.group, *ids))

    # -- loops ---------------------------------------------------------------------------

    def messages(self) -> Iterator[StreamMessage]:
        """Yield messages until :meth:`close`; Redis outages are waited out with backoff."""
        backoff = Backoff(0.2, 10.0)
        down_since: Optional[float] = None
        while not self._closed.is_set():
            try:
                batch = self.read()
            except UNAVAILABLE as exc:
                delay = backoff.next_delay()
                if down_since is None:
                    down_since = time.monotonic()
                logger.warning(
                    "consumer %r cannot read %r (%s); retrying in %.1f s",
                    self.consumer, self.stream, error_text(exc), delay,
                )
                self._closed.wait(delay)
                continue
            if down_since is not None:
                logger.info("consumer %r reconnected to Redis", self.consumer)
                down_since = None
            backoff.reset()
            for message in batch:
                yield message
                if self._closed.is_set():
                    return

    __iter__ = messages

    def run(self, handler: Callable[[StreamMessage], Any]) -> None:
        """Call ``handler(message)`` for each message and acknowledge it when it returns.

        An exception from the handler is logged and the entry stays pending: it is delivered
        again (to this consumer or another) after ``claim_idle`` seconds. Returns after
        :meth:`close`.
        """
        for message in self.messages():
            try:
                handler(message)
            except Exception:
                logger.exception(
                    "handler failed on entry %s (message %s); it stays pending and will be retried",
                    message.entry_id, message.event.id,
                )
                continue
            self._ack_retrying(message.entry_id)

    def _ack_retrying(self, entry_id: str) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                self._ack_ids([entry_id])
                return
            except UNAVAILABLE as exc:
                if self._closed.is_set():
                    return  # stays pending; claimed again later
                delay = backoff.next_delay()
                logger.warning("cannot acknowledge %s (%s); retrying in %.1f s", entry_id, error_text(exc), delay)
                self._closed.wait(delay)

    def close(self) -> None:
        """Stop iteration / ``run()`` (at the latest after one ``block`` period)."""
        self._closed.set()

    def __enter__(self) -> "StreamConsumer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StreamConsumer(stream={self.stream!r}, group={self.group!r}, consumer={self.consumer!r})"


def _stream_entries(reply: Any) -> List[Tuple[Any, Any]]:
    """The ``(id, fields)`` pairs of a one-stream XREADGROUP reply (RESP2 or RESP3 shape)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        groups: List[Any] = list(reply.values())
    else:
        groups = [item[1] for item in reply if isinstance(item, (list, tuple)) and len(item) > 1]
    out: List[Tuple[Any, Any]] = []
    for entries in groups:
        # RESP3 may nest the entry list one level deeper.
        if entries and isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]
        for entry in entries or []:
            if isinstance(entry, (list, tuple)) and len(entry) >= 2:
                out.append((entry[0], entry[1]))
    return out
