"""Transfer to other distributions (Kaplan et al. 2020 sec. 3.2.2, Fig. 8). Pure numpy.

For models of several sizes evaluated on their training distribution (L_train) and on another one
(L_other), Kaplan find parallel lines in log-log: L_other(N) = k L_train(N), a constant offset in log space.
``transfer_offset`` fits L(N) = (N_c/N)^alpha to both (``scalinglab.laws.fit``, with bootstrap intervals) and
measures the offset log(L_other / L_train) run by run: its mean, a 95 % bootstrap interval over runs, and its
slope against log N (zero for parallel lines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.fit import FitResult, fit


@dataclass
class TransferResult:
    """``offset``: mean of log(L_other / L_train) (nats of log loss; exp(offset) is the loss ratio), with
    ``offset_ci`` (95 %, bootstrap over runs); ``slope``: d offset / d log10 N with ``slope_ci`` (0:
    parallel);
    ``train`` / ``other``: the power-law fits L(N) (``None`` when there are too few sizes to fit)."""

    offset: float
    offset_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    n_runs: int
    train: FitResult | None
    other: FitResult | None

    @property
    def ratio(self) -> float:
        return float(np.exp(self.offset))

    def describe(self, name: str = "the other set") -> str:
        lo, hi = self.offset_ci
        s = (f"log(L_other/L_train) = {self.offset:+.4f} [95% {lo:+.4f}, {hi:+.4f}] "
             f"(loss x {self.ratio:.3f}) on {name} over {self.n_runs} runs; slope vs log10 N "
             f"{self.slope:+.4f} [{self.slope_ci[0]:+.4f}, {self.slope_ci[1]:+.4f}]")
        if self.train is not None and self.other is not None:
            s += (f"; alpha_N train {self.train.params['alpha']:.3f}, other {self.other.params['alpha']:.3f}")
        return s


def transfer_offset(n, loss_train, loss_other, *, bootstrap: int = 1000, seed: int = 0) -> TransferResult:
    """The offset between two L(N) lines (see the module docstring). ``n``: parameters of each run;
    ``loss_train``, ``loss_other``: its losses (nats/token) on the training and on the other distribution."""
    n, lt, lo = (np.asarray(v, float) for v in (n, loss_train, loss_other))
    ok = np.isfinite(n) & np.isfinite(lt) & np.isfinite(lo) & (n > 0) & (lt > 0) & (lo > 0)
    n, lt, lo = n[ok], lt[ok], lo[ok]
    if n.size < 2:
        raise InputError(f"transfer_offset needs two or more runs with both losses, got {n.size}")
    d = np.log(lo / lt)
    x = np.log10(n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n.size, size=(bootstrap, n.size))
    means = d[idx].mean(axis=1)
    slope, slopes = _slope(x, d), np.array([_slope(x[i], d[i]) for i in idx])
    slopes = slopes[np.isfinite(slopes)]
    s_ci = tuple(np.percentile(slopes, [2.5, 97.5])) if slopes.size > 10 else (float("nan"),) * 2
    fits: list[FitResult | None] = [None, None]
    if np.unique(n).size >= 3:
        fits = [fit("power", {"N": n, "loss": y}, var="N", bootstrap=200 if n.size >= 4 else 0, seed=seed)
                for y in (lt, lo)]
    return TransferResult(float(d.mean()), tuple(float(v) for v in np.percentile(means, [2.5, 97.5])),
                          slope, (float(s_ci[0]), float(s_ci[1])), int(n.size), fits[0], fits[1])


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) <= 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])
