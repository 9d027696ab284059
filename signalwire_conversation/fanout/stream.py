"""The stream side of the relay: a fenced, de-duplicating append script and the checkpoint.

Keys, for a stream named ``S`` (all derived from ``S``; put a ``{hash tag}`` in ``S`` to keep
them in one slot on Redis Cluster):

``S``                  the stream: one entry per message, fields ``id``, ``event`` (the JSON
                       of ``ConversationMessageEvent.to_dict()``), ``conversation_id``,
                       ``subtype``, ``ts`` and ``relay`` (the lease token of the relay that
                       appended it)
``S:lease``            the leadership lease (:mod:`.lease`)
``S:checkpoint``       a hash: ``ts``/``id`` of the newest message appended, and its ``entry``
``S:seen:<id>``        one key per appended message id, value the entry id, with a TTL

One ``EVALSHA`` appends a batch atomically: first the lease check (a relay that lost the lease
appends nothing, whatever it believes), then per message the seen-key check, ``XADD ... MAXLEN
~ N``, the seen key and the checkpoint. So a message id is appended at most once per seen-key
TTL, even when two relays overlap or a gap fill re-reads messages already in the stream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from ..models import ConversationMessageEvent
from ._redis import Redis, text

__all__ = [
    "StreamKeys",
    "Checkpoint",
    "Fenced",
    "StreamWriter",
    "encode_event",
    "dedup_id",
    "DEFAULT_MAXLEN",
    "DEFAULT_SEEN_TTL",
]

#: Default cap of the stream length (``XADD MAXLEN ~``): old entries are trimmed past it.
DEFAULT_MAXLEN = 100_000
#: Default lifetime of a seen-id key, in seconds: the window in which a repeat is dropped.
DEFAULT_SEEN_TTL = 24 * 3600.0

# KEYS: stream, lease, checkpoint, seen_1..seen_n
# ARGV: token, maxlen (0 = no cap), seen_ttl_ms, then 5 per message: id, event, conversation_id,
#       subtype, ts ("" when unknown)
# Returns {-1} when the lease is not ours; else {1, r_1..r_n}, r_i = the new entry id or ""
# for a message already appended.
_APPEND = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return {-1}
end
local maxlen = tonumber(ARGV[2])
local out = {1}
local n = #KEYS - 3
for i = 1, n do
  local seen = KEYS[3 + i]
  local base = 3 + (i - 1) * 5
  local mid, event, cid, subtype, ts = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  if redis.call('EXISTS', seen) == 1 then
    out[#out + 1] = ''
  else
    local entry
    if maxlen > 0 then
      entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'id', mid, 'event', event,
        'conversation_id', cid, 'subtype', subtype, 'ts', ts, 'relay', ARGV[1])
    else
      entry = redis.call('XADD', KEYS[1], '*', 'id', mid, 'event', event,
        'conversation_id', cid, 'subtype', subtype, 'ts', ts, 'relay', ARGV[1])
    end
    redis.call('SET', seen, entry, 'PX', ARGV[3])
    if ts ~= '' then
      local current = redis.call('HGET', KEYS[3], 'ts')
      if (not current) or tonumber(ts) >= tonumber(current) then
        redis.call('HSET', KEYS[3], 'ts', ts, 'id', mid, 'entry', entry)
      end
    end
    out[#out + 1] = entry
  end
end
return out
"""

# KEYS: lease, checkpoint. ARGV: token, ts, id. Sets the checkpoint only if there is none.
# Returns -1 (not the lease holder), 0 (a checkpoint exists), 1 (set).
_INIT_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], 'ts', ARGV[2], 'id', ARGV[3], 'entry', '')
return 1
"""


@dataclass(frozen=True)
class StreamKeys:
    """The Redis keys used for one stream."""

    stream: str

    @property
    def lease(self) -> str:
        return f"{self.stream}:lease"

    @property
    def checkpoint(self) -> str:
        return f"{self.stream}:checkpoint"

    def seen(self, message_id: str) -> str:
        return f"{self.stream}:seen:{message_id}"


@dataclass(frozen=True)
class Checkpoint:
    """The newest message appended: its ``ts`` (as stored, and as a float), id and entry id."""

    ts_text: str
    message_id: str
    entry_id: str

    @property
    def ts(self) -> Optional[float]:
        try:
            return float(self.ts_text)
        except ValueError:
            return None


class Fenced(Exception):
    """The lease is not held by this writer's token: nothing was appended."""


def _ts_text(ts: Optional[float]) -> str:
    if ts is None:
        return ""
    return repr(ts) if isinstance(ts, float) else str(ts)


def dedup_id(event: ConversationMessageEvent) -> str:
    """What identifies ``event`` for de-duplication: its id, else a digest of who/where/when."""
    if event.id:
        return event.id
    basis = f"{event.conversation_id}|{event.user_id}|{_ts_text(event.ts)}|{event.text}"
    return "~" + hashlib.sha1(basis.encode("utf-8")).hexdigest()


def encode_event(event: ConversationMessageEvent) -> str:
    """The ``event`` field of an entry: ``event.to_dict()`` as compact JSON."""
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False, default=str)


class StreamWriter:
    """Appends events to a stream under a lease token (one call per batch, atomically)."""

    def __init__(
        self,
        client: Redis,
        stream: str,
        *,
        token: str,
        maxlen: Optional[int] = DEFAULT_MAXLEN,
        seen_ttl: float = DEFAULT_SEEN_TTL,
    ) -> None:
        if maxlen is not None and maxlen < 0:
            raise ValueError(f"maxlen must be >= 0 or None, got {maxlen!r}")
        if not seen_ttl > 0:
            raise ValueError(f"seen_ttl must be positive seconds, got {seen_ttl!r}")
        self.client = client
        self.keys = StreamKeys(stream)
        self.token = token
        self.maxlen = maxlen or 0
        self.seen_ttl_ms = max(1, int(seen_ttl * 1000))
        self._append = client.register_script(_APPEND)
        self._init_checkpoint = client.register_script(_INIT_CHECKPOINT)

    @property
    def stream(self) -> str:
        return self.keys.stream

    def append(self, events: Sequence[ConversationMessageEvent]) -> List[Optional[str]]:
        """Append ``events`` in order; per event, its new entry id or ``None`` (a repeat).

        Raises :class:`Fenced` (nothing appended) when the lease is not ours, and a
        ``redis`` error when Redis cannot be reached (the batch may or may not have been
        appended: appending it again is safe, repeats are dropped).
        """
        if not events:
            return []
        keys: List[str] = [self.keys.stream, self.keys.lease, self.keys.checkpoint]
        args: List[Any] = [self.token, self.maxlen, self.seen_ttl_ms]
        for event in events:
            mid = dedup_id(event)
            keys.append(self.keys.seen(mid))
            args.extend(
                (mid, encode_event(event), event.conversation_id or "", event.subtype or "",
                 _ts_text(event.ts))
            )
        reply = self._append(keys=keys, args=args)
        if not reply or int(reply[0]) != 1:
            raise Fenced(f"the lease {self.keys.lease!r} is not held by {self.token!r}")
        return [text(r) or None for r in reply[1:]]

    def checkpoint(self) -> Optional[Checkpoint]:
        """The newest appended message (``None`` before the first relay ever ran)."""
        raw = self.client.hgetall(self.keys.checkpoint)
        if not raw:
            return None
        values = {text(k): text(v) for k, v in raw.items()}
        return Checkpoint(
            ts_text=values.get("ts") or "",
            message_id=values.get("id") or "",
            entry_id=values.get("entry") or "",
        )

    def init_checkpoint(self, ts: Optional[float], message_id: Optional[str]) -> bool:
        """Set the checkpoint when there is none (the very first relay). Raises :class:`Fenced`."""
        result = int(
            self._init_checkpoint(
                keys=[self.keys.lease, self.keys.checkpoint],
                args=[self.token, _ts_text(ts) if ts is not None else "0", message_id or ""],
            )
        )
        if result == -1:
            raise Fenced(f"the lease {self.keys.lease!r} is not held by {self.token!r}")
        return result == 1


def entry_fields(fields: Any) -> Tuple[dict[str, str], bool]:
    """Decode an entry's field map to ``str`` keys and values; ``False`` when it is not a map."""
    if not isinstance(fields, dict):
        return {}, False
    out: dict[str, str] = {}
    for key, value in fields.items():
        k, v = text(key), text(value)
        if k is not None and v is not None:
            out[k] = v
    return out, True
