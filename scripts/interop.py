#!/usr/bin/env python3
"""Drive the official SignalWire JS client against the emulator (the shared interop harness).

Starts ``python -m signalwire_conversation.testing --seed demo --json`` (what the
``signalwire-conversation emulator`` command runs) in a child process, points
``../shared/interop/run.sh`` at it (TOKEN_A = alice, TOKEN_B = bob, CONTROL_URL = the emulator's
control API, INJECT = its ``inject`` control so one inbound message takes the ``send_message``
path), prints a one-line verdict per step and exits 0 only if every required step passed.

    python scripts/interop.py [--harness ../shared/interop/run.sh] [--out summary.json] [-v]

Needs node >= 18 and npm; the harness installs @signalwire/client from npm into
``$XDG_CACHE_HOME/signalwire-interop`` (or ``~/.cache``) on its first run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HARNESS = ROOT.parent / "shared" / "interop" / "run.sh"


def find_harness(explicit: Optional[str] = None) -> Optional[Path]:
    """The harness's run.sh: ``explicit``, ``$SIGNALWIRE_INTEROP_HARNESS`` or ``../shared/interop``."""
    for candidate in (explicit, os.environ.get("SIGNALWIRE_INTEROP_HARNESS"), str(DEFAULT_HARNESS)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def missing_tools() -> List[str]:
    return [tool for tool in ("node", "npm", "bash") if shutil.which(tool) is None]


def start_emulator(python: str, extra: List[str]) -> "tuple[subprocess.Popen[str], Dict[str, Any]]":
    cmd = [python, "-m", "signalwire_conversation.testing", "--seed", "demo", "--json", "--ping-interval", "1"]
    proc = subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"the emulator did not start (exit status {proc.wait(5)})")
    return proc, json.loads(line)


def run(harness: Path, *, out: Optional[str] = None, verbose: bool = False, timeout: float = 600.0,
        python: str = sys.executable) -> "tuple[int, Dict[str, Any]]":
    proc, info = start_emulator(python, [])
    try:
        subs = {s["name"]: s for s in info["subscribers"]}
        out_file = out or tempfile.mkstemp(prefix="interop-", suffix=".json")[1]
        env = dict(os.environ)
        env.update(
            BASE_URL=info["base_url"],
            WS_URL=info["relay_url"],
            TOKEN_A=subs["alice"]["token"],
            TOKEN_B=subs["bob"]["token"],
            CONTROL_URL=info["control_url"],
            INJECT=info["control_url"] + "/inject",
            OUT=out_file,
        )
        if verbose:
            env["VERBOSE"] = "1"
        result = subprocess.run(["bash", str(harness)], env=env, stdout=subprocess.PIPE, text=True, timeout=timeout)
        try:
            summary: Dict[str, Any] = json.loads(Path(out_file).read_text())
        except (OSError, ValueError):
            summary = {"ok": False, "steps": [], "stdout": result.stdout[-4000:]}
        return result.returncode, summary
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", help="path of run.sh (default: ../shared/interop/run.sh)")
    parser.add_argument("--out", help="write the harness's JSON summary here")
    parser.add_argument("-v", "--verbose", action="store_true", help="the harness logs each step on stderr")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"interop: needs {', '.join(missing)} on PATH", file=sys.stderr)
        return 2
    harness = find_harness(args.harness)
    if harness is None:
        print(f"interop: harness not found (looked for {DEFAULT_HARNESS})", file=sys.stderr)
        return 2
    code, summary = run(harness, out=args.out, verbose=args.verbose)
    client = summary.get("client", {})
    print(f"client: {client.get('package')} {client.get('version')} (core {client.get('core')}, node {client.get('node')})")
    for step in summary.get("steps", []):
        mark = "ok  " if step.get("ok") and not step.get("skipped") else ("skip" if step.get("skipped") else "FAIL")
        req = "required" if step.get("required") else "optional"
        extra = f" — {step.get('error')}" if step.get("error") else ""
        print(f"{mark} [{req}] {step.get('name')}{extra}")
    passed = sum(1 for s in summary.get("steps", []) if s.get("ok") and not s.get("skipped"))
    print(f"{passed}/{len(summary.get('steps', []))} steps passed; harness exit status {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
