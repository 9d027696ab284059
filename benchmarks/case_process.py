"""Cases 6 and 7: import time and memory, each measured in fresh processes.

Import: ``python -X importtime -c "import X"``, the cumulative time of the top-level module
``X`` (best of N fresh processes), for ``signalwire_conversation`` and ``requests``; and which
heavy modules ``import signalwire_conversation`` pulls in (it must pull in none).

Memory: a fresh process iterates N messages from the emulator and reports its peak RSS
(``VmHWM``) over its baseline (after imports, ``Client()`` and a warm-up request); the raw
reference is the same walk with ``requests`` + ``json.loads`` keeping nothing. Idle listener: a
fresh process subscribes and then sits idle; its thread count and CPU time over the idle window.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

from ._common import Size, best
from ._report import CaseResult, Row
from ._serve import REPO_ROOT, ServerProcess

#: modules ``import signalwire_conversation`` must not import (they load on first use: the import stays light)
HEAVY = (
    "signalwire_conversation.testing",
    "signalwire_conversation.cli",
    "signalwire_conversation.demo",
    "signalwire_conversation.fanout",
    "websockets",
    "redis",
)
#: informational: the other notable libraries it imports
NOTABLE = ("signalwire_conversation.realtime", "asyncio", "requests", "urllib3", "websocket", "attrs", "attr", "cattrs", "charset_normalizer", "idna", "certifi")

_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _import_env(pycache: str) -> Dict[str, str]:
    # Installed packages have their bytecode compiled at install time; a repo checkout run with
    # PYTHONDONTWRITEBYTECODE would recompile the SDK (only) in every process. Compile
    # everything once into a private cache and measure with warm bytecode on both sides.
    env = _env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def import_time_us(module: str, pycache: str) -> int:
    """The cumulative ``-X importtime`` figure of ``module`` in a fresh interpreter (µs)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, env=_import_env(pycache), cwd=REPO_ROOT, timeout=60, check=True,
    )
    for line in proc.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m and m.group(4) == module and m.group(3) == " ":
            return int(m.group(2))
    raise RuntimeError(f"no -X importtime line for {module}")


def imported_modules(module: str) -> List[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=REPO_ROOT, timeout=60, check=True)
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_import(size: Size) -> CaseResult:
    result = CaseResult("import", "import time in fresh processes (python -X importtime)")
    sdk: List[int] = []
    req: List[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        import_time_us("signalwire_conversation", pycache)  # compile once (warm bytecode)
        import_time_us("requests", pycache)
        for _ in range(size.import_runs):  # alternate, so noise hits both
            sdk.append(import_time_us("signalwire_conversation", pycache))
            req.append(import_time_us("requests", pycache))
    sdk_ms = best([v / 1000 for v in sdk], False)
    req_ms = best([v / 1000 for v in req], False)
    result.rows.append(Row("import time vs requests", "ms", sdk_ms, req_ms, op="<=", bound=1.3,
                           reference="requests"))
    modules = imported_modules("signalwire_conversation")
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    result.rows.append(Row("heavy modules imported", "modules", float(len(heavy)), compare="value",
                           op="==", bound=0, note=", ".join(heavy) if heavy else ""))
    notable = [m for m in NOTABLE if m in modules]
    own = sorted(m for m in modules if m.startswith("signalwire_conversation"))
    result.notes.append(f"best of {size.import_runs} fresh processes each, warm bytecode; "
                        f"medians {sorted(sdk)[len(sdk) // 2] / 1000:.1f} ms SDK, "
                        f"{sorted(req)[len(req) // 2] / 1000:.1f} ms requests")
    result.notes.append(f"imports {', '.join(notable)}; own modules: {', '.join(own)}")
    return result


# -- memory and idle: the child side ------------------------------------------------------------------
def _rss_kb() -> Dict[str, int]:
    # VmHWM (the peak RSS of this process image), not ru_maxrss: Linux carries ru_maxrss over
    # execve, so a child of a big parent would start with the parent's peak.
    out = {"maxrss_kb": 0, "rss_kb": 0, "threads": 0}
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    out["maxrss_kb"] = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
    except OSError:  # not Linux: fall back on getrusage (kB on Linux, bytes on macOS)
        import resource

        out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


def _child_iterate(args: Dict[str, Any]) -> Dict[str, Any]:
    import time

    base, token, page = args["base_url"], args["token"], args["page_size"]
    if args["mode"] == "raw":
        from ._raw import raw_paging, raw_session

        session = raw_session(token)
        session.get(base + "/api/fabric/messages", params={"page_size": 1}, timeout=30).raise_for_status()
        before = _rss_kb()
        started = time.perf_counter()
        count = raw_paging(session, base, "/api/fabric/messages", page)
    else:
        from signalwire_conversation import Client

        client = Client(token=token, base_url=base)
        for _ in client.conversation.get_messages(page_size=1, limit=1):
            pass
        before = _rss_kb()
        started = time.perf_counter()
        count = 0
        for _ in client.conversation.get_messages(page_size=page):
            count += 1
    seconds = time.perf_counter() - started
    after = _rss_kb()
    return {"count": count, "seconds": seconds, "before": before, "after": after}


def _child_idle(args: Dict[str, Any]) -> Dict[str, Any]:
    import threading
    import time

    from signalwire_conversation import Client

    client = Client(token=args["token"], base_url=args["base_url"])
    before = _rss_kb()
    py_before = threading.active_count()
    client.conversation.subscribe(lambda event: None)
    time.sleep(0.3)  # settle: connect result, first ping
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    time.sleep(args["seconds"])  # the measurement: the listener idles meanwhile
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    during = _rss_kb()
    py_during = threading.active_count()
    client.close()
    after_close = threading.active_count()
    return {
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "threads_before": before["threads"],
        "threads_during": during["threads"],
        "py_threads_before": py_before,
        "py_threads_during": py_during,
        "py_threads_after_close": after_close,
    }


def _run_child(kind: str, args: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.case_process", kind, json.dumps(args)],
        capture_output=True, text=True, env=_env(), cwd=REPO_ROOT, timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_memory(size: Size) -> CaseResult:
    n = size.memory_items
    result = CaseResult("memory", f"memory: iterating {n:,} messages; an idle listener for {size.idle_seconds:g} s")
    sdk_error: Optional[str] = None
    with ServerProcess("emulator") as emu:
        urls = emu.call("start")
        emu.call("add_subscriber", name="alice")
        bob = emu.call("add_subscriber", name="bob")
        seeded = emu.call("seed", sender="alice", address_id=bob["address_id"], count=n, text_size=120, timeout=900)
        args = {"base_url": urls["base_url"], "token": bob["token"], "page_size": size.page_size}
        raw = _run_child("iterate", dict(args, mode="raw"), timeout=600)
        try:
            sdk: Optional[Dict[str, Any]] = _run_child("iterate", dict(args, mode="sdk"), timeout=600)
        except RuntimeError as exc:
            sdk, sdk_error = None, str(exc)
        try:
            idle: Optional[Dict[str, Any]] = _run_child("idle", dict(args, seconds=size.idle_seconds),
                                                        timeout=60 + size.idle_seconds)
        except RuntimeError as exc:
            idle, sdk_error = None, sdk_error or str(exc)

    def growth_mb(d: Optional[Dict[str, Any]]) -> Optional[float]:
        if d is None:
            return None
        return (d["after"]["maxrss_kb"] - d["before"]["maxrss_kb"]) / 1024.0

    result.rows.append(Row(f"peak RSS growth over {n:,} messages", "MB", growth_mb(sdk), growth_mb(raw),
                           compare="value", op="<=", bound=20.0))
    if idle is not None:
        added = idle["threads_during"] - idle["threads_before"]
        cpu_pct = 100.0 * idle["cpu_seconds"] / idle["wall_seconds"]
        # reader + dispatcher (docs/concepts/threading.md) + the token refresher, all blocked when idle
        result.rows.append(Row("threads added by a listener", "threads", float(added), compare="value",
                               op="<=", bound=3.0))
        result.rows.append(Row("idle listener CPU", "% of a core", cpu_pct, compare="value", op="<=", bound=1.0))
        result.rows.append(Row("threads left after close()", "threads",
                               float(idle["py_threads_after_close"] - idle["py_threads_before"]),
                               compare="value", op="==", bound=0))
        result.notes.append(
            f"idle: {idle['cpu_seconds'] * 1000:.1f} ms CPU in {idle['wall_seconds']:.2f} s; threads "
            f"{idle['threads_before']} -> {idle['threads_during']} (OS), Python "
            f"{idle['py_threads_before']} -> {idle['py_threads_during']} -> {idle['py_threads_after_close']} after close"
        )
    for who, d in (("raw", raw), ("SDK", sdk)):
        if d is not None:
            result.notes.append(
                f"{who}: {d['count']:,} items in {d['seconds']:.2f} s; baseline maxrss "
                f"{d['before']['maxrss_kb'] / 1024:.1f} MB -> peak {d['after']['maxrss_kb'] / 1024:.1f} MB"
            )
    result.notes.append(f"seeded {n:,} messages in {seeded['seconds']:.1f} s (server process)")
    if sdk_error:
        result.notes.append(f"SDK rows skipped: {sdk_error}")
    return result


if __name__ == "__main__":
    _kind, _args = sys.argv[1], json.loads(sys.argv[2])
    _out = {"iterate": _child_iterate, "idle": _child_idle}[_kind](_args)
    print(json.dumps(_out))
