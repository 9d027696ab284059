"""``relay-status``: a relay fleet as Redis sees it (relays, their subscribers, leases, streams)."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Set, Union

from ._redis import Redis, connect, text
from .fleet import DEFAULT_FLEET, FleetKeys, fair_share, live_records
from .stream import StreamKeys

__all__ = ["fleet_status", "format_status"]


def _float(value: Any) -> Optional[float]:
    try:
        return float(text(value) or "")
    except ValueError:
        return None


def fleet_status(redis: Union[str, Redis], name: str = DEFAULT_FLEET, *, now: Optional[float] = None) -> Dict[str, Any]:
    """The fleet ``name``: ``{"fleet", "relays": [...], "streams": [...]}``.

    A relay: ``id``, ``host``, ``pid``, ``subscribers``, ``held`` (leases), ``share``,
    ``heartbeat_age`` (seconds since its last record). A stream (every subscriber a live relay
    runs): ``stream``, ``holder`` (a relay id or ``None``), ``lease_age`` (seconds since the
    holder took it, when known), ``lease_ttl`` (seconds left), ``length`` (entries),
    ``checkpoint_lag`` (seconds between now and the newest message appended; ``None`` before the
    first).
    """
    client = connect(redis)
    keys = FleetKeys(name)
    now = time.time() if now is None else now
    records = live_records(client, keys)
    since: Dict[str, float] = {}
    seen_streams: Set[str] = set()
    relays: List[Dict[str, Any]] = []
    for record in sorted(records, key=lambda r: str(r["id"])):
        held = record.get("held")
        if not isinstance(held, dict):
            held = {}
        for stream, taken in held.items():
            if isinstance(taken, (int, float)):
                since[f"{record['id']}\0{stream}"] = float(taken)
        seen_streams.update(stream for stream in record.get("streams") or [] if isinstance(stream, str))
        beat = record.get("beat")
        relays.append({
            "id": record["id"],
            "host": record.get("host"),
            "pid": record.get("pid"),
            "subscribers": record.get("subscribers"),
            "held": len(held),
            "share": record.get("share"),
            "heartbeat_age": round(now - beat, 3) if isinstance(beat, (int, float)) else None,
        })
    streams = sorted(seen_streams)
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        k = StreamKeys(stream)
        pipe.get(k.lease)
        pipe.pttl(k.lease)
        pipe.xlen(stream)
        pipe.hget(k.checkpoint, "ts")
    replies = pipe.execute() if streams else []
    rows: List[Dict[str, Any]] = []
    for j, stream in enumerate(streams):
        holder, pttl, length, ts = replies[4 * j:4 * j + 4]
        holder_id = text(holder)
        taken = since.get(f"{holder_id}\0{stream}") if holder_id else None
        checkpoint_ts = _float(ts)
        rows.append({
            "stream": stream,
            "holder": holder_id,
            "lease_age": round(now - taken, 3) if taken is not None else None,
            "lease_ttl": round(int(pttl) / 1000.0, 3) if holder_id and int(pttl) > 0 else None,
            "length": int(length),
            "checkpoint_lag": round(now - checkpoint_ts, 3) if checkpoint_ts else None,
        })
    total = max([0] + [int(r["subscribers"] or 0) for r in relays])
    return {
        "fleet": name,
        "live_relays": len(relays),
        "subscribers": total,
        "share": fair_share(total, len(relays)) if relays else None,
        "unheld": sum(1 for r in rows if r["holder"] is None),
        "relays": relays,
        "streams": rows,
    }


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def format_status(status: Dict[str, Any]) -> str:
    """The tables ``relay-status`` prints."""
    out = [
        f"fleet {status['fleet']!r}: {status['live_relays']} live relay(s), "
        f"{status['subscribers']} subscriber(s), share {status['share'] if status['share'] is not None else '-'}, "
        f"{status['unheld']} stream(s) without a holder",
        "",
    ]
    out += _table(
        ["RELAY", "SUBSCRIBERS", "HELD", "SHARE", "HEARTBEAT"],
        [[str(r["id"]), str(r["subscribers"]), str(r["held"]), str(r["share"]), _seconds(r["heartbeat_age"]) + " ago"]
         for r in status["relays"]],
    )
    out.append("")
    out += _table(
        ["STREAM", "HOLDER", "LEASE AGE", "LEASE LEFT", "LENGTH", "CHECKPOINT LAG"],
        [[s["stream"], s["holder"] or "-", _seconds(s["lease_age"]), _seconds(s["lease_ttl"]), str(s["length"]),
          _seconds(s["checkpoint_lag"])] for s in status["streams"]],
    )
    return "\n".join(out) + "\n"
