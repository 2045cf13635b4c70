"""Calibration of the intervals: over seeded synthetic ladders from a known Chinchilla law with Epoch-like
noise, how often each 95 % interval holds the truth (goal: 90-98 % for every quantity).

    python bench/bench_calibration.py [--reps 200] [--bootstrap 200] [--starts 300]

Quantities (``scalinglab.laws.calibration``): E, alpha, beta, a = beta/(alpha+beta); the back-test of the
largest budget (new-run interval vs the measured held-out losses; mean-curve interval vs the true law);
the N_opt interval at 10x the largest budget vs the true optimum. The fits use a seeded subsample of
``--starts`` grid points (the full 4,500-start grid gives the same optima on these ladders, 10x slower).
"""

from __future__ import annotations

import argparse
import time

from scalinglab.laws.calibration import QUANTITIES, coverage

GOAL = (0.90, 0.98)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--starts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = time.perf_counter()
    cov = coverage(a.reps, seed=a.seed, bootstrap=a.bootstrap, starts=a.starts)
    dt = time.perf_counter() - t
    print(f"{a.reps} replicates (4 budgets x 5 sizes, Epoch-like noise), bootstrap {a.bootstrap}, "
          f"{dt:.0f} s; {cov.failed} fits failed")
    ok = True
    for q in QUANTITIES:
        r = cov.rate(q)
        inside = GOAL[0] <= r <= GOAL[1]
        ok &= inside
        w = sorted(cov.widths[q])
        med = w[len(w) // 2] if w else float("nan")
        print(f"  {q:18s} coverage {r:.3f} ({cov.hits[q]}/{cov.trials[q]})  median relative width {med:.3f}"
              f"  {'ok' if inside else 'OUTSIDE 90-98 %'}")
    print(f"calibration: {'all within' if ok else 'NOT all within'} {GOAL[0]:.0%}-{GOAL[1]:.0%}")


if __name__ == "__main__":
    main()
