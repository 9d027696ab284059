"""Cases 1 and 2: REST paging against the emulator, and decoding message dicts into models.

Paging: the emulator (its own process) holds N messages of one conversation, from two senders;
the SDK iterates ``get_conversation_messages(address, page_size=100)`` (and ``get_messages``)
to the end, the raw floor follows the same ``links.next`` with ``requests.Session.get`` +
``json.loads``. The SDK client has its defaults, sender names included (one address lookup per
sender, cached); a second SDK client with ``resolve_names=False`` measures what the names cost.
Runs alternate so background noise hits every row; the best time of each is compared.

Decoding: N message dicts shaped like the current wire (docs/protocol.md §3.2), as one JSON
document; the SDK time is ``decode_message`` (and the public ``ConversationMessage.from_dict``)
over the parsed dicts, the reference is ``json.loads`` of the bytes: the ratio is the cost per
message of decoding a parsed dict against parsing it.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._common import SDKUnavailable, Size, best, load_client
from ._raw import raw_paging, raw_session
from ._report import CaseResult, Row
from ._serve import ServerProcess

TEXT_SIZE = 120


def _timed(fn: Callable[[], int]) -> Tuple[float, float, int]:
    """(wall seconds, client CPU seconds, items) of one call."""
    cpu = time.process_time()
    started = time.perf_counter()
    items = fn()
    return time.perf_counter() - started, time.process_time() - cpu, items


def run_paging(size: Size) -> CaseResult:
    n, page = size.paging_items, size.page_size
    result = CaseResult("paging", f"REST paging, {n:,} messages in pages of {page}")
    walls: Dict[str, List[float]] = {k: [] for k in ("raw_conv", "sdk_conv", "raw_all", "sdk_all", "sdk_conv_nonames")}
    cpus: Dict[str, List[float]] = {k: [] for k in walls}
    sdk_error: Optional[str] = None
    with ServerProcess("emulator") as emu:
        urls = emu.call("start")
        alice = emu.call("add_subscriber", name="alice")
        bob = emu.call("add_subscriber", name="bob")
        # few senders, many messages: alice and bob alternate in blocks
        seeded = {"seconds": 0.0}
        block = max(1, n // 10)
        for first in range(0, n, block):
            sender, to = ("alice", bob) if (first // block) % 2 == 0 else ("bob", alice)
            part = emu.call("seed", sender=sender, address_id=to["address_id"], count=min(block, n - first),
                            text_size=TEXT_SIZE, timeout=600)
            seeded["seconds"] += part["seconds"]
        group = emu.call("group_id", a="bob", address_id=alice["address_id"])
        session = raw_session(bob["token"])
        base = urls["base_url"]
        conv_path = f"/api/fabric/conversations/{group}/messages"

        client: Any = None
        plain: Any = None  # the same SDK without sender names
        try:
            client = load_client()(token=bob["token"], base_url=base, relay_url=urls["relay_url"])
            client.conversation.join(alice["address_id"])  # the group id is cached before timing
            try:
                plain = load_client()(token=bob["token"], base_url=base, relay_url=urls["relay_url"],
                                      resolve_names=False)
                plain.conversation.join(alice["address_id"])
            except TypeError:  # an SDK without sender names
                plain = None
        except SDKUnavailable as exc:
            sdk_error = str(exc)

        def sdk_conv() -> int:
            return sum(1 for _ in client.conversation.get_conversation_messages(alice["address_id"], page_size=page))

        def sdk_all() -> int:
            return sum(1 for _ in client.conversation.get_messages(page_size=page))

        def sdk_conv_nonames() -> int:
            return sum(1 for _ in plain.conversation.get_conversation_messages(alice["address_id"], page_size=page))

        runs: List[Tuple[str, Callable[[], int]]] = [
            ("raw_conv", lambda: raw_paging(session, base, conv_path, page)),
            ("raw_all", lambda: raw_paging(session, base, "/api/fabric/messages", page)),
        ]
        if client is not None:
            runs[1:1] = [("sdk_conv", sdk_conv)]
            runs.append(("sdk_all", sdk_all))
        if plain is not None:
            runs.append(("sdk_conv_nonames", sdk_conv_nonames))
        counts: Dict[str, int] = {}
        for name, fn in runs:  # warm-up: connections, caches, code paths
            counts[name] = fn()
        for _ in range(size.repeats):
            for name, fn in runs:
                wall, cpu, items = _timed(fn)
                walls[name].append(wall)
                cpus[name].append(cpu)
                counts[name] = items
        for made in (client, plain):
            if made is not None:
                made.close()
        session.close()

    for kind, label in (("conv", "get_conversation_messages"), ("all", "get_messages")):
        raw_t = best(walls[f"raw_{kind}"], False)
        sdk_t = best(walls[f"sdk_{kind}"], False)
        result.rows.append(Row(f"{label}: time to iterate", "s", sdk_t, raw_t, op="<=", bound=1.10))
        raw_c = best(cpus[f"raw_{kind}"], False)
        sdk_c = best(cpus[f"sdk_{kind}"], False)
        result.rows.append(Row(f"{label}: client CPU", "s", sdk_c, raw_c))
        if raw_t:
            line = f"{label}: raw {counts[f'raw_{kind}'] / raw_t:,.0f} items/s"
            if sdk_t:
                line += f", SDK {counts[f'sdk_{kind}'] / sdk_t:,.0f} items/s"
            result.notes.append(line + f" (items seen: {counts.get(f'sdk_{kind}', '-')} SDK, {counts[f'raw_{kind}']} raw)")
    if walls["sdk_conv_nonames"]:
        named = best(walls["sdk_conv"], False)
        unnamed = best(walls["sdk_conv_nonames"], False)
        result.rows.append(Row("get_conversation_messages: sender names on vs off", "s", named, unnamed,
                               reference="resolve_names=False"))
        result.notes.append(
            "sender names: 2 senders, so 2 address lookups in the warm-up and none in the timed runs "
            "(cached 3 minutes); per item, one check and one slot store"
        )
    result.notes.append(f"seeded {n:,} messages in {seeded['seconds']:.1f} s; best of {size.repeats} alternating runs")
    result.notes.append(
        "every run, wall s (client CPU s): "
        + "; ".join(
            f"{name} " + ", ".join(f"{w:.3f} ({c:.3f})" for w, c in zip(walls[name], cpus[name]))
            for name in walls if walls[name]
        )
    )
    if sdk_error:
        result.notes.append(f"SDK rows skipped: {sdk_error}")
    return result


# -- decoding -------------------------------------------------------------------------------------
def wire_messages(n: int) -> List[Dict[str, Any]]:
    """``n`` stored chat messages as the current backend sends them (docs/protocol.md §3.2)."""
    group = "c6f1d2a4-9b1e-4f0e-8a55-2b7c1d9e0f11_5e2f7a3b-1c4d-4e8f-9a0b-3c2d1e0f9a88"
    senders = [str(uuid.UUID(int=i + 1)) for i in range(4)]
    out = []
    for i in range(n):
        out.append(
            {
                "id": str(uuid.UUID(int=(i * 2654435761) % (1 << 128))),
                "group_id": group,
                "from_fabric_address_id": senders[i % len(senders)],
                "ts": 1708192187.6779745 + i * 0.731,
                "details": {},
                "type": "message",
                "subtype": "chat",
                "kind": None,
                "text": f"message {i}: " + "lorem ipsum dolor sit amet " * 3,
                "metadata": {},
            }
        )
    return out


def wire_events(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The same messages as realtime ``conversation.message`` payloads (docs/protocol.md §3.3)."""
    return [dict(m, hidden=False, conversation_name="Bench room", user_name="Bench User") for m in messages]


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run_decode(size: Size) -> CaseResult:
    n = size.decode_items
    result = CaseResult("decode", f"decoding {n:,} message dicts into models")
    from signalwire_conversation.models import ConversationMessage, decode_event, decode_message

    messages = wire_messages(n)
    blob = json.dumps(messages).encode()
    events_blob = json.dumps(wire_events(messages)).encode()
    parsed = json.loads(blob)
    parsed_events = json.loads(events_blob)
    repeats = max(3, size.repeats)
    loads = _best_time(lambda: json.loads(blob), repeats)
    decode = _best_time(lambda: [decode_message(d) for d in parsed], repeats)
    from_dict = ConversationMessage.from_dict
    public = _best_time(lambda: [from_dict(d) for d in parsed], repeats)
    try:
        from signalwire_conversation.models import decode_messages
    except ImportError:  # an SDK without the page decoder
        decode_messages = None
    pages = [parsed[i:i + 100] for i in range(0, len(parsed), 100)]
    decode_pages = (
        _best_time(lambda: [m for p in pages for m in decode_messages(p)], repeats) if decode_messages else None
    )
    loads_ev = _best_time(lambda: json.loads(events_blob), repeats)
    decode_ev = _best_time(lambda: [decode_event(d) for d in parsed_events], repeats)
    result.rows.append(Row("decode_message vs json.loads", "s", decode, loads, op="<=", bound=1.5,
                           reference="json.loads"))
    result.rows.append(Row("ConversationMessage.from_dict vs json.loads", "s", public, loads, op="<=", bound=1.5,
                           reference="json.loads"))
    if decode_pages is not None:
        result.rows.append(Row("decode_messages (pages of 100, as paging does)", "s", decode_pages, loads,
                               op="<=", bound=1.5, reference="json.loads"))
    result.rows.append(Row("decode_event vs json.loads", "s", decode_ev, loads_ev, reference="json.loads"))
    result.notes.append(
        f"json.loads {n / loads:,.0f} msg/s ({len(blob) / n:.0f} B each); decode_message {n / decode:,.0f} msg/s; "
        f"loads + decode {n / (loads + decode):,.0f} msg/s; decode_event {n / decode_ev:,.0f} ev/s"
    )
    try:
        import orjson

        o_loads = _best_time(lambda: orjson.loads(blob), repeats)
        result.notes.append(
            f"orjson.loads of the same bytes: {n / o_loads:,.0f} msg/s ({loads / o_loads:.2f}x json.loads; "
            f"with it, loads + decode would take {(o_loads + decode) / (loads + decode):.2f} of the time)"
        )
    except ImportError:
        pass
    result.notes.append(f"best of {repeats}, gc.collect() before each run")
    return result
