"""The official SignalWire JS client (@signalwire/client from npm) against the emulator.

Runs ``scripts/interop.py``, which starts ``python -m signalwire_conversation.testing --seed
demo`` and drives ``../shared/interop/run.sh`` (the shared harness beside the clone) against it.
Skipped, with the reason, when node/npm or the harness are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT.parent / "shared" / "interop" / "run.sh"


@pytest.mark.interop
def test_official_js_client_passes_every_step(tmp_path: Path) -> None:
    missing = [tool for tool in ("node", "npm", "bash") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"interop needs {', '.join(missing)} on PATH (apt-get install nodejs npm)")
    if not HARNESS.is_file():
        pytest.skip(f"interop harness not found at {HARNESS} (the shared/ directory beside the clone)")
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "interop.py"), "--harness", str(HARNESS), "--out", str(out)],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
    )
    if not out.is_file():
        pytest.fail(f"the harness wrote no summary (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads(out.read_text())
    steps = summary["steps"]
    failed = [f"{s['name']}: {s.get('error')}" for s in steps if not s["ok"] and not s.get("skipped")]
    assert not failed, "\n".join(failed) + "\n" + proc.stdout[-2000:]
    assert summary["ok"] and proc.returncode == 0
    assert len([s for s in steps if s["ok"] and not s.get("skipped")]) >= 27
