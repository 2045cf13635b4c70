"""The optimiser behind ``fit``: summed Huber on log residuals, batched Levenberg-Marquardt, L-BFGS-B polish.

Objective (Hoffmann 2022; Besiroglu 2024): sum_i w_i huber_delta(log y_i - log yhat_i), delta = 1e-3,
**summed** over points. (The mean makes the objective ~1e-6, below what L-BFGS-B's default ftol sees, so
it stops after a couple of iterations: the trap in SPEC (e). We sum, and the polish also rescales the
objective to order 1 so that its tolerances mean what they say.)

Many starts (or many bootstrap resamples) are optimised at once: each iteration solves a damped, IRLS-weighted
Gauss-Newton system (J^T W J + lambda diag) step = -grad for every row in one batched numpy call, with per-row
acceptance and damping. IRLS weights w = min(1, delta/|r|) make the quadratic model a majoriser of the Huber
loss in the residuals, which keeps the steps sane far from the data. Rows stop when their objective stalls.

Forms with structured Gauss-Newton terms (``gn_objective`` / ``gn_matrices``, e.g. ``ChinchillaND``) skip the
(K, n, p) Jacobian: each trial step's objective is computed first, and G, H only for the rows that accept it.
``SCALINGLAB_LAWS_FASTPATH=0`` forces the general path (same maths; used to check the fast one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from scalinglab.laws.forms import Form


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(
    form: Form,
    theta: np.ndarray,
    logx: Mapping,
    logy: np.ndarray,
    delta: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
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
    f: np.ndarray  # (K,) summed Huber objective (float64 sum of the terms)
    converged: np.ndarray  # (K,) objective stalled (relative gain < ftol) or no descent left
    iterations: int
    row_iterations: int  # sum over rows of the iterations each ran


def _project(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(theta, lo), hi)


def blas_single_thread():
    """Limit BLAS to one thread (we run our own threads over row chunks; nested BLAS threads on a shared
    machine oversubscribe the cores badly). A no-op when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1)


_POOL: dict[int, ThreadPoolExecutor] = {}


def _executor(n: int) -> ThreadPoolExecutor:
    """One long-lived pool per thread count (creating threads on every iteration is slow)."""
    if n not in _POOL:
        _POOL[n] = ThreadPoolExecutor(n, thread_name_prefix="scalinglab-laws")
    return _POOL[n]


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("SCALINGLAB_THREADS", "2")))
    except ValueError:
        return 2


def _map_chunks(work, K: int, chunk: int, size: int) -> None:
    """Run work(slice) over row chunks of K rows, on threads when ``size`` (the elements to process) is big
    enough. Each thread task takes a run of consecutive chunks: few hand-offs, each of which can wait a time
    slice on a loaded machine."""
    slices = [slice(s, min(s + chunk, K)) for s in range(0, K, chunk)]
    n_threads = min(_threads(), len(slices))
    if n_threads > 1 and size >= 100_000:  # below that, thread hand-offs cost more than they save
        groups = [g for g in np.array_split(np.arange(len(slices)), 2 * n_threads) if g.size]
        list(_executor(n_threads).map(lambda g: [work(slices[i]) for i in g], groups))
    else:
        for sl in slices:
            work(sl)


def _fast_path(form: Form) -> bool:
    """Whether to use the form's structured Gauss-Newton terms (``gn_objective``/``gn_matrices``): no
    (K, n, p) Jacobian. SCALINGLAB_LAWS_FASTPATH=0 forces the general path (for checks and benchmarks)."""
    return (
        os.environ.get("SCALINGLAB_LAWS_FASTPATH", "1") != "0"
        and hasattr(form, "gn_objective")
        and hasattr(form, "gn_matrices")
    )


_CHUNK_FAST = 256  # rows per chunk: fewer numpy calls per thread (less GIL contention); 256 measured best


def _gn_objective_fast(form, theta, lx, ly, delta, weights, dtype):
    """Fast path, step 1: objective (K,) of every row and the per-chunk states for ``_gn_matrices_fast``."""
    K = theta.shape[0]
    F = np.empty(K)
    states: dict[int, np.ndarray] = {}

    def work(sl: slice) -> None:
        wt = None if weights is None else weights[sl]
        y = ly if ly.ndim == 1 else ly[sl]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            F[sl], states[sl.start] = form.gn_objective(theta[sl].astype(dtype), lx, y, delta, wt)

    _map_chunks(work, K, _CHUNK_FAST, K * ly.shape[-1])
    F[~np.isfinite(F)] = np.inf
    return F, states


def _gn_matrices_fast(form, states, rows, K, p, lx, delta, weights, eps):
    """Fast path, step 2: gradient and Gauss-Newton matrix of the rows ``rows`` (bool (K,)) only; zeros
    elsewhere. Returns (G, H, ok) with ok False where G or H is not finite."""
    G = np.zeros((K, p))
    H = np.zeros((K, p, p))

    def work(sl: slice) -> None:
        m = rows[sl]
        if not m.any():
            return
        st, wt = states[sl.start], None if weights is None else weights[sl]
        if not m.all():
            st, wt = st[m], None if wt is None else wt[m]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            g, h = form.gn_matrices(st, lx, delta, wt, eps)
        ix = np.arange(sl.start, sl.stop)[m]
        G[ix], H[ix] = g, h

    n = next(iter(states.values())).shape[-1] if states else 0
    _map_chunks(work, K, _CHUNK_FAST, int(rows.sum()) * n)
    ok = np.all(np.isfinite(G), axis=1) & np.all(np.isfinite(H), axis=(1, 2))
    G[~ok] = 0.0
    H[~ok] = 0.0
    return G, H, ok


def _gn_terms(
    form: Form,
    theta: np.ndarray,
    logx: Mapping,
    logy: np.ndarray,
    delta: float,
    weights: np.ndarray | None,
    eps: float,
    dtype,
    chunk: int = 64,
):
    """Objective (K,), gradient (K, p) and IRLS Gauss-Newton matrix (K, p, p), in row chunks on a few threads.

    IRLS weight w = 1 inside |r| <= delta and eps*delta/|r| outside (eps < 1 under-weights the linear zone,
    which converges faster than the pure majoriser eps = 1; steps are still accepted only when f decreases).
    Uses the form's structured terms when it has them (``_fast_path``), else the Jacobian from ``log_eval``.
    """
    K, p = theta.shape
    lx = {k: v.astype(dtype) for k, v in logx.items()}
    ly = logy.astype(dtype)
    if _fast_path(form):
        F, states = _gn_objective_fast(form, theta, lx, ly, delta, weights, dtype)
        G, H, ok = _gn_matrices_fast(form, states, np.ones(K, bool), K, p, lx, delta, weights, eps)
        F[~ok] = np.inf
        return F, G, H
    F = np.empty(K)
    G = np.empty((K, p))
    H = np.empty((K, p, p))

    def work(sl: slice) -> None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            lyh, J = form.log_eval(theta[sl].astype(dtype), lx)
            r = (ly if ly.ndim == 1 else ly[sl]) - lyh
            psi = np.clip(r, -delta, delta)
            h = psi * (r - 0.5 * psi)  # Huber: r^2/2 inside, delta (|r| - delta/2) outside
            inside = psi == r
            w = np.where(inside, 1.0, eps * delta / np.abs(r)).astype(dtype, copy=False)
            if weights is not None:
                wt = weights[sl].astype(dtype)
                h, psi, w = h * wt, psi * wt, w * wt
            F[sl] = h.sum(axis=1, dtype=np.float64)
            # (K, p, n) copy: batched matmuls on contiguous operands are ~4x faster than on transposed views
            Jt = np.ascontiguousarray(J.transpose(0, 2, 1))
            G[sl] = -np.matmul(Jt, psi[:, :, None])[..., 0]
            H[sl] = np.matmul(Jt * w[:, None, :], J)

    _map_chunks(work, K, chunk, K * logy.shape[-1])
    bad = ~np.isfinite(F) | ~np.all(np.isfinite(G), axis=1) | ~np.all(np.isfinite(H), axis=(1, 2))
    F[bad] = np.inf
    G[bad] = 0.0
    H[bad] = 0.0
    return F, G, H


def batched_lm(
    form: Form,
    theta0: np.ndarray,
    logx: Mapping,
    logy: np.ndarray,
    delta: float,
    weights: np.ndarray | None = None,
    max_iter: int = 300,
    ftol: float = 1e-10,
    dtype=np.float64,
    eps: float = 0.1,
) -> BatchResult:
    """Damped IRLS Gauss-Newton (Levenberg-Marquardt) on all rows of theta0 at once, within the form's bounds.

    ``weights`` (K, n) gives each row its own point weights (bootstrap counts); (n,) or None share them.
    ``logy`` (K, n) gives each row its own data (a residual or parametric bootstrap); (n,) shares it.
    Steps are capped per parameter (a tenth of its bound range, between 0.5 and 10) so that a term that is
    negligible at the start cannot throw its parameters to a bound. A row is converged when an accepted step
    lowers its objective by less than ftol (relative), or its damping grows past 1e12 (no descent left).
    ``dtype=np.float32`` halves the cost for a first pass; finish in float64.
    """
    lo, hi = (np.array(b, dtype=float) for b in zip(*form.theta_bounds(), strict=True))
    cap = np.clip(0.1 * (hi - lo), 0.5, 10.0)
    theta = _project(np.array(theta0, dtype=float), lo, hi)
    K, p = theta.shape
    W = None if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), (K, logy.shape[-1]))
    f, G, H = _gn_terms(form, theta, logx, logy, delta, W, eps, dtype)
    fast = _fast_path(form)
    lx = {k: v.astype(dtype) for k, v in logx.items()}
    ly = logy.astype(dtype)
    lam = np.full(K, 1e-2)
    done = ~np.isfinite(f)
    eye = np.eye(p)
    it = 0
    row_its = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        row_its += idx.size
        th, Hk, gk = theta[idx], H[idx], G[idx]
        d = np.diagonal(Hk, axis1=1, axis2=2)
        dscale = np.maximum(d, 1e-12 * (d.max(axis=1, keepdims=True) + 1e-300))
        A = Hk + lam[idx, None, None] * dscale[:, :, None] * eye + 1e-14 * eye
        try:
            step = np.linalg.solve(A, -gk[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("kpq,kq->kp", np.linalg.pinv(A), -gk)
        step = np.where(np.isfinite(step), step, 0.0)
        step /= np.maximum(np.max(np.abs(step) / cap, axis=1, keepdims=True), 1.0)
        new = _project(th + step, lo, hi)
        Wk = None if W is None else W[idx]
        ly_k, logy_k = (ly, logy) if logy.ndim == 1 else (ly[idx], logy[idx])
        f_old = f[idx]
        if fast:  # the trial's objective first; G and H only where the step is accepted
            f_new, states = _gn_objective_fast(form, new, lx, ly_k, delta, Wk, dtype)
            acc = f_new < f_old
            G_new, H_new, ok = _gn_matrices_fast(form, states, acc, idx.size, p, lx, delta, Wk, eps)
            acc &= ok
            del states
        else:
            f_new, G_new, H_new = _gn_terms(form, new, logx, logy_k, delta, Wk, eps, dtype)
            acc = f_new < f_old
        gain = np.where(acc, (f_old - f_new) / np.maximum(f_old, 1e-300), 0.0)
        ia = idx[acc]
        theta[ia], f[ia], G[ia], H[ia] = new[acc], f_new[acc], G_new[acc], H_new[acc]
        lam[idx] = np.where(acc, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        moved = np.max(np.abs(new - th), axis=1)
        stalled = (acc & (gain < ftol)) | (lam[idx] > 1e12) | (~acc & (moved == 0))
        done[idx[stalled]] = True
    return BatchResult(theta=theta, f=f, converged=done, iterations=it, row_iterations=row_its)


F_FLOOR_PER_POINT = 1e-14  # objective per point below which a fit is exact in float64 (residuals ~1e-7)


def objective_scale(f: float, n_points: int) -> float:
    """The scale against which gradients and improvements of an objective ``f`` are judged: ``f`` itself, but
    no less than the floor of an exact fit (so a perfect fit, f ~ 0, does not divide by zero)."""
    return max(float(f), n_points * F_FLOOR_PER_POINT)


def descent_probe(
    form: Form, theta: np.ndarray, logx: Mapping, logy: np.ndarray, delta: float, max_evals: int = 300
) -> float:
    """Relative decrease of the objective that a bounded Nelder-Mead search finds from ``theta`` (0 if none).
    Derivative-free, so it also tells a kink of the Huber objective, where the gradient need not vanish,
    from a point that is not a minimum."""

    def fun(t: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            v = float(objective(form, t[None, :], logx, logy, delta)[0])
        return v if np.isfinite(v) else 1e300

    lo, hi = (np.array(b, dtype=float) for b in zip(*form.theta_bounds(), strict=True))
    f0 = fun(theta)
    step = 1e-3 * np.maximum(np.abs(theta), 1.0)
    simplex = [theta]
    for i in range(theta.size):
        t = theta.copy()
        t[i] = t[i] + step[i] if t[i] + step[i] <= hi[i] else t[i] - step[i]
        simplex.append(t)
    res = minimize(
        fun, theta, method="Nelder-Mead", bounds=list(zip(lo, hi, strict=True)),
        options={"initial_simplex": np.array(simplex), "xatol": 1e-12, "fatol": 0.0,
                 "maxfev": max_evals * theta.size},
    )
    return max(0.0, (f0 - float(res.fun)) / objective_scale(f0, logy.size))


@dataclass
class PolishResult:
    theta: np.ndarray
    f: float
    success: bool
    message: str
    nit: int
    grad_norm: float  # projected gradient, relative to objective_scale


def gradient(
    form: Form,
    theta: np.ndarray,
    logx: Mapping,
    logy: np.ndarray,
    delta: float,
    weights: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
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


def polish(
    form: Form,
    theta0: np.ndarray,
    logx: Mapping,
    logy: np.ndarray,
    delta: float,
    weights: np.ndarray | None = None,
) -> PolishResult:
    """L-BFGS-B, analytic gradient, objective rescaled to ~1, tight tolerances (ftol 1e-15, gtol 1e-12)."""
    f0, _ = gradient(form, theta0, logx, logy, delta, weights)
    scale = 1.0 / max(f0, 1e-300)

    def fun(t):
        with np.errstate(over="ignore", invalid="ignore"):
            f, g = gradient(form, t, logx, logy, delta, weights)
        if not np.isfinite(f):
            return 1e300, np.zeros_like(t)
        return f * scale, g * scale

    res = minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=form.theta_bounds(),
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000, "maxcor": 20},
    )
    theta = res.x if res.fun <= f0 * scale else theta0
    f, g = gradient(form, theta, logx, logy, delta, weights)
    gn = projected_grad_norm(form, theta, g) / objective_scale(f, logy.size)
    msg = res.message if isinstance(res.message, str) else str(res.message)
    return PolishResult(
        theta=theta, f=f, success=bool(res.success), message=msg, nit=int(res.nit), grad_norm=gn
    )
