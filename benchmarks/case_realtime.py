"""Cases 3 and 4: realtime throughput and latency, SDK vs the raw websocket-client floor.

Throughput: the emulator (its own process) pushes N ``conversation.message`` events to one
session as fast as it can; the figure is N over the time from the push command to the N-th
event handled (SDK: the callback receiving a model; raw: recv + ``json.loads`` + ack). Every
event must be acknowledged (checked on the server after each run). The same N envelopes of
the same size go from a Slack-shaped server to slack_sdk's builtin ``SocketModeClient``.

Latency: the emulator sends events at a moderate rate, each text stamped with the sender's
``perf_counter()`` (system-wide monotonic clock, so comparable across processes); the figure
is the time from that stamp to the callback starting (raw: right after recv + loads + ack).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from ._common import FRAME_BYTES, Counter, SDKUnavailable, Size, best, load_client, percentile, wait_until
from ._raw import RawRelay
from ._report import CaseResult, Row
from ._serve import ServerProcess, bench_text, sent_at

SENDER = "alice"
#: client CPU seconds per event of the last runs (process-wide: every thread of the client)
_CPU: List[float] = []


def _start_emulator(emu: ServerProcess, names: List[str]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    urls = emu.call("start")
    subs = {name: emu.call("add_subscriber", name=name) for name in [SENDER] + names}
    return urls, subs


def calibrate(emu: ServerProcess, urls: Dict[str, Any], sub: Dict[str, Any]) -> Tuple[int, int, Dict[str, Any]]:
    """The text size that makes a ``conversation.message`` frame ``FRAME_BYTES`` long.

    Returns (text size, measured frame bytes, a sample payload).
    """
    probe = 100
    relay = RawRelay(urls["relay_url"], sub["token"])
    try:
        captured: List[Dict[str, Any]] = []
        text_size = probe
        frame = 0
        for _ in range(2):
            emu.send("push", sender=SENDER, address_id=sub["address_id"], count=1, text_size=text_size)
            relay.receive(1, on_message=captured.append, measure_frame=True)
            emu.result()
            frame = relay.last_frame_bytes
            if frame == FRAME_BYTES:
                break
            text_size = max(10, text_size + FRAME_BYTES - frame)
    finally:
        relay.close()
    return text_size, frame, captured[-1]


# -- throughput -----------------------------------------------------------------------------------
class _EmulatorPush:
    """Events from the emulator: built, stored and written by it while the clock runs."""

    label = "emulator"

    def __init__(self, emu: ServerProcess, sub: Dict[str, Any], text_size: int) -> None:
        self.emu, self.sub, self.text_size = emu, sub, text_size

    def prepare(self, count: int) -> None:
        self.count = count

    def start(self) -> None:
        self.emu.send("push", sender=SENDER, address_id=self.sub["address_id"], count=self.count,
                      text_size=self.text_size)

    def finish(self) -> float:
        return float(self.emu.result(timeout=300)["seconds"])

    def unacked(self) -> int:
        name = self.sub["name"]
        wait_until(lambda: self.emu.call("unacked", subscriber=name) == 0, timeout=5.0, interval=0.05)
        return int(self.emu.call("unacked", subscriber=name))


class _BlastPush:
    """Events from a blast server: framed before the clock starts, written in one go."""

    def __init__(self, blast: ServerProcess, flavour: str, payload: Dict[str, Any]) -> None:
        self.blast, self.flavour, self.payload = blast, flavour, payload
        self.label = f"blast-{flavour}"

    def prepare(self, count: int) -> None:
        self.blast.call("reset", flavour=self.flavour)
        self.blast.call("prepare", flavour=self.flavour, count=count, payload=self.payload, timeout=300)

    def start(self) -> None:
        self.blast.send("blast", flavour=self.flavour)

    def finish(self) -> float:
        return float(self.blast.result(timeout=300)["seconds"])

    def unacked(self) -> int:
        wait_until(lambda: self.blast.call("stats", flavour=self.flavour)["pending"] == 0, timeout=5.0,
                   interval=0.05)
        return int(self.blast.call("stats", flavour=self.flavour)["pending"])


def _raw_throughput(push: Any, relay_url: str, token: str, size: Size, skip_utf8: bool = True) -> Tuple[float, float, int]:
    relay = RawRelay(relay_url, token, skip_utf8_validation=skip_utf8)
    try:
        push.prepare(size.rt_warmup)
        push.start()
        relay.receive(size.rt_warmup)
        push.finish()
        push.unacked()
        push.prepare(size.rt_events)
        cpu = time.process_time()
        started = time.perf_counter()
        push.start()
        ended = relay.receive(size.rt_events)
        cpu = time.process_time() - cpu
        server_seconds = push.finish()
        unacked = push.unacked()
    finally:
        relay.close()
    _CPU.append(cpu / size.rt_events)
    return size.rt_events / (ended - started), server_seconds, unacked


def _measure_callbacks(label: str, push: Any, counter: Counter, size: Size, timeout: float) -> Tuple[float, float, int]:
    """Warm up, then time ``size.rt_events`` events reaching a connected client's ``counter``:
    (events/s, the server's seconds, events left unacked)."""
    counter.arm(size.rt_warmup)
    push.prepare(size.rt_warmup)
    push.start()
    if not counter.wait(timeout):
        raise TimeoutError(f"{label}: {counter.count}/{size.rt_warmup} warm-up events in {timeout} s")
    push.finish()
    push.unacked()
    push.prepare(size.rt_events)
    counter.arm(size.rt_events)
    cpu = time.process_time()
    started = time.perf_counter()
    push.start()
    if not counter.wait(timeout):
        raise TimeoutError(f"{label}: {counter.count}/{size.rt_events} events in {timeout} s")
    _CPU.append((time.process_time() - cpu) / size.rt_events)
    server_seconds = push.finish()
    return size.rt_events / (counter.last - started), server_seconds, push.unacked()


def _sdk_throughput(
    push: Any, urls: Dict[str, Any], relay_url: str, token: str, size: Size, hub: bool = False
) -> Tuple[float, float, int]:
    client_cls = load_client()
    counter = Counter()
    timeout = 30.0 + size.rt_events / 1000.0
    the_hub = None
    if hub:
        from signalwire_conversation import RealtimeHub

        the_hub = RealtimeHub()
    client = client_cls(token=token, base_url=urls["base_url"], relay_url=relay_url, hub=the_hub)
    try:
        client.conversation.subscribe(lambda event: counter.hit_one_thread())
        return _measure_callbacks("SDK", push, counter, size, timeout)
    finally:
        client.close()
        if the_hub is not None:
            the_hub.close()


def slack_payload(sample: Dict[str, Any]) -> Dict[str, Any]:
    """The emulator's payload, its text resized so a Slack envelope is ``FRAME_BYTES`` long."""
    payload = dict(sample)
    text = str(payload.get("text") or "")

    def frame_len(p: Dict[str, Any]) -> int:
        body = dict(p, event_ts=f"{time.time():.6f}")
        envelope = {
            "envelope_id": "8a4a6f30-32c8-4a7c-9bd0-7d3cc54f0fbe",
            "payload": {"type": "event_callback", "event": body, "event_id": "Ev00000000"},
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        return len(json.dumps(envelope).encode())

    payload["text"] = text
    delta = FRAME_BYTES - frame_len(payload)
    payload["text"] = text + "z" * delta if delta >= 0 else text[: max(0, len(text) + delta)]
    return payload


def _slack_throughput(push: _BlastPush, api_url: str, size: Size) -> Tuple[float, float, int]:
    from slack_sdk.socket_mode.builtin import SocketModeClient
    from slack_sdk.socket_mode.response import SocketModeResponse
    from slack_sdk.web import WebClient

    counter = Counter()
    timeout = 30.0 + size.rt_events / 1000.0

    def listener(client: Any, request: Any) -> None:
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        counter.hit()

    client = SocketModeClient(
        app_token="xapp-1-A0BENCH-0-bench",
        web_client=WebClient(token="xoxb-bench", base_url=api_url),
        auto_reconnect_enabled=False,
        # the default (5 s) for real figures; the tiny smoke run would wait that long in close()
        ping_interval=5 if size.rt_events >= 5000 else 0.5,
    )
    client.socket_mode_request_listeners.append(listener)
    # slack_sdk's builtin frame parser (socket_mode/builtin/internals.py ``_fetch_messages``)
    # recurses once per frame for as long as bytes keep arriving, so a sustained stream raises
    # RecursionError at the default limit and the connection dies. Lift the limit for the row
    # (Python >= 3.11 does not use the C stack for these calls) and say so in the notes.
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 50 * size.rt_events + 10_000))
    try:
        client.connect()
        if not wait_until(lambda: push.blast.call("stats", flavour="slack")["connections"] == 1, timeout=10):
            raise TimeoutError("slack_sdk did not connect within 10 s")
        return _measure_callbacks("slack_sdk", push, counter, size, timeout)
    finally:
        client.close()
        sys.setrecursionlimit(old_limit)


def run_throughput(size: Size) -> CaseResult:
    result = CaseResult("throughput", f"realtime throughput, {size.rt_events:,} conversation.message events")
    figures: Dict[str, List[float]] = {k: [] for k in ("emu_raw", "emu_sdk", "raw", "sdk", "hub", "slack")}
    server_s: Dict[str, List[float]] = {k: [] for k in figures}
    unacked: Dict[str, int] = {k: 0 for k in figures}
    cpu_us: Dict[str, List[float]] = {k: [] for k in figures}
    errors: Dict[str, str] = {}
    with ServerProcess("emulator") as emu, ServerProcess("blast") as blast:
        urls, subs = _start_emulator(emu, ["raw", "sdk"])
        blast_urls = blast.call("start")
        text_size, frame_bytes, sample = calibrate(emu, urls, subs["raw"])
        relay_payload = dict(sample, text=bench_text(0, text_size))
        emu_raw = _EmulatorPush(emu, subs["raw"], text_size)
        emu_sdk = _EmulatorPush(emu, subs["sdk"], text_size)
        relay_push = _BlastPush(blast, "relay", relay_payload)
        slack_push = _BlastPush(blast, "slack", slack_payload(relay_payload))
        token = subs["sdk"]["token"]
        runs: List[Tuple[str, Any]] = [
            ("raw", lambda: _raw_throughput(relay_push, blast_urls["relay_url"], token, size)),
            ("sdk", lambda: _sdk_throughput(relay_push, urls, blast_urls["relay_url"], token, size)),
            ("hub", lambda: _sdk_throughput(relay_push, urls, blast_urls["relay_url"], token, size, hub=True)),
            ("slack", lambda: _slack_throughput(slack_push, blast_urls["api_url"], size)),
            ("emu_raw", lambda: _raw_throughput(emu_raw, urls["relay_url"], subs["raw"]["token"], size)),
            ("emu_sdk", lambda: _sdk_throughput(emu_sdk, urls, urls["relay_url"], token, size)),
        ]
        for _ in range(size.repeats):  # interleaved, so noise hits every row
            for name, fn in runs:
                if name in errors:
                    continue
                try:
                    eps, secs, left = fn()
                except (SDKUnavailable, ImportError) as exc:
                    errors[name] = str(exc)
                    continue
                cpu_us[name].append(_CPU[-1] * 1e6)
                figures[name].append(eps)
                server_s[name].append(secs)
                unacked[name] = max(unacked[name], left)
        defaults_eps, _, _ = _raw_throughput(relay_push, blast_urls["relay_url"], token, size, skip_utf8=False)

    top = {k: best(v, True) for k, v in figures.items()}
    result.rows.append(Row("events/s vs raw websocket-client", "ev/s", top["sdk"], top["raw"], op=">=", bound=0.90))
    result.rows.append(Row("events/s, one client alone on a RealtimeHub, vs raw websocket-client", "ev/s",
                           top["hub"], top["raw"], op=">=", bound=1.5))
    result.rows.append(Row("events/s vs slack_sdk SocketModeClient", "ev/s", top["sdk"], top["slack"], op=">=",
                           bound=2.0, reference="slack_sdk"))
    result.rows.append(Row("emulator-bound: events/s vs raw", "ev/s", top["emu_sdk"], top["emu_raw"], op=">=",
                           bound=0.90))
    result.rows.append(Row("events left unacked after a run", "events",
                           float(max(unacked["sdk"], unacked["emu_sdk"])) if figures["sdk"] else None,
                           float(max(unacked["raw"], unacked["emu_raw"])), compare="value", op="==", bound=0))
    result.notes.append(
        f"first two rows: a blast server that frames every event before the clock starts and writes them "
        f"in one go (benchmarks/_blast.py), so the client is the bottleneck; third row: the emulator pushing"
    )
    result.notes.append(f"frames {frame_bytes} bytes; best of {size.repeats}; every run (ev/s): "
                        + "; ".join(f"{k} {_fmt_list(v)}" for k, v in figures.items()))
    result.notes.append(
        "client CPU per event, µs (best; every thread of the client process; less sensitive to a "
        "loaded machine than events/s): "
        + ", ".join(f"{k} {min(v):.1f}" for k, v in cpu_us.items() if v)
    )
    result.notes.append(
        f"raw loop with websocket-client defaults (UTF-8 check on): {defaults_eps:,.0f} ev/s"
        + (f" ({defaults_eps / top['raw']:.2f} of the floor)" if top["raw"] else "")
    )
    emu_cap = server_s["emu_raw"] and size.rt_events / min(server_s["emu_raw"])
    if emu_cap:
        result.notes.append(f"emulator push time with the raw client: {_fmt_list(server_s['emu_raw'], 2)} s "
                            f"(the emulator is the bottleneck when this is close to events/rate)")
    if figures["slack"]:
        result.notes.append(f"slack_sdk events left unacked: {unacked['slack']}; its recursion limit is lifted "
                            f"for the run (its frame parser recurses per frame under a sustained stream)")
    for name, err in errors.items():
        result.notes.append(f"{name} rows skipped: {err}")
    return result


def _fmt_list(values: List[float], digits: int = 0) -> str:
    return "[" + ", ".join(f"{v:,.{digits}f}" for v in values) + "]"


# -- latency --------------------------------------------------------------------------------------
def _raw_latency(emu: ServerProcess, urls: Dict[str, Any], sub: Dict[str, Any], size: Size, text_size: int,
                 warmup: int) -> List[float]:
    samples: List[float] = []

    def on_message(payload: Dict[str, Any]) -> None:
        samples.append(time.perf_counter() - sent_at(payload.get("text")))

    relay = RawRelay(urls["relay_url"], sub["token"])
    try:
        total = warmup + size.latency_events
        emu.send("paced", sender=SENDER, address_id=sub["address_id"], count=total,
                 rate=size.latency_rate, text_size=text_size)
        relay.receive(total, on_message=on_message)
        emu.result()
    finally:
        relay.close()
    return samples[warmup:]


def _sdk_latency(emu: ServerProcess, urls: Dict[str, Any], sub: Dict[str, Any], size: Size, text_size: int,
                 warmup: int) -> List[float]:
    client_cls = load_client()
    samples: List[float] = []
    counter = Counter()

    def callback(event: Any) -> None:
        samples.append(time.perf_counter() - sent_at(event.text))
        counter.hit_one_thread()

    total = warmup + size.latency_events
    timeout = 30.0 + total / size.latency_rate
    client = client_cls(token=sub["token"], base_url=urls["base_url"], relay_url=urls["relay_url"])
    try:
        client.conversation.subscribe(callback)
        counter.arm(total)
        emu.send("paced", sender=SENDER, address_id=sub["address_id"], count=total,
                 rate=size.latency_rate, text_size=text_size)
        if not counter.wait(timeout):
            raise TimeoutError(f"SDK: {counter.count}/{total} events in {timeout} s")
        emu.result()
    finally:
        client.close()
    return samples[warmup:]


def run_latency(size: Size) -> CaseResult:
    result = CaseResult(
        "latency",
        f"realtime latency, emulator send -> callback start, {size.latency_events:,} events at "
        f"{size.latency_rate:,.0f}/s",
    )
    raw: List[float] = []
    sdk: List[float] = []
    sdk_error: Optional[str] = None
    warmup = max(5, size.latency_events // 20)
    with ServerProcess("emulator") as emu:
        urls, subs = _start_emulator(emu, ["raw", "sdk"])
        text_size, frame_bytes, _ = calibrate(emu, urls, subs["raw"])
        for _ in range(size.repeats):
            raw.extend(_raw_latency(emu, urls, subs["raw"], size, text_size, warmup))
            if sdk_error is None:
                try:
                    sdk.extend(_sdk_latency(emu, urls, subs["sdk"], size, text_size, warmup))
                except SDKUnavailable as exc:
                    sdk_error = str(exc)

    def ms(values: List[float], q: float) -> Optional[float]:
        return percentile(values, q) * 1000.0 if values else None

    result.rows.append(Row("p50 latency", "ms", ms(sdk, 50), ms(raw, 50), compare="delta", op="<=", bound=0.3))
    result.rows.append(Row("p99 latency", "ms", ms(sdk, 99), ms(raw, 99), compare="delta", op="<=", bound=2.0))
    result.rows.append(Row("p90 latency", "ms", ms(sdk, 90), ms(raw, 90), compare="delta"))
    result.rows.append(Row("max latency", "ms", ms(sdk, 100), ms(raw, 100), compare="delta"))
    result.notes.append(
        f"{len(raw)} raw and {len(sdk)} SDK samples over {size.repeats} interleaved run(s); frames {frame_bytes} B"
    )
    if sdk_error:
        result.notes.append(f"SDK rows skipped: {sdk_error}")
    return result
