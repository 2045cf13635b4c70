"""What to train next: the runs that most shrink the interval of a prediction at a target budget.

The bootstrap refits of an L(N, D) fit are an ensemble of plausible laws theta_1..theta_K. At the target
compute C* the quantity of interest is q_k = log N_opt(C*; theta_k) (or the log of the compute-optimal loss
there), and a candidate run at (N, D) would measure y = log L(N, D; theta) + eps, eps ~ N(0, sigma^2) with
sigma the fit's residual scatter (rescaled for the fitted degrees of freedom). Treating (q, y_1..y_M) as
jointly Gaussian with the ensemble's covariance (the linear-Gaussian, ensemble-Kalman approximation),
observing candidate m lowers the variance of q by

    Cov(q, y_m)^2 / (Var(y_m) + sigma^2),

and the joint covariance after it is the rank-one update Sigma - Sigma[:, m] Sigma[m, :] / (Sigma[m, m] +
sigma^2). ``suggest`` picks runs greedily, conditioning on each pick before the next, among candidates no
more expensive than ``max_flops``, by variance reduction / FLOPs^cost_power (C = 6 N D). The default
cost_power 0 takes the most informative affordable run, with ``max_flops`` as the cost control: per FLOP
(cost_power 1) favours many tiny runs whose small gains the Gaussian approximation overstates, which on
the synthetic benchmark never reached the target width. It reports the predicted
standard deviation of q after each pick; the 95 % interval width scales with it (an approximation: the
real interval comes from refitting once the runs are measured). numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError

QUANTITIES = ("N_opt", "loss")


@dataclass
class Suggestion:
    """Runs to train next, in the order picked, and what each is expected to do to the target's interval."""

    target_C: float
    quantity: str
    sd_now: float  # SD of log q over the ensemble now
    runs: list[dict[str, Any]] = field(default_factory=list)  # N, D, flops, sd_after (of log q)
    sigma: float = 0.0
    n_ensemble: int = 0
    n_candidates: int = 0
    cost_power: float = 0.0
    max_flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_C": self.target_C,
            "quantity": self.quantity,
            "sd_log_now": self.sd_now,
            "runs": [dict(r) for r in self.runs],
            "sigma_log": self.sigma,
            "n_ensemble": self.n_ensemble,
            "n_candidates": self.n_candidates,
            "criterion": "greedy expected reduction of Var(log q) / FLOPs^cost_power within max_flops "
            "(ensemble-Gaussian approximation)",
            "cost_power": self.cost_power,
            "max_flops": self.max_flops,
        }

    def lines(self) -> list[str]:
        w0 = _width(self.sd_now)
        out = [f"target: {self.quantity} at C = {self.target_C:.4g} FLOPs; its 95 % interval now spans a "
               f"factor of {w0:.3g} (SD of log {self.sd_now:.3f}, {self.n_ensemble} bootstrap laws)"]
        for i, r in enumerate(self.runs, 1):
            est = "" if r.get("est_s") is None else f", est. {r['est_s']:.0f} s"
            shape = f" ({r['n_layer']} x {r['d_model']})" if "n_layer" in r else ""
            out.append(f"  {i}. N {r['N']:.4g}{shape}, D {r['D']:.4g} tokens, {r['flops']:.3g} FLOPs{est}: "
                       f"interval -> factor {_width(r['sd_after']):.3g}")
        return out


def _width(sd: float) -> float:
    """Ratio high/low of a 95 % interval of a log-normal quantity with this SD of its log."""
    return math.exp(2 * 1.96 * sd)


def _target_values(form, thetas: np.ndarray, target_C: float, quantity: str) -> np.ndarray:
    """log q under every ensemble member (NaN where a member has no optimum)."""
    from scalinglab.laws.allocate import chinchilla_optimal

    out = np.full(len(thetas), np.nan)
    for i, t in enumerate(thetas):
        p = form.to_params(t)
        try:
            n, d = chinchilla_optimal(target_C, p)
        except InputError:
            continue
        out[i] = math.log(n) if quantity == "N_opt" else math.log(float(form.predict(p, N=n, D=d)))
    return out


def suggest(
    fit,
    candidates: np.ndarray,
    *,
    target_C: float,
    k: int = 2,
    quantity: str = "N_opt",
    max_flops: float | None = None,
    cost_power: float = 0.0,
) -> Suggestion:
    """Pick ``k`` runs from ``candidates`` ((M, 2) array of N, D) for the Chinchilla ``fit`` (a FitResult
    with bootstrap samples) at ``target_C`` FLOPs (module docstring)."""
    from scalinglab.laws.forms import ChinchillaND

    if quantity not in QUANTITIES:
        raise InputError(f"quantity {quantity!r}: choose one of {', '.join(QUANTITIES)}")
    if not isinstance(fit.form, ChinchillaND):
        raise InputError(f"suggest works on the Chinchilla L(N,D) fit, not {fit.form.name!r}")
    if fit.samples is None or len(fit.samples) < 10:
        raise FitError("suggest needs the fit's bootstrap samples (>= 10): fit with bootstrap=K")
    if k < 1:
        raise InputError(f"k = {k}: suggest at least one run")
    cand = np.atleast_2d(np.asarray(candidates, dtype=float))
    flops = 6 * cand[:, 0] * cand[:, 1]
    keep = np.all(cand > 0, axis=1) & (flops <= max_flops if max_flops else True)
    cand, flops = cand[keep], flops[keep]
    if len(cand) == 0:
        raise InputError("no candidate run is within the FLOP limit")
    form = fit.form
    thetas = np.array([form.to_theta(dict(zip(form.param_names, s, strict=True))) for s in fit.samples])
    q = _target_values(form, thetas, target_C, quantity)
    ok = np.isfinite(q)
    thetas, q = thetas[ok], q[ok]
    logx = {"N": np.log(cand[:, 0]), "D": np.log(cand[:, 1])}
    with np.errstate(over="ignore", invalid="ignore"):
        Y = form.log_eval(thetas, logx, jac=False)  # (K, M)
    good = np.all(np.isfinite(Y), axis=0)
    Y, cand, flops = Y[:, good], cand[good], flops[good]
    n, p = fit.residuals.size, len(form.param_names)
    sigma = float(np.sqrt(np.mean(fit.residuals**2) * n / max(n - p, 1))) if n else 0.01
    Z = np.column_stack([q, Y])
    Z = Z - Z.mean(axis=0)
    S = Z.T @ Z / max(len(Z) - 1, 1)  # joint covariance of (q, y_1..y_M)
    out = Suggestion(target_C, quantity, float(np.sqrt(S[0, 0])), sigma=sigma, n_ensemble=len(q),
                     n_candidates=len(cand), cost_power=cost_power, max_flops=max_flops)
    taken: set[int] = set()
    for _ in range(k):
        var_y = np.diag(S)[1:] + sigma**2
        gain = S[0, 1:] ** 2 / var_y
        score = gain / flops**cost_power
        if taken:
            score[list(taken)] = -np.inf
        m = int(np.argmax(score))
        if not np.isfinite(score[m]) or gain[m] <= 0:
            break
        col = S[:, m + 1].copy()
        S = S - np.outer(col, col) / (S[m + 1, m + 1] + sigma**2)
        taken.add(m)
        out.runs.append({"N": float(cand[m, 0]), "D": float(cand[m, 1]), "flops": float(flops[m]),
                         "sd_after": float(np.sqrt(max(S[0, 0], 0.0)))})
    return out


def candidate_grid(
    N_values, D_range: tuple[float, float], n_D: int = 24, max_flops: float | None = None
) -> np.ndarray:
    """(M, 2) candidates: each N of ``N_values`` with ``n_D`` log-spaced D in ``D_range`` (<= max_flops)."""
    ds = np.geomspace(D_range[0], D_range[1], n_D)
    rows = [(float(n), float(d)) for n in N_values for d in ds]
    out = np.array(rows).reshape(-1, 2)
    return out if max_flops is None else out[6 * out[:, 0] * out[:, 1] <= max_flops]
