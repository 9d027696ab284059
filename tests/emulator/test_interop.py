"""The official SignalWire JS client (@signalwire/client from npm) against the emulator.

Runs ``scripts/interop.py``, which installs the project's harness (``tests/interop/``: its
``package-lock.json`` pins the client) with ``npm ci`` on the first run, starts ``python -m
signalwire_conversation.testing --seed demo`` and drives ``tests/interop/harness.js`` against it.
Skipped, with the reason, only when node (>= 18) or npm is missing; an install that fails is a
failure.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "interop.py"


def why_not() -> "str | None":
    """The script's own check (no node/npm, or too old a node)."""
    spec = importlib.util.spec_from_file_location("interop_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    reason: "str | None" = script.missing_tools()
    return reason


@pytest.mark.interop
def test_official_js_client_passes_every_step(tmp_path: Path) -> None:
    reason = why_not()
    if reason:
        pytest.skip(f"interop {reason} (apt-get install nodejs npm)")
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900,
    )
    if not out.is_file():
        pytest.fail(f"the harness wrote no summary (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads(out.read_text())
    assert summary["client"]["package"] == "@signalwire/client"
    steps = summary["steps"]
    failed = [f"{s['name']}: {s.get('error')}" for s in steps if not s["ok"] and not s.get("skipped")]
    assert not failed, "\n".join(failed) + "\n" + proc.stdout[-2000:]
    assert summary["ok"] and proc.returncode == 0
    assert [s["name"] for s in steps if s.get("skipped")] == []
    assert len([s for s in steps if s["ok"]]) >= 27
