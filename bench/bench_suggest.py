"""Adaptive design vs the static isoFLOP grid: FLOPs needed to pin N_opt down at a target budget.

On a synthetic ground-truth Chinchilla law (Besiroglu et al. 2024's constants) with Epoch-like noise
(``scalinglab.laws.synthetic``), both start from the same two isoFLOP budgets (1e18 and 3e18 FLOPs, 5
sizes each) and spend compute until the 95 % bootstrap interval of N_opt at the target (1e23 FLOPs) spans
less than a factor of ``--width`` (high / low):

- static: the next isoFLOP budget (3x the last, 5 sizes around the true optimum: the best a static plan
  can do) per round;
- adaptive: ``scalinglab.laws.suggest`` picks ``--k`` runs per round among shapes of the same ladder and
  token counts, each no more expensive than 3x the largest run so far (the growth the static grid has).

Prints, over ``--reps`` seeded replicates, the FLOPs each spent and the ratio static / adaptive (goal >= 2).

    python bench/bench_suggest.py [--reps 20] [--width 1.5] [--k 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scalinglab.laws import synthetic as S
from scalinglab.laws.allocate import allocate
from scalinglab.laws.fit import fit
from scalinglab.laws.suggest import candidate_grid, suggest

TARGET = 1e23
START = (1e18, 3e18)


def _width(N, D, y, seed: int, bootstrap: int, starts: int) -> tuple[float, object, bool]:
    """(high / low of the N_opt interval at TARGET, the fit, whether the interval holds the true N_opt)."""
    r = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=bootstrap, seed=seed, starts=starts)
    a = allocate(TARGET, r)
    if a.N_opt_ci is None:
        return float("inf"), r, False
    true = float(S.optimum(S.BESIROGLU, TARGET)[0])
    return a.N_opt_ci[1] / a.N_opt_ci[0], r, a.N_opt_ci[0] <= true <= a.N_opt_ci[1]


def one(rep: int, width: float, k: int, bootstrap: int, starts: int, max_rounds: int):
    """(static FLOPs, adaptive FLOPs, static reached, adaptive reached, static covers the truth, adaptive
    covers it) for one replicate."""
    T = S.BESIROGLU
    rng = np.random.default_rng(rep)
    N, D, C = S.isoflop_design(T, START)
    y = S.observe(T, N, D, rng)
    base = (N.copy(), D.copy(), y.copy())
    # static: one more isoFLOP budget per round
    budget, spent, reached = START[-1], float(np.sum(6 * N * D)), False
    for r in range(max_rounds):
        w, _, cov1 = _width(N, D, y, 1000 * rep + r, bootstrap, starts)
        if w <= width:
            reached = True
            break
        budget *= 3
        n2, d2, _ = S.isoflop_design(T, [budget])
        N, D = np.concatenate([N, n2]), np.concatenate([D, d2])
        y = np.concatenate([y, S.observe(T, n2, d2, rng)])
        spent += float(np.sum(6 * n2 * d2))
    static = spent
    # adaptive: suggest k runs per round within 3x the largest run so far
    N, D, y = base
    spent, ok = float(np.sum(6 * N * D)), False
    sizes = np.geomspace(N.min() / 2, 1e11, 40)
    for r in range(4 * max_rounds):
        w, res, cov2 = _width(N, D, y, 2000 * rep + r, bootstrap, starts)
        if w <= width:
            ok = True
            break
        cap = 3 * float(np.max(6 * N * D))
        cand = candidate_grid(sizes, (D.min() / 2, 1e13), n_D=40, max_flops=cap)
        sg = suggest(res, cand, target_C=TARGET, k=k, max_flops=cap)
        if not sg.runs:
            break
        n2 = np.array([x["N"] for x in sg.runs])
        d2 = np.array([x["D"] for x in sg.runs])
        N, D = np.concatenate([N, n2]), np.concatenate([D, d2])
        y = np.concatenate([y, S.observe(T, n2, d2, rng)])
        spent += float(np.sum(6 * n2 * d2))
    return static, spent, reached, ok, cov1, cov2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--width", type=float, default=1.5)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--starts", type=int, default=300)
    ap.add_argument("--max-rounds", type=int, default=7)
    a = ap.parse_args()
    t = time.perf_counter()
    ratios, rows = [], []
    for rep in range(a.reps):
        st, ad, r1, r2, c1, c2 = one(rep, a.width, a.k, a.bootstrap, a.starts, a.max_rounds)
        ratios.append(st / ad)
        rows.append((st, ad, r1, r2, c1, c2))
        print(f"  replicate {rep:2d}: static {st:.3g} FLOPs{'' if r1 else ' (not reached)'}, adaptive "
              f"{ad:.3g}{'' if r2 else ' (not reached)'}: ratio {st / ad:.2f}; final intervals hold the true "
              f"N_opt: static {c1}, adaptive {c2}", flush=True)
    g = float(np.exp(np.mean(np.log(ratios))))
    med = float(np.median(ratios))
    miss = sum(1 for r in rows if not (r[2] and r[3]))
    cov = [sum(r[4] for r in rows) / len(rows), sum(r[5] for r in rows) / len(rows)]
    print(f"{a.reps} replicates, target N_opt interval < {a.width}x at C = {TARGET:g}: FLOP ratio static / "
          f"adaptive: median {med:.2f}x, geometric mean {g:.2f}x (goal >= 2x); {miss} replicate(s) where "
          f"one side did not reach the width; the stopping interval held the true N_opt in {cov[0]:.0%} "
          f"(static) and {cov[1]:.0%} (adaptive) of replicates; {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
