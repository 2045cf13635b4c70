"""The optimiser behind ``fit``: summed Huber loss on log residuals, batched Levenberg-Marquardt, L-BFGS-B polish.

Objective (Hoffmann 2022; Besiroglu 2024): sum_i w_i huber_delta(log y_i - log yhat_i), delta = 1e-3, **summed**
over points. (The mean makes the objective ~1e-6, below what L-BFGS-B's default ftol can see, so it stops after
a couple of iterations: the trap in SPEC (e). We sum, and the polish additionally rescales the objective to
order 1 so that its tolerances mean what they say.)

Many starts (or many bootstrap resamples) are optimised at once: each iteration solves a damped, IRLS-weighted
Gauss-Newton system (J^T W J + lambda diag) step = -grad for every row in one batched numpy call, with per-row
acceptance and damping. IRLS weights w = min(1, delta/|r|) make the quadratic model a majoriser of the Huber
loss in the residuals, which keeps the steps sane far from the data. Rows stop when their objective stalls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from scalinglab.laws.forms import Form


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(form: Form, theta: np.ndarray, logx: Mapping, logy: np.ndarray, delta: float,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Summed Huber of log residuals for each row of theta (K, p) -> (K,). ``weights``: (n,) or (K, n)."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = logy[None, :] - form.log_eval(np.atleast_2d(theta), logx, jac=False)
        h = huber(r, delta)
    if weights is not None:
        h = h * weights
    f = h.sum(axis=1)
    return np.where(np.isfinite(f), f, np.inf)


@dataclass
class BatchResult:
    theta: np.ndarray  # (K, p)
    f: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) objective stalled with a small step
    iterations: int


def _project(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(theta, lo), hi)


def batched_lm(form: Form, theta0: np.ndarray, logx: Mapping, logy: np.ndarray, delta: float,
               weights: np.ndarray | None = None, max_iter: int = 300, ftol: float = 1e-10) -> BatchResult:
    """Damped IRLS Gauss-Newton (Levenberg-Marquardt) on all rows of theta0 at once, within the form's bounds.

    ``weights`` (K, n) gives each row its own point weights (bootstrap counts); (n,) or None share them.
    A row is converged when an accepted step lowers its objective by less than ftol (relative) or its damping
    grows past 1e12 (no descent direction left within the bounds).
    """
    lo, hi = (np.array(b, dtype=float) for b in zip(*form.theta_bounds(), strict=True))
    theta = _project(np.array(theta0, dtype=float), lo, hi)
    K, p = theta.shape
    W = None if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), (K, logy.size))
    f = objective(form, theta, logx, logy, delta, W)
    lam = np.full(K, 1e-2)
    done = np.zeros(K, dtype=bool)
    eye = np.eye(p)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        idx = np.flatnonzero(~done & np.isfinite(f))
        if idx.size == 0:
            break
        th = theta[idx]
        with np.errstate(over="ignore", invalid="ignore"):
            ly, J = form.log_eval(th, logx)
        r = logy[None, :] - ly
        a = np.abs(r)
        psi = np.clip(r, -delta, delta)
        w = np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))
        if W is not None:
            psi = psi * W[idx]
            w = w * W[idx]
        g = -np.einsum("knp,kn->kp", J, psi)
        H = np.einsum("knp,knq->kpq", J * w[..., None], J)
        d = np.diagonal(H, axis1=1, axis2=2)
        dscale = np.maximum(d, 1e-12 * (d.max(axis=1, keepdims=True) + 1e-300))
        A = H + lam[idx, None, None] * dscale[:, :, None] * eye + 1e-14 * eye
        ok = np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(g), axis=1)
        step = np.zeros_like(th)
        if ok.any():
            try:
                step[ok] = np.linalg.solve(A[ok], -g[ok][..., None])[..., 0]
            except np.linalg.LinAlgError:
                step[ok] = np.einsum("kpq,kq->kp", np.linalg.pinv(A[ok]), -g[ok])
        new = _project(th + step, lo, hi)
        f_new = objective(form, new, logx, logy, delta, None if W is None else W[idx])
        f_old = f[idx]
        acc = f_new < f_old
        gain = np.where(acc, (f_old - f_new) / np.maximum(f_old, 1e-300), 0.0)
        theta[idx[acc]] = new[acc]
        f[idx[acc]] = f_new[acc]
        lam[idx] = np.where(acc, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        moved = np.max(np.abs(new - th), axis=1)
        stalled = (acc & (gain < ftol)) | (lam[idx] > 1e12) | (~acc & (moved == 0))
        done[idx[stalled]] = True
    return BatchResult(theta=theta, f=f, converged=done, iterations=it)


@dataclass
class PolishResult:
    theta: np.ndarray
    f: float
    success: bool
    message: str
    nit: int
    grad_norm: float  # projected gradient, relative to the objective


def gradient(form: Form, theta: np.ndarray, logx: Mapping, logy: np.ndarray, delta: float,
             weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    ly, J = form.log_eval(theta[None, :], logx)
    r = logy - ly[0]
    psi = np.clip(r, -delta, delta)
    h = huber(r, delta)
    if weights is not None:
        psi, h = psi * weights, h * weights
    return float(h.sum()), -(J[0].T @ psi)


def projected_grad_norm(form: Form, theta: np.ndarray, g: np.ndarray) -> float:
    """Max |gradient| over the components not pinned at a bound by the sign of the gradient."""
    lo, hi = (np.array(b, dtype=float) for b in zip(*form.theta_bounds(), strict=True))
    free = ~(((theta <= lo) & (g > 0)) | ((theta >= hi) & (g < 0)))
    return float(np.max(np.abs(g[free]))) if free.any() else 0.0


def polish(form: Form, theta0: np.ndarray, logx: Mapping, logy: np.ndarray, delta: float,
           weights: np.ndarray | None = None) -> PolishResult:
    """L-BFGS-B with the analytic gradient, objective rescaled to ~1 and tight tolerances (ftol 1e-15, gtol 1e-12)."""
    f0, _ = gradient(form, theta0, logx, logy, delta, weights)
    scale = 1.0 / max(f0, 1e-300)

    def fun(t):
        with np.errstate(over="ignore", invalid="ignore"):
            f, g = gradient(form, t, logx, logy, delta, weights)
        if not np.isfinite(f):
            return 1e300, np.zeros_like(t)
        return f * scale, g * scale

    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=form.theta_bounds(),
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000, "maxcor": 20})
    theta = res.x if res.fun <= f0 * scale else theta0
    f, g = gradient(form, theta, logx, logy, delta, weights)
    gn = projected_grad_norm(form, theta, g) / max(f, 1e-300)
    msg = res.message if isinstance(res.message, str) else str(res.message)
    return PolishResult(theta=theta, f=f, success=bool(res.success), message=msg, nit=int(res.nit), grad_norm=gn)
