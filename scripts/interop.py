#!/usr/bin/env python3
"""Drive the official SignalWire JS client against the emulator (the project's interop harness).

The harness lives in ``tests/interop/``: ``harness.js`` and a ``package.json`` +
``package-lock.json`` pinning ``@signalwire/client``. This script installs those packages with
``npm ci`` into ``tests/interop/node_modules`` (once per lock file: a stamp there records which),
starts ``python -m signalwire_conversation.testing --seed demo --json`` (what the
``signalwire-conversation emulator`` command runs) in a child process, runs ``node harness.js``
against it (TOKEN_A = alice, TOKEN_B = bob, CONTROL_URL = the emulator's control API, INJECT =
its ``inject`` control so one inbound message takes the ``send_message`` path), prints a
one-line verdict per step and exits 0 only if every required step passed.

    python scripts/interop.py [--out summary.json] [-v]

Needs node >= 18 and npm on PATH, and the npm registry for the first install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
HARNESS_DIR = ROOT / "tests" / "interop"
MIN_NODE = 18  # the harness uses the global fetch


def missing_tools() -> Optional[str]:
    """Why the harness cannot run here (no node/npm, or a node older than 18), or None."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} on PATH"
    version = subprocess.run(["node", "--version"], stdout=subprocess.PIPE, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < MIN_NODE:
        return f"needs node >= {MIN_NODE}, found {version or 'an unknown version'}"
    return None


def install(directory: Path = HARNESS_DIR, *, timeout: float = 600.0) -> None:
    """``npm ci`` in ``directory``, unless its node_modules already holds this lock file's packages."""
    digest = hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()
    stamp = directory / "node_modules" / ".installed-from-lock"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=str(directory),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {directory} failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
    stamp.write_text(digest + "\n")


def start_emulator(python: str, extra: List[str]) -> "tuple[subprocess.Popen[str], Dict[str, Any]]":
    cmd = [python, "-m", "signalwire_conversation.testing", "--seed", "demo", "--json", "--ping-interval", "1"]
    proc = subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"the emulator did not start (exit status {proc.wait(5)})")
    return proc, json.loads(line)


def run(directory: Path = HARNESS_DIR, *, out: Optional[str] = None, verbose: bool = False,
        timeout: float = 600.0, python: str = sys.executable) -> "tuple[int, Dict[str, Any]]":
    """Install the harness if needed, run it against a fresh emulator: (exit status, summary)."""
    install(directory, timeout=timeout)
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
        result = subprocess.run(
            ["node", str(directory / "harness.js")], cwd=str(directory), env=env,
            stdout=subprocess.PIPE, text=True, timeout=timeout,
        )
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
    parser.add_argument("--out", help="write the harness's JSON summary here")
    parser.add_argument("-v", "--verbose", action="store_true", help="the harness logs each step on stderr")
    args = parser.parse_args(argv)
    why_not = missing_tools()
    if why_not:
        print(f"interop: {why_not}", file=sys.stderr)
        return 2
    code, summary = run(out=args.out, verbose=args.verbose)
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
