"""Run the benchmark suite: ``python -m benchmarks [--size tiny|full] [--case NAME ...]``.

Every case runs against servers on loopback started here (the emulator and a Slack-shaped
socket-mode server, each in its own process) and prints one table: the SDK figure, the
reference it is compared with (the raw floor, or slack_sdk), the ratio or difference, the
target and PASS/FAIL. The figures also go to ``benchmarks/results/`` as JSON
(``latest-<size>.json`` and a timestamped copy). The exit status is 0 whatever the verdicts
(unless ``--strict``): the figures of a noisy machine are information, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # ``python benchmarks/run.py``
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks._common import SIZES, Size  # noqa: E402
from benchmarks._report import CaseResult, machine, render, write_results  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _cases() -> Dict[str, Callable[[Size], CaseResult]]:
    from benchmarks import case_hub, case_process, case_realtime, case_recovery, case_rest

    return {
        "paging": case_rest.run_paging,
        "decode": case_rest.run_decode,
        "throughput": case_realtime.run_throughput,
        "latency": case_realtime.run_latency,
        "recovery": case_recovery.run_recovery,
        "import": case_process.run_import,
        "memory": case_process.run_memory,
        "hub": case_hub.run_hub,
    }


CASE_NAMES = ("paging", "decode", "throughput", "latency", "recovery", "import", "memory", "hub")


def run(size: Size, names: Sequence[str], echo: Callable[[str], None] = print) -> List[CaseResult]:
    cases = _cases()
    results: List[CaseResult] = []
    for name in names:
        started = time.perf_counter()
        try:
            result = cases[name](size)
        except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
            result = CaseResult(name, "(failed)", error=f"{type(exc).__name__}: {exc}")
            result.notes.append(traceback.format_exc().strip().splitlines()[-3])
        result.seconds = time.perf_counter() - started
        results.append(result)
        echo(render(result))
        echo("")
    return results


def summary(results: Sequence[CaseResult]) -> str:
    verdict = {True: "PASS", False: "FAIL", None: "-"}
    return "summary: " + ", ".join(f"{r.name} {verdict[r.passed]}" for r in results)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the figures of docs/performance.md; tiny: a smoke run (default: full)")
    parser.add_argument("--case", action="append", choices=CASE_NAMES, dest="cases",
                        help="run only this case (repeatable; default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per row (best is kept)")
    parser.add_argument("--output", default=None, help="results JSON path (default: benchmarks/results/)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    size = SIZES[args.size]
    if args.repeats is not None:
        from dataclasses import replace

        size = replace(size, repeats=max(1, args.repeats))
    info = machine()
    print(f"signalwire-conversation benchmarks, size {size.name}: {info['nproc']} cores, {info['cpu']}, "
          f"Python {info['python']}, load {info['loadavg_at_start']}")
    print("")
    results = run(size, args.cases or CASE_NAMES)
    print(summary(results))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = [args.output] if args.output else [
        os.path.join(RESULTS_DIR, f"latest-{size.name}.json"),
        os.path.join(RESULTS_DIR, f"results-{size.name}-{stamp}.json"),
    ]
    for path in paths:
        write_results(path, size.name, results, info)
    print(f"results: {paths[0]}")
    if args.strict and any(r.passed is False for r in results):
        return 1
    if any(r.error for r in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
