"""Do the 95 % intervals mean 95 %? Coverage of the truth on synthetic ladders drawn from a known law.

Each replicate draws an isoFLOP ladder (``budgets`` x ``n_sizes`` runs around the true optimum, D = C/6N)
from a true Chinchilla law with Epoch-like noise (``laws.synthetic``), fits L(N, D) with the bootstrap the
study uses, and records whether each 95 % interval holds the truth:

- the parameters E, alpha, beta and the allocation exponent a = beta / (alpha + beta);
- the back-test: every run of the largest budget held out, the law refitted on the rest; its prediction
  interval for a new run must hold each held-out measured loss (``backtest_new_run``), and the interval of
  the mean curve the true law there (``backtest_mean``);
- the allocation at 10x the largest budget: the N_opt interval must hold the true N_opt.

Well-calibrated intervals cover in about 95 % of replicates (90-98 % over 200 replicates is the goal
``bench/bench_calibration.py`` checks). numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalinglab.laws import synthetic as S

QUANTITIES = ("E", "alpha", "beta", "a", "backtest_new_run", "backtest_mean", "N_opt")


@dataclass
class Coverage:
    """Per quantity: replicates whose 95 % interval held the truth, out of ``n`` (points for back-tests)."""

    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUANTITIES, 0))
    trials: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUANTITIES, 0))
    widths: dict[str, list[float]] = field(default_factory=lambda: {q: [] for q in QUANTITIES})
    failed: int = 0

    def rate(self, q: str) -> float:
        return self.hits[q] / self.trials[q] if self.trials[q] else float("nan")

    def add(self, q: str, lo, hi, truth) -> None:
        lo, hi, truth = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (lo, hi, truth))
        self.hits[q] += int(np.sum((lo <= truth) & (truth <= hi)))
        self.trials[q] += int(truth.size)
        self.widths[q] += list((hi - lo) / np.abs(truth))

    def summary(self) -> str:
        parts = [f"{q} {self.rate(q):.3f}" for q in QUANTITIES]
        return "coverage of the truth by the 95 % intervals: " + ", ".join(parts)


def replicate(
    rng: np.random.Generator,
    truth=S.BESIROGLU,
    budgets=(1e18, 1e19, 1e20, 1e21),
    n_sizes: int = 5,
    span: float = 4.0,
    bootstrap: int = 200,
    starts: int | None = 300,
    cov: Coverage | None = None,
) -> Coverage:
    """One synthetic ladder: fit, back-test, allocate; adds to ``cov`` (returned)."""
    from scalinglab.errors import FitError
    from scalinglab.laws.allocate import allocate
    from scalinglab.laws.fit import fit

    cov = cov if cov is not None else Coverage()
    N, D, C = S.isoflop_design(truth, budgets, n_sizes, span)
    y = S.observe(truth, N, D, rng)
    seed = int(rng.integers(2**31))
    try:
        r = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=bootstrap, seed=seed, starts=starts)
        held = C >= C.max() * (1 - 1e-9)
        rb = fit("chinchilla", {"N": N[~held], "D": D[~held], "loss": y[~held]}, bootstrap=bootstrap,
                 seed=seed, starts=starts)
    except FitError:
        cov.failed += 1
        return cov
    for k in ("E", "alpha", "beta"):
        cov.add(k, *r.ci95[k], truth[k])
    names = list(r.form.param_names)
    al, be = r.samples[:, names.index("alpha")], r.samples[:, names.index("beta")]
    a_true = truth["beta"] / (truth["alpha"] + truth["beta"])
    cov.add("a", *np.percentile(be / (al + be), [2.5, 97.5]), a_true)
    lo, hi = rb.predict_interval(N=N[held], D=D[held])
    cov.add("backtest_new_run", lo, hi, y[held])
    lo, hi = rb.predict_interval(N=N[held], D=D[held], noise=False)
    cov.add("backtest_mean", lo, hi, S.law(truth, N[held], D[held]))
    target = 10 * float(C.max())
    a = allocate(target, r)
    if a.N_opt_ci is not None:
        cov.add("N_opt", *a.N_opt_ci, float(S.optimum(truth, target)[0]))
    return cov


def coverage(reps: int, seed: int = 0, **kw) -> Coverage:
    """``reps`` seeded replicates (``replicate``'s options in ``kw``)."""
    cov = Coverage()
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        replicate(rng, cov=cov, **kw)
    return cov
