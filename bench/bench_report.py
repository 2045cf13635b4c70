"""Benchmark: the full report (figures as PNG + PDF, HTML) of a 50-run synthetic study.

Prints the wall and CPU time and a ratio against a reference measured in the same process: the time to
draw and save (PNG + PDF) one plain line plot in the report's style. ratio = report time / (reference x
figures): how many plain-plot saves each report figure costs, fits included (the CPU ratio is the one to
read on a shared machine). Goal: the report in seconds.
Exits non-zero only when the report is wrong (a figure missing, the page not written).
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def reference_save() -> tuple[float, float]:
    """(wall, CPU) seconds to draw and save one 100-point log-log line plot as PNG and PDF."""
    from scalinglab.report import style

    t, c = time.perf_counter(), time.process_time()
    fig, ax = style.figure()
    x = np.geomspace(1e6, 1e12, 100)
    ax.plot(x, 2 + (x / 1e3) ** -0.1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("C, FLOPs")
    ax.set_ylabel("loss, nats/token")
    style.finish(fig)
    fig.savefig(io.BytesIO(), format="png", dpi=style.PNG_DPI)  # as the report saves its PNGs
    fig.savefig(io.BytesIO(), format="pdf")
    return time.perf_counter() - t, time.process_time() - c


def main() -> int:
    from scalinglab.report.build import FIGURES, render_report
    from scalinglab.report.data import StudyData
    from scalinglab.report.synthetic import synthetic_study

    reference_save()  # warm-up: imports, font cache
    s = synthetic_study(50, seed=0)
    data = StudyData.from_frames(s.runs, s.metrics, [], s.evals, name="bench")
    refs = [reference_save() for _ in range(5)]
    ref, ref_cpu = statistics.median(r[0] for r in refs), statistics.median(r[1] for r in refs)
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        res = render_report(data, Path(tmp) / "report")
        total, cpu = time.perf_counter() - t, time.process_time() - cpu
        ok = res.path.is_file() and all(
            (res.path.parent / "figures" / f"{n}.pdf").is_file() for n in res.figures
        )
    n_fig = len(res.figures)
    print(
        f"runs: {len(s.runs)}  metrics rows: {len(s.metrics)}  figures: {n_fig} drawn, "
        f"{len(res.skipped)} skipped {sorted(res.skipped)}"
    )
    print(f"report: {total:.2f} s wall ({cpu:.2f} s CPU), of which fits {res.timings['fits']:.2f} s CPU")
    slow = sorted(((v, k) for k, v in res.timings.items() if k not in ("total", "fits")), reverse=True)[:3]
    print("slowest figures (CPU): " + ", ".join(f"{k} {v:.2f} s" for v, k in slow))
    print(f"reference (one plain plot, PNG + PDF): {ref * 1e3:.0f} ms wall, {ref_cpu * 1e3:.0f} ms CPU")
    print(
        f"ratio report / (reference x figures): {total / (ref * max(n_fig, 1)):.2f} wall, "
        f"{cpu / (ref_cpu * max(n_fig, 1)):.2f} CPU"
    )
    if not ok or n_fig < len(FIGURES) - len(res.skipped):
        print("FAIL: report incomplete", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
