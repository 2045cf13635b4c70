"""Benchmark: the bundled demo (`examples/demo.toml`) end to end, as `make demo` runs it.

    python bench/bench_study_demo.py [--out DIR]

Prints the wall time and the CPU time of the whole study (on a shared machine the CPU time / cores is the
better guide to a quiet machine's wall time), the L(N) fit's R^2 (log space), the back-test of the largest
model (relative error and whether the 95 % prediction interval covers it) against the goals (R^2 >= 0.99,
|error| <= 3 %), and the three approaches' N_opt(C) exponents. Exits non-zero only when the study fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="study folder (default: a temporary folder)")
    a = ap.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="scalinglab-demo-"))
    from scalinglab.study import fitting
    from scalinglab.study.runner import run_study

    t0 = time.perf_counter()
    from scalinglab.report import build_report

    res = run_study(REPO / "examples" / "demo.toml", out, echo=print, report=build_report)
    wall = time.perf_counter() - t0
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    cores = os.cpu_count() or 1
    print(f"\nstudy folder: {out}")
    print(
        f"wall {wall:.0f} s; CPU {cpu:.0f} s on {cores} cores (CPU/cores {cpu / cores:.0f} s; goal 600 s)"
    )
    rows = {r["law"]: r for r in fitting.fit_rows(res["fits"])}
    ln = rows.get("L(N)")
    if ln is None:
        print("FAIL: no L(N) fit", file=sys.stderr)
        sys.exit(1)
    bt = ln["backtest"] or {}
    print(f"L(N): R^2(log) {ln['r2_log']:.4f} (goal >= 0.99)")
    if bt.get("rel_error") is not None:
        print(
            f"L(N) back-test, largest model: rel. error {100 * bt['rel_error']:+.2f} % (goal within 3 %), "
            f"observed {bt['observed'][-1]:.4f}, predicted {bt['predicted'][-1]:.4f}, "
            f"95 % interval [{bt['low'][-1]:.4f}, {bt['high'][-1]:.4f}], covered {bt['covered']}"
        )
    print(f"N_opt ~ C^a: {fitting.nopt_exponents(res['fits'])}")
    if res["runs"]["done"] == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
