"""Loss by position in the context (Kaplan et al. 2020 App. D.5, Fig. 20). Pure numpy.

A model's loss at token position t (1 = the first predicted token, which sees one token of context) falls as
it sees more context, as a power law plus constant, L(t) = L_inf + (t / t_c)^(-a): the form
``power+const`` of ``scalinglab.laws.forms`` over the variable ``t`` (its ``t_0`` is t_c), fitted by
``scalinglab.laws.fit.fit`` like every other law (summed Huber on log loss, multi-start, bootstrap
intervals). Kaplan find a grows with N: larger models use the context better. ``exponent_trend`` fits
a = a_0 + s log10 N by weighted least squares across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.fit import FitResult, fit


def fit_position_loss(t, loss, *, t_min: int = 1, bootstrap: int = 0, seed: int = 0) -> FitResult:
    """Fit L(t) = L_inf + (t/t_c)^(-a) to per-position losses (nats/token) at positions ``t`` >= ``t_min``.
    Parameters come back as ``L_inf``, ``t_0`` (= t_c) and ``alpha`` (= a); with ``bootstrap`` resamples of
    the positions, intervals too (positions are treated as independent: an approximation)."""
    t, loss = np.asarray(t, float), np.asarray(loss, float)
    keep = (t >= t_min) & np.isfinite(loss) & (loss > 0)
    if keep.sum() < 5:
        raise InputError(f"fit_position_loss: {int(keep.sum())} usable positions, need at least 5")
    return fit("power+const", {"t": t[keep], "loss": loss[keep]}, var="t", bootstrap=bootstrap, seed=seed)


@dataclass
class Trend:
    """a = intercept + slope log10 N (weighted least squares); ``slope_ci``: the 95 % interval."""

    slope: float
    intercept: float
    slope_se: float
    slope_ci: tuple[float, float]
    n_points: int

    def describe(self) -> str:
        lo, hi = self.slope_ci
        return f"da/dlog10(N) = {self.slope:+.3f} [95% {lo:+.3f}, {hi:+.3f}] over {self.n_points} runs"


def exponent_trend(n, a, a_se=None) -> Trend:
    """Weighted least squares of exponents ``a`` on log10 ``n`` (weights 1/se^2 when given). The interval is
    slope +- t(0.975, dof) x SE, the SE from the residual scatter (not only the given SEs)."""
    from scipy import stats

    x, y = np.log10(np.asarray(n, float)), np.asarray(a, float)
    if x.size < 3 or np.ptp(x) <= 0:
        raise InputError("exponent_trend needs three or more runs of at least two sizes")
    w = np.ones_like(y) if a_se is None else 1.0 / np.maximum(np.asarray(a_se, float), 1e-12) ** 2
    X = np.column_stack([np.ones_like(x), x])
    W = np.diag(w / w.mean())
    cov = np.linalg.inv(X.T @ W @ X)
    beta = cov @ X.T @ W @ y
    resid = y - X @ beta
    dof = x.size - 2
    s2 = float(resid @ W @ resid / dof) if dof > 0 else 0.0
    se = float(np.sqrt(cov[1, 1] * s2)) if dof > 0 else float("nan")
    q = float(stats.t.ppf(0.975, dof)) if dof > 0 else float("nan")
    ci = (float(beta[1] - q * se), float(beta[1] + q * se))
    return Trend(float(beta[1]), float(beta[0]), se, ci, x.size)
