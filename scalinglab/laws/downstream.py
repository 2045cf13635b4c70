"""Downstream accuracy from loss: the two steps of the OLMo model ladder (Bhagia et al. 2024, "Establishing
Task Scaling Laws via Compute-Efficient Model Ladders").

1. Task loss against scale: L_task(N, D) = E + A / N^alpha + B / D^beta (the Chinchilla form, fitted with
   ``scalinglab.laws.fit``), or, with too few rungs to separate N from D, L_task(C) = L_inf + (C_0 / C)^alpha
   (``power+const`` in C = 6 N D). The task loss is the negative log-likelihood of the correct answer (nats
   per byte, ``EvalResult.task_loss``); without it, the run's validation loss stands in.
2. Accuracy against task loss, a sigmoid falling with the loss:

       acc(L) = lo + (hi - lo) / (1 + exp(k (L - L0))),      0 <= lo <= hi <= 1, k > 0,

   fitted by least squares; as in the ladder, two pseudo-points anchor the ends (L = 0 at the task's top
   accuracy ``acc_range[1]``, and 1.5 x the largest observed loss at its floor ``acc_range[0]``: chance).

``predict(N, D)`` chains them. The 95 % interval comes from bootstraps of both steps over the runs (step 1
by ``fit``'s bootstrap, step 2 by refitting the sigmoid on resampled runs), combined draw by draw: the
uncertainty of the mean accuracy of a model at (N, D), not of one noisy evaluation of it. ``backtest``
fits the runs below the largest compute and predicts the largest rung. Units: N parameters, D tokens,
C FLOPs, accuracy a fraction in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError


def sigmoid(L, lo: float, hi: float, k: float, L0: float) -> np.ndarray:
    """Accuracy at task loss L: lo + (hi - lo) / (1 + exp(k (L - L0)))."""
    z = np.clip(k * (np.asarray(L, dtype=float) - L0), -500, 500)
    return lo + (hi - lo) / (1.0 + np.exp(z))


STEP2_NAMES = ("lo", "hi", "k", "L0")


def _fit_sigmoid(
    L: np.ndarray,
    acc: np.ndarray,
    w: np.ndarray,
    acc_range: tuple[float, float],
    pseudo: bool,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, bool, str]:
    """Weighted least squares of the sigmoid from a few starts (or ``x0``): (params, success, message)."""
    from scipy.optimize import least_squares

    L, acc, w = np.asarray(L, float), np.asarray(acc, float), np.asarray(w, float)
    if pseudo:
        L = np.append(L, [0.0, 1.5 * L.max()])
        acc = np.append(acc, [acc_range[1], acc_range[0]])
        w = np.append(w, [1.0, 1.0])
    sw = np.sqrt(w)

    def resid(p: np.ndarray) -> np.ndarray:
        lo, gap, k, L0 = p
        return sw * (sigmoid(L, lo, min(lo + gap, 1.0), k, L0) - acc)

    span = max(float(np.ptp(L)), 1e-3)
    lb = [0.0, 0.0, 1e-6, 0.0]
    ub = [1.0, 1.0, 1e4 / span, 10.0 * float(L.max()) + 1.0]
    starts = (
        [x0]
        if x0 is not None
        else [
            np.array([acc_range[0], acc_range[1] - acc_range[0], kk / span, l0])
            for kk in (1.0, 4.0, 16.0)
            for l0 in np.quantile(L, [0.25, 0.5, 0.75])
        ]
    )
    best = None
    for s in starts:
        s = np.clip(s, np.array(lb) + 1e-9, np.array(ub) - 1e-9)
        r = least_squares(resid, s, bounds=(lb, ub), xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        if best is None or r.cost < best.cost:
            best = r
    lo, gap, k, L0 = best.x
    return np.array([lo, min(lo + gap, 1.0), k, L0]), bool(best.success), str(best.message)


@dataclass
class DownstreamFit:
    """The two-step law: ``step1`` (a FitResult of task loss against N, D or C), ``step2`` (sigmoid
    parameters lo, hi, k, L0), and the bootstrap draws both steps' intervals come from."""

    step1: Any
    step2: dict[str, float]
    x: str
    n_points: int
    converged: bool
    message: str
    acc_range: tuple[float, float]
    pseudo_points: bool
    r2_acc: float
    step2_samples: np.ndarray | None = None
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))  # observed - fitted accuracy
    warnings: list[str] = field(default_factory=list)
    task: str | None = None

    def predict_loss(self, N, D) -> np.ndarray:
        """Step 1: the task loss at N parameters and D tokens."""
        if set(self.step1.form.variables) == {"C"}:
            return self.step1.predict(C=6.0 * np.asarray(N, float) * np.asarray(D, float))
        return self.step1.predict(N=N, D=D)

    def predict(self, N, D) -> np.ndarray:
        """Steps 1 and 2: the accuracy (fraction) at N parameters and D tokens."""
        return sigmoid(self.predict_loss(N, D), **self.step2)

    def _loss_draws(self, N: float, D: float) -> np.ndarray:
        form, names = self.step1.form, self.step1.form.param_names
        s = self.step1.samples
        if s is None or len(s) == 0:
            raise FitError("intervals need a bootstrap: fit_downstream(..., bootstrap=K)")
        var = {"C": 6.0 * N * D} if set(form.variables) == {"C"} else {"N": N, "D": D}
        return np.array([float(form.predict(dict(zip(names, row, strict=True)), **var)) for row in s])

    def predict_interval(
        self, N: float, D: float, level: float = 0.95, noise: bool = True
    ) -> tuple[float, float]:
        """(low, high) accuracy at (N, D) from the two bootstraps, draw by draw; with ``noise`` each draw also
        gets a step-2 residual (drawn at random, seeded), so the interval is for one new evaluation (as a
        back-test compares with), not only for the mean curve."""
        if self.step2_samples is None or len(self.step2_samples) == 0:
            raise FitError("intervals need a bootstrap: fit_downstream(..., bootstrap=K)")
        lt = self._loss_draws(float(N), float(D))
        m = min(len(lt), len(self.step2_samples))
        acc = np.array([sigmoid(lt[i], *self.step2_samples[i]) for i in range(m)])
        if noise and self.residuals.size:
            acc = acc + np.random.default_rng(1).choice(self.residuals, size=acc.shape)
        q = (1.0 - level) / 2.0
        lo, hi = np.nanquantile(acc, [q, 1.0 - q])
        return float(lo), float(hi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": "downstream",
            "task": self.task,
            "x": self.x,
            "step1": self.step1.to_dict(),
            "params": dict(self.step2),
            "n_points": self.n_points,
            "converged": self.converged,
            "message": self.message,
            "acc_range": list(self.acc_range),
            "pseudo_points": self.pseudo_points,
            "r2_acc": self.r2_acc,
            "r2_log": self.step1.r2_log,
            "warnings": list(self.warnings),
            "residuals": [float(r) for r in self.residuals],
            "step2_samples": None if self.step2_samples is None else self.step2_samples.tolist(),
        }


def _table(data, x: str) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """N, D, acc, L (the x column, or the validation loss ``loss`` when x is missing or empty)."""
    notes = []
    cols = {c: np.asarray(data[c], dtype=float) for c in ("N", "D", "acc")}
    xcol = x
    if x not in getattr(data, "columns", data) or not np.isfinite(np.asarray(data[x], dtype=float)).any():
        if "loss" not in getattr(data, "columns", data):
            raise InputError(f"downstream law: no {x!r} column and no 'loss' (validation loss) to stand in")
        xcol = "loss"
        notes.append(f"no {x}: step 1 fits the validation loss instead (the ladder's C4-loss variant)")
    cols["L"] = np.asarray(data[xcol], dtype=float)
    ok = np.all([np.isfinite(v) for v in cols.values()], axis=0) & (cols["N"] > 0) & (cols["D"] > 0)
    ok &= cols["L"] > 0
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} row(s) without a finite N, D, loss and accuracy left out")
    cols = {k: v[ok] for k, v in cols.items()}
    if np.any((cols["acc"] < 0) | (cols["acc"] > 1)):
        raise InputError("downstream law: accuracy must be a fraction in [0, 1]")
    return cols, xcol, notes


def fit_downstream(
    data,
    *,
    x: str = "task_loss",
    step1: str = "auto",
    bootstrap: int = 200,
    seed: int = 0,
    acc_range: tuple[float, float] = (0.0, 1.0),
    pseudo_points: bool = True,
    task: str | None = None,
    starts: int | None = None,
) -> DownstreamFit:
    """Fit both steps to ``data`` (columns N, D, acc and ``x``, one row per run, accuracy a fraction).

    ``step1``: ``"nd"`` (the Chinchilla form), ``"c"`` (power + constant in C = 6ND) or ``"auto"``: nd when
    it can be identified (>= 6 runs, 3 sizes spanning >= 1.5 decades, two tokens-per-parameter ratios),
    else c. On the OLMo ladder (4 sizes over 0.83 decades) auto takes c, which predicts the 7B rung's
    HellaSwag accuracy within a point (tests/laws/test_downstream.py).
    ``acc_range``: (floor, top) of the task, e.g. (0.25, 1.0) for 4-way multiple choice. ``starts``: a
    seeded subsample of step 1's start grid (default: all of it, see ``scalinglab.laws.fit``).
    """
    import pandas as pd

    from scalinglab.laws.fit import fit

    cols, xcol, notes = _table(data, x)
    n = cols["N"].size
    if n < 4:
        raise FitError(f"downstream law: need at least 4 runs with a loss and an accuracy, got {n}")
    from scalinglab.laws.data import decades
    from scalinglab.laws.fit import MIN_DECADES

    ratios = np.unique(np.round(np.log(cols["D"] / cols["N"]), 3))
    kind = step1
    if step1 == "auto":  # nd only where N's exponent can be pinned down (the fit's own identifiability rule)
        enough = n >= 6 and ratios.size >= 2 and np.unique(cols["N"]).size >= 3
        kind = "nd" if enough and decades(cols["N"]) >= MIN_DECADES else "c"
    df = pd.DataFrame({"N": cols["N"], "D": cols["D"], "C": 6.0 * cols["N"] * cols["D"], "loss": cols["L"]})
    if kind == "nd":
        s1 = fit("chinchilla", df[["N", "D", "loss"]], bootstrap=bootstrap, seed=seed, starts=starts)
    elif kind == "c":
        s1 = fit("power+const", df[["C", "loss"]], var="C", bootstrap=bootstrap, seed=seed, starts=starts)
    else:
        raise InputError(f"step1={step1!r}: use 'nd', 'c' or 'auto'")
    w = np.ones(n)
    p2, ok2, msg2 = _fit_sigmoid(cols["L"], cols["acc"], w, acc_range, pseudo_points)
    pred = sigmoid(cols["L"], *p2)
    ss = float(np.sum((cols["acc"] - cols["acc"].mean()) ** 2))
    r2 = 1.0 - float(np.sum((cols["acc"] - pred) ** 2)) / ss if ss > 0 else float("nan")
    warnings = list(s1.warnings) + notes
    if np.ptp(cols["acc"]) < 0.05:
        warnings.append(
            f"accuracy spans only {100 * np.ptp(cols['acc']):.1f} points over the runs: the sigmoid "
            "is pinned by its pseudo-points, not by the data"
        )
    samples = None
    if bootstrap:
        rng = np.random.default_rng(seed + 7)
        draws = []
        for _ in range(int(bootstrap)):
            wb = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            draws.append(_fit_sigmoid(cols["L"], cols["acc"], wb, acc_range, pseudo_points, x0=p2)[0])
        samples = np.array(draws)
    return DownstreamFit(
        step1=s1,
        step2=dict(zip(STEP2_NAMES, map(float, p2), strict=True)),
        x=xcol,
        n_points=n,
        converged=bool(s1.converged and ok2),
        message=f"step 1: {s1.message}; step 2: {msg2}",
        acc_range=tuple(acc_range),
        pseudo_points=pseudo_points,
        r2_acc=r2,
        step2_samples=samples,
        residuals=cols["acc"] - pred,
        warnings=warnings,
        task=task,
    )


def backtest_downstream(data, *, holdout: int = 1, **kw) -> dict[str, Any]:
    """Fit the runs below the ``holdout`` largest compute budgets (C = 6ND), predict the held-out rungs:
    observed and predicted accuracy, the 95 % interval, the error in accuracy points, covered or not."""
    import pandas as pd

    df = pd.DataFrame(data).reset_index(drop=True)
    c = 6.0 * df["N"] * df["D"]
    order = np.argsort(c.to_numpy())
    held = order[-holdout:]
    train = df.iloc[order[:-holdout]].reset_index(drop=True)
    res = fit_downstream(train, **kw)
    rows = []
    for i in held:
        r = df.iloc[int(i)]
        pred = float(res.predict(r["N"], r["D"]))
        lo, hi = (
            res.predict_interval(r["N"], r["D"]) if res.step2_samples is not None else (math.nan, math.nan)
        )
        rows.append(
            {
                "N": float(r["N"]),
                "D": float(r["D"]),
                "observed": float(r["acc"]),
                "predicted": pred,
                "low": lo,
                "high": hi,
                "abs_error": pred - float(r["acc"]),
                "covered": bool(lo <= r["acc"] <= hi),
            }
        )
    last = rows[-1]
    return {
        "by": "C",
        "holdout": holdout,
        "rows": rows,
        "abs_error": last["abs_error"],
        "covered": last["covered"],
        "rel_error": last["abs_error"] / last["observed"] if last["observed"] else math.nan,
        "fit_converged": res.converged,
    }
