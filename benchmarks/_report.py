"""Result rows, the table printer and the machine description shared by every case."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

#: How a row's SDK figure is compared with its reference (the "raw" column).
#: ``ratio``: sdk / raw, the target is a bound on the ratio. ``delta``: sdk - raw, the target is
#: a bound on the difference. ``value``: the SDK figure alone is held to the target.
COMPARISONS = ("ratio", "delta", "value")


@dataclass
class Row:
    """One line of a case's table."""

    metric: str
    unit: str
    sdk: Optional[float]
    raw: Optional[float] = None
    #: "ratio" | "delta" | "value" (see COMPARISONS)
    compare: str = "ratio"
    #: the bound, e.g. ("<=", 1.10); None: informational row
    op: Optional[str] = None
    bound: Optional[float] = None
    #: a label for the raw column when it is not the raw floor (e.g. "slack_sdk")
    reference: str = "raw"
    note: str = ""

    @property
    def relative(self) -> Optional[float]:
        if self.sdk is None:
            return None
        if self.compare == "value":
            return self.sdk
        if self.raw is None:
            return None
        if self.compare == "delta":
            return self.sdk - self.raw
        if self.raw == 0:
            return None
        return self.sdk / self.raw

    @property
    def passed(self) -> Optional[bool]:
        rel = self.relative
        if self.op is None or self.bound is None or rel is None:
            return None
        if self.op == "<=":
            return rel <= self.bound
        if self.op == ">=":
            return rel >= self.bound
        if self.op == "==":
            return rel == self.bound
        raise ValueError(f"unknown comparison operator {self.op!r}")

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d["relative"] = self.relative
        d["passed"] = self.passed
        return d


@dataclass
class CaseResult:
    """What one case measured."""

    name: str
    title: str
    rows: List[Row] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def passed(self) -> Optional[bool]:
        verdicts = [r.passed for r in self.rows if r.passed is not None]
        if self.error is not None:
            return False
        if not verdicts:
            return None
        return all(verdicts)

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "rows": [r.to_json() for r in self.rows],
            "notes": list(self.notes),
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
        }


def fmt_number(value: Optional[float]) -> str:
    """Three significant digits, with thousands separators for big numbers."""
    if value is None:
        return "n/a"
    if value != value:  # NaN
        return "nan"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _fmt_relative(row: Row) -> str:
    rel = row.relative
    if rel is None:
        return "n/a" if row.compare != "value" else ""
    if row.compare == "ratio":
        return f"{rel:.2f}x"
    if row.compare == "delta":
        return f"{rel:+.3g}"
    return ""


def _fmt_target(row: Row) -> str:
    if row.op is None or row.bound is None:
        return ""
    what = {"ratio": "ratio", "delta": "diff", "value": row.unit or "value"}[row.compare]
    bound = f"{row.bound:g}" + ("x" if row.compare == "ratio" else "")
    return f"{what} {row.op} {bound}"


def _verdict(passed: Optional[bool]) -> str:
    return {True: "PASS", False: "FAIL", None: "-"}[passed]


def render(result: CaseResult) -> str:
    """The table of one case, as printed by the runner."""
    header = ("metric", "unit", "SDK", "reference", "ratio/diff", "target", "result")
    lines: List[List[str]] = []
    for row in result.rows:
        ref = "" if row.raw is None else f"{fmt_number(row.raw)} ({row.reference})"
        lines.append(
            [
                row.metric,
                row.unit,
                fmt_number(row.sdk),
                ref,
                _fmt_relative(row),
                _fmt_target(row),
                _verdict(row.passed),
            ]
        )
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    right = {2, 3, 4}

    def fmt(cells: List[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [f"== {result.name}: {result.title}  [{_verdict(result.passed)}, {result.seconds:.1f} s]"]
    out.append(fmt(list(header)))
    out.append(fmt(["-" * w for w in widths]))
    out.extend(fmt(line) for line in lines)
    for row in result.rows:
        if row.note:
            out.append(f"   * {row.metric}: {row.note}")
    for note in result.notes:
        out.append(f"   - {note}")
    if result.error:
        out.append(f"   ! error: {result.error}")
    return "\n".join(out)


def machine() -> Dict[str, Any]:
    """Where the figures were taken: cores, CPU model, Python, load at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load: Optional[List[float]] = list(os.getloadavg())
    except OSError:
        load = None
    versions: Dict[str, str] = {}
    for dist in ("requests", "websocket-client", "attrs", "cattrs", "slack_sdk", "websockets", "orjson"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - not installed
            pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
        "packages": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(path: str, size: str, results: List[CaseResult], info: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    doc = {"size": size, "machine": info, "cases": [r.to_json() for r in results]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
