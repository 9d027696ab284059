"""Smoke test of the benchmark suite: every case runs at the tiny size and produces numbers.

No timing assertion (figures from a shared CI machine are noise); the figures themselves are
taken with ``python -m benchmarks`` (docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

pytest.importorskip("websockets")  # the emulator's extra

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the suite lives beside the package, not in it
    sys.path.insert(0, ROOT)

from benchmarks.run import CASE_NAMES, main  # noqa: E402

HAVE_SLACK = importlib.util.find_spec("slack_sdk") is not None


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    code = main(["--size", "tiny", "--output", str(out)])
    assert code == 0, "a case failed: see the printed tables"
    doc = json.loads(out.read_text())
    by_name: Dict[str, Any] = {case["name"]: case for case in doc["cases"]}
    by_name["_doc"] = doc
    return by_name


def test_every_case_ran(results: Dict[str, Any]) -> None:
    assert [name for name in results if name != "_doc"] == list(CASE_NAMES)
    for name in CASE_NAMES:
        assert results[name]["error"] is None, results[name]
        assert results[name]["rows"], f"{name} printed no row"


def test_every_target_row_has_numbers(results: Dict[str, Any]) -> None:
    for name in CASE_NAMES:
        for row in results[name]["rows"]:
            if row["reference"] == "slack_sdk" and not HAVE_SLACK:
                continue
            if row["bound"] is None:
                continue
            assert row["sdk"] is not None, f"{name}: {row['metric']} has no SDK figure: {results[name]['notes']}"
            if row["compare"] != "value":
                assert row["raw"] is not None, f"{name}: {row['metric']} has no reference figure"
            assert row["passed"] in (True, False)


def test_correctness_rows_hold(results: Dict[str, Any]) -> None:
    """Counts are not timings: these must hold even on a loaded machine."""
    by_metric = {(case, row["metric"]): row for case in CASE_NAMES for row in results[case]["rows"]}
    assert by_metric[("throughput", "events left unacked after a run")]["passed"] is True
    assert by_metric[("recovery", "recovered by gap fill (min over rounds)")]["passed"] is True
    assert by_metric[("recovery", "missing or duplicated")]["passed"] is True
    assert by_metric[("import", "heavy modules imported")]["passed"] is True
    assert by_metric[("memory", "threads left after close()")]["passed"] is True
    assert by_metric[("hub", "delivered exactly once")]["passed"] is True
    assert by_metric[("hub", "SDK threads left after hub.close()")]["passed"] is True


def test_machine_is_described(results: Dict[str, Any]) -> None:
    machine = results["_doc"]["machine"]
    assert machine["nproc"] and machine["cpu"] and machine["python"]
    assert results["_doc"]["size"] == "tiny"
    assert all(isinstance(results[name]["seconds"], float) for name in CASE_NAMES)
