"""Case 5: recovery after an abrupt drop.

The SDK's websocket goes through a TCP proxy in the server process (REST goes straight to the
emulator). One round: a few live messages; then the proxy resets every link (RST) and refuses
new ones while K messages are sent (so exactly K are sent while the client is down); then the
proxy listens again; as soon as the client reports ``CONNECTED`` a probe message is sent.
Figures: the time from the drop to the probe reaching the callback (the first live message
after the reconnect; gap-filled messages come first by design), the time from the link coming
back to the probe, and the count of messages delivered with ``recovered=True`` (must be K),
with no duplicate and in the order sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Tuple

from ._common import SDKUnavailable, Size, load_client, median
from ._report import CaseResult, Row
from ._serve import ServerProcess, bench_text


def _round(
    emu: ServerProcess, client: Any, seen: List[Tuple[float, str, bool]], connected: threading.Event,
    bob: dict, k: int, index: int, lock: threading.Lock,
) -> Tuple[float, float, int, int, int]:
    def texts_seen() -> List[str]:
        with lock:
            return [t for _, t, _ in seen]

    live = [f"live {index} {i} " + bench_text(i, 60) for i in range(3)]
    for text in live:
        emu.call("send", sender="alice", address_id=bob["address_id"], text=text)
    _wait(lambda: set(live) <= set(texts_seen()), 15, "live messages before the drop")
    with lock:
        mark = len(seen)
    down = [f"down {index} {i} " + bench_text(i, 60) for i in range(k)]
    connected.clear()
    t_down = float(emu.call("down_and_send", sender="alice", address_id=bob["address_id"], texts=down)["t_down"])
    t_up = float(emu.call("proxy_up")["t"])
    if not connected.wait(30):
        raise TimeoutError("the SDK did not report CONNECTED within 30 s of the link coming back")
    probe = f"probe {index}"
    emu.call("send", sender="alice", address_id=bob["address_id"], text=probe)
    _wait(lambda: probe in texts_seen(), 30, "the probe after the reconnect")
    with lock:
        after = seen[mark:]
    t_probe = next(t for t, text, _ in after if text == probe)
    recovered = [text for _, text, rec in after if rec and text.startswith(f"down {index} ")]
    delivered_down = [text for _, text, _ in after if text.startswith(f"down {index} ")]
    duplicates = len(delivered_down) - len(set(delivered_down))
    out_of_order = 0 if [t for t in delivered_down if t in set(down)] == [t for t in down if t in set(delivered_down)] else 1
    # the SDK delivers newest-first REST pages oldest-first; order here means the order sent
    missing = len(set(down) - set(delivered_down))
    return (t_probe - t_down) * 1000, (t_probe - t_up) * 1000, len(recovered), duplicates + missing, out_of_order


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.002)


def run_recovery(size: Size) -> CaseResult:
    k = size.recovery_down
    result = CaseResult("recovery", f"recovery after an abrupt drop, {k} messages sent while down")
    drop_ms: List[float] = []
    up_ms: List[float] = []
    recovered: List[int] = []
    bad = 0
    disorder = 0
    sdk_error: Optional[str] = None
    with ServerProcess("emulator") as emu:
        urls = emu.call("start")
        emu.call("add_subscriber", name="alice")
        bob = emu.call("add_subscriber", name="bob")
        relay = emu.call("proxy_start")["relay_url"]
        seen: List[Tuple[float, str, bool]] = []
        lock = threading.Lock()
        connected = threading.Event()

        def callback(event: Any) -> None:
            now = time.perf_counter()
            with lock:
                seen.append((now, event.text or "", bool(event.recovered)))

        def on_state(state: Any) -> None:
            if getattr(state, "name", str(state)) == "CONNECTED":
                connected.set()

        try:
            client = load_client()(token=bob["token"], base_url=urls["base_url"], relay_url=relay,
                                   on_state_change=on_state)
        except SDKUnavailable as exc:
            client, sdk_error = None, str(exc)
        if client is not None:
            try:
                client.conversation.subscribe(callback)
                for index in range(size.recovery_repeats):
                    d, u, r, b, o = _round(emu, client, seen, connected, bob, k, index, lock)
                    drop_ms.append(d)
                    up_ms.append(u)
                    recovered.append(r)
                    bad += b
                    disorder += o
            finally:
                client.close()

    have = bool(recovered)
    result.rows.append(Row("drop -> first live message (median)", "ms", median(drop_ms) if have else None))
    result.rows.append(Row("link back -> first live message (median)", "ms", median(up_ms) if have else None))
    result.rows.append(Row("link back -> first live message (max)", "ms", max(up_ms) if have else None))
    result.rows.append(Row("recovered by gap fill (min over rounds)", "messages", float(min(recovered)) if have else None,
                           float(k), compare="delta", op="==", bound=0, reference="sent while down"))
    result.rows.append(Row("missing or duplicated", "messages", float(bad) if have else None, compare="value",
                           op="==", bound=0))
    result.rows.append(Row("rounds out of order", "rounds", float(disorder) if have else None, compare="value",
                           op="==", bound=0))
    if have:
        result.notes.append(
            f"{len(recovered)} round(s); drop->live {', '.join(f'{v:.0f}' for v in drop_ms)} ms; "
            f"recovered {recovered}; the link stays down only while the {k} messages are sent"
        )
    if sdk_error:
        result.notes.append(f"SDK rows skipped: {sdk_error}")
    return result
