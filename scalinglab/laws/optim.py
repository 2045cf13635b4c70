"""The optimiser behind ``fit``: summed Huber on log residuals, batched Levenberg-Marquardt, L-BFGS-B polish.

Objective (Hoffmann 2022; Besiroglu 2024): sum_i w_i huber_delta(log y_i - log yhat_i), delta = 1e-3,
**summed** over points. (The mean makes the objective ~1e-6, below what L-BFGS-B's default ftol sees, so
it stops after a couple of iterations: the trap in SPEC (e). We sum, and the polish also rescales the
objective to order 1 so that its tolerances mean what they say.)

Many starts (or many bootstrap resamples) are optimised at once: each iteration solves a damped, IRLS-weighted
Gauss-Newton system (J^T W J + lambda diag) step = -grad for every row in one batched numpy call, with per-row
acceptance and damping. IRLS weights w = min(1, delta/|r|) make the quadratic model a majoriser of the Huber
loss in the residuals, which keeps the steps sane far from the data. Rows stop when their objective stalls.

A form that names a structured Gauss-Newton kernel (``Form.gn_kernel``; ``GN_KERNELS``: ``Lse3Kernel`` for
``ChinchillaND``) skips the (K, n, p) Jacobian: each trial step's objective is computed first, and G, H only
for the rows that accept it.
``SCALINGLAB_LAWS_FASTPATH=0`` forces the general path (same maths; used to check the fast one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from scalinglab.laws.forms import Form, _lse


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
    """Summed Huber of log residuals for each row of theta (K, p) -> (K,). ``weights``: (n,) or (K, n).
    In float64, by the form's structured kernel when it has one (5x faster than ``log_eval``)."""
    kern = _kernel(form)
    if kern is not None:
        th = np.atleast_2d(np.asarray(theta, dtype=float))
        K = th.shape[0]
        x1, x2 = (np.asarray(logx[v], dtype=float) for v in form.variables)
        W = _rows_of(None if weights is None else np.asarray(weights, dtype=float), None, K)
        F = np.empty(K)

        def work(sl: slice) -> None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                F[sl] = kern.objective(th[sl], x1, x2, logy, delta, None if W is None else W[sl])[0]

        _map_chunks(work, K, _CHUNK_FAST, K * logy.size)
        return np.where(np.isfinite(F), F, np.inf)
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
    machine oversubscribe the cores badly)."""
    from threadpoolctl import threadpool_limits

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


class Lse3Kernel:
    """Gauss-Newton terms of log y = LSE(e, a - alpha x1, b - beta x2) without the (K, n, 5) Jacobian.

    theta rows are (e, a, b, alpha, beta) (``ChinchillaND``: x1 = log N, x2 = log D). With the softmax
    weights s_e, s_1, s_2 of the three terms the Jacobian columns are [s_e, s_1, s_2, -s_1 x1, -s_2 x2], so
    H = sum_n w J J^T needs only the six (K, n) arrays w s_i s_j and the gradient only the three psi s_i,
    each contracted with the data features [1, x1, x2, x1^2, x1 x2, x2^2]: one (9K, n) @ (n, 6) GEMM.
    Arrays: 0 w se se, 1 w se s1, 2 w se s2, 3 w s1 s1, 4 w s1 s2, 5 w s2 s2, 6-8 psi s_e, s_1, s_2.
    Every (K, n) array is a contiguous block (state (4, K, n), X (9, K, n)): strided per-row views made each
    elementwise pass about twice as slow.
    """

    # entry (p, q) of H is sign * (array @ feature): (p, q, array, feature, sign)
    _H = (
        (0, 0, 0, 0, 1.0), (0, 1, 1, 0, 1.0), (0, 2, 2, 0, 1.0), (0, 3, 1, 1, -1.0), (0, 4, 2, 2, -1.0),
        (1, 1, 3, 0, 1.0), (1, 2, 4, 0, 1.0), (1, 3, 3, 1, -1.0), (1, 4, 4, 2, -1.0), (2, 2, 5, 0, 1.0),
        (2, 3, 4, 1, -1.0), (2, 4, 5, 2, -1.0), (3, 3, 3, 3, 1.0), (3, 4, 4, 4, 1.0), (4, 4, 5, 5, 1.0),
    )
    _G = ((6, 0, -1.0), (7, 0, -1.0), (8, 0, -1.0), (7, 1, 1.0), (8, 2, 1.0))  # gradient: -sum psi J
    _EXP_MAX = {4: 80.0, 8: 700.0}  # largest exp argument (float32, float64) with room for a sum of three
    p = 5

    def __init__(self) -> None:
        self._idx = np.zeros(25, dtype=np.intp)
        self._sign = np.zeros(25)
        for p, q, arr, ft, sg in self._H:
            self._idx[[5 * p + q, 5 * q + p]] = 6 * arr + ft
            self._sign[[5 * p + q, 5 * q + p]] = sg
        self._gidx = np.array([6 * arr + ft for arr, ft, _ in self._G], dtype=np.intp)
        self._gsign = np.array([sg for _, _, sg in self._G])
        self._cache: dict[str, tuple] = {}

    def _cached(self, key: str, x1: np.ndarray, x2: np.ndarray, make):
        """A matrix built from (x1, x2), kept for the last arrays seen (the same arrays every iteration)."""
        c = self._cache.get(key)
        if c is None or c[0] is not x1 or c[1] is not x2:
            c = (x1, x2, make())
            self._cache[key] = c
        return c[2]

    def objective(self, theta, x1, x2, logy, delta, weights=None):
        """Summed Huber objective (K,) (float64 sum) and the state ``matrices`` needs: (4, K, n)
        [s_e, s_1, s_2, r], in theta's dtype."""
        dt = theta.dtype
        K = theta.shape[0]
        x1, x2 = x1.astype(dt, copy=False), x2.astype(dt, copy=False)
        n = x1.size
        e, al, be = theta[:, 0:1], theta[:, 3:4], theta[:, 4:5]
        c1, c2 = theta[:, 1:2] - e, theta[:, 2:3] - e
        state = np.empty((4, K, n), dtype=dt)
        se, s1, s2, r = state
        # terms relative to e: exp(a - e - alpha x1) etc. Two exps instead of three, safe when no exponent
        # can overflow (always within the bounds in float64); otherwise the max-shifted LSE.
        big = np.maximum(
            np.maximum(c1 - al * x1.min(), c1 - al * x1.max()),
            np.maximum(c2 - be * x2.min(), c2 - be * x2.max()),
        )
        if big.size and np.max(big) < self._EXP_MAX[dt.itemsize]:
            if dt == np.float32:  # [c, -alpha] @ [[1...], [x...]]: a GEMM beats two passes in float32
                m1 = self._cached("lin1", x1, x2, lambda: np.stack([np.ones_like(x1), x1]))
                m2 = self._cached("lin2", x1, x2, lambda: np.stack([np.ones_like(x2), x2]))
                np.matmul(np.concatenate([c1, -al], axis=1), m1, out=s1)
                np.matmul(np.concatenate([c2, -be], axis=1), m2, out=s2)
            else:  # (OpenBLAS's dgemm is slower than two passes here)
                np.multiply(al, x1, out=s1)
                np.subtract(c1, s1, out=s1)
                np.multiply(be, x2, out=s2)
                np.subtract(c2, s2, out=s2)
            u = state[1:3]
            np.exp(u, out=u)
            np.add(s1, s2, out=r)
            r += 1.0
            np.reciprocal(r, out=se)
            u *= se
            np.log(r, out=r)
            np.subtract(logy.astype(dt, copy=False), r, out=r)
            r -= e  # log y - e - log(1 + exp(t1 - e) + exp(t2 - e))
        else:
            t1, t2 = theta[:, 1:2] - al * x1, theta[:, 2:3] - be * x2
            ly, (w0, w1, w2) = _lse(np.broadcast_to(e, (K, n)), t1, t2)
            se[...], s1[...], s2[...] = w0, w1, w2
            np.subtract(logy.astype(dt, copy=False), ly, out=r)
        psi = np.clip(r, -delta, delta)
        h = np.multiply(psi, -0.5)
        h += r
        h *= psi  # Huber: r^2/2 inside, delta (|r| - delta/2) outside
        if weights is not None:
            h *= weights.astype(dt, copy=False)
        return h.sum(axis=1, dtype=np.float64), state

    def matrices(self, state, x1, x2, delta, weights=None, eps=0.1):
        """Gradient (K, 5) and IRLS Gauss-Newton matrix (K, 5, 5), float64, from ``objective``'s state."""
        _, K, n = state.shape
        dt = state.dtype
        feats = self._cached(
            f"feat{dt.itemsize}", x1, x2,
            lambda: np.stack([np.ones_like(x1), x1, x2, x1 * x1, x1 * x2, x2 * x2], axis=1).astype(dt),
        )
        se, s1, s2, r = state
        a = np.abs(r)
        inside = a <= delta
        w = np.divide(delta, a, out=a)
        w *= eps
        np.copyto(w, 1.0, where=inside)  # IRLS weight: 1 inside |r| <= delta, eps delta/|r| outside
        psi = np.clip(r, -delta, delta)
        if weights is not None:
            wt = weights.astype(dt, copy=False)
            psi *= wt
            w *= wt
        # each array is contracted with the features as soon as it is made, while it is in cache (one
        # (9K, n) GEMM over arrays made first was 2x slower: 2 MB of float32 does not fit in L2)
        R9 = np.empty((9, K, 6), dtype=dt)
        ws, t = np.empty_like(r), np.empty_like(r)

        def put(i: int, u: np.ndarray, v: np.ndarray) -> None:  # array i = u v, contracted
            np.multiply(u, v, out=t)
            np.matmul(t, feats, out=R9[i])

        np.multiply(w, se, out=ws)
        put(0, ws, se), put(1, ws, s1), put(2, ws, s2)
        np.multiply(w, s1, out=ws)
        put(3, ws, s1), put(4, ws, s2)
        np.multiply(w, s2, out=ws)
        put(5, ws, s2)
        put(6, psi, se), put(7, psi, s1), put(8, psi, s2)
        R = R9.transpose(1, 0, 2).reshape(K, 54)
        H = np.multiply(R[:, self._idx], self._sign).reshape(K, 5, 5)
        G = np.multiply(R[:, self._gidx], self._gsign)
        return G, H

    def terms(self, theta, x1, x2, logy, delta, weights=None, eps=0.1):
        """Objective (K,), gradient (K, 5) and IRLS Gauss-Newton matrix (K, 5, 5) in one call: the same
        maths as the general path (IRLS weight 1 inside |r| <= delta, eps delta/|r| outside)."""
        F, state = self.objective(theta, x1, x2, logy, delta, weights)
        G, H = self.matrices(state, x1, x2, delta, weights, eps)
        return F, G, H


GN_KERNELS = {"lse3": Lse3Kernel()}  # forms name theirs in ``Form.gn_kernel``


def _kernel(form: Form):
    """The form's structured Gauss-Newton kernel (no (K, n, p) Jacobian), or None for the general path.
    SCALINGLAB_LAWS_FASTPATH=0 forces the general path (for checks and benchmarks)."""
    if os.environ.get("SCALINGLAB_LAWS_FASTPATH", "1") == "0" or form.gn_kernel is None:
        return None
    return GN_KERNELS[form.gn_kernel]


_CHUNK_FAST = 384  # rows per chunk: fewer numpy calls per thread; 384-1024 measured best (Zen 4, n = 240)


def _gn_trial_fast(kern, form, theta, lx, ly, delta, weights, eps, dtype, f_old=None):
    """Fast path: objective (K,) of every row and, for the rows that accept (objective below ``f_old``; every
    row with a finite objective when None), gradient (K, p) and Gauss-Newton matrix (K, p, p), zeros
    elsewhere. Returns (F, G, H, acc); acc is False where G or H is not finite.

    Chunk by chunk: each chunk's matrices are formed right after its objective, from its state while that is
    still in cache (objectives of all rows first, then matrices from kept states, was 1.5-2x slower: the
    states of 4,500 rows are 17 MB of fresh memory per iteration)."""
    K, p = theta.shape
    F = np.empty(K)
    G = np.zeros((K, p))
    H = np.zeros((K, p, p))
    acc = np.zeros(K, dtype=bool)
    x1, x2 = (lx[v] for v in form.variables)

    def work(sl: slice) -> None:
        wt = None if weights is None else weights[sl]
        y = ly if ly.ndim == 1 else ly[sl]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            f, st = kern.objective(theta[sl].astype(dtype), x1, x2, y, delta, wt)
            F[sl] = f
            a = np.isfinite(f) if f_old is None else f < f_old[sl]
            if not a.any():
                return
            ix = np.flatnonzero(a)
            if ix.size < a.size:
                st, wt = np.take(st, ix, axis=1), None if wt is None else wt[ix]
            g, h = kern.matrices(st, x1, x2, delta, wt, eps)
        ok = np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(h), axis=(1, 2))
        rows = sl.start + ix[ok]
        G[rows], H[rows], acc[rows] = g[ok], h[ok], True

    _map_chunks(work, K, _CHUNK_FAST, K * ly.shape[-1])
    F[~np.isfinite(F)] = np.inf
    return F, G, H, acc


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
    Uses the form's structured kernel when it names one (``_kernel``), else the Jacobian from ``log_eval``.
    """
    K, p = theta.shape
    lx = {k: v.astype(dtype) for k, v in logx.items()}
    ly = logy.astype(dtype)
    kern = _kernel(form)
    if kern is not None:
        F, G, H, ok = _gn_trial_fast(kern, form, theta, lx, ly, delta, weights, eps, dtype)
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
    W = None if weights is None else np.asarray(weights, dtype=float)
    f, G, H = _gn_terms(form, theta, logx, logy, delta, _rows_of(W, None, K), eps, dtype)
    kern = _kernel(form)
    lx = {k: v.astype(dtype) for k, v in logx.items()}
    ly = logy.astype(dtype)
    done = ~np.isfinite(f)
    # the rows still running, compacted as rows finish: their per-row data and weights move with them
    # (gathering them again on every iteration cost more than the iteration for a bootstrap)
    ix = np.flatnonzero(~done)
    th, fa, Ga, Ha = theta[ix], f[ix], G[ix], H[ix]
    lam = np.full(ix.size, 1e-2)
    Wa = W if W is None or W.ndim == 1 else W[ix]  # shared (n,) weights stay shared
    ya, ya64 = (ly, logy) if logy.ndim == 1 else (ly[ix], logy[ix])
    diag = np.arange(p) * (p + 1)  # the diagonal of a flattened (p, p)
    it = 0
    row_its = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        if ix.size == 0:
            break
        row_its += ix.size
        d = Ha.reshape(-1, p * p)[:, diag]
        dscale = np.maximum(d, 1e-12 * (d.max(axis=1, keepdims=True) + 1e-300))
        A = Ha.copy()
        Ad = A.reshape(-1, p * p)
        Ad[:, diag] += lam[:, None] * dscale
        Ad[:, diag] += 1e-14
        try:
            step = np.linalg.solve(A, -Ga[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("kpq,kq->kp", np.linalg.pinv(A), -Ga)
        step = np.where(np.isfinite(step), step, 0.0)
        step /= np.maximum(np.max(np.abs(step) / cap, axis=1, keepdims=True), 1.0)
        new = _project(th + step, lo, hi)
        Wk = _rows_of(Wa, None, ix.size)
        if kern is not None:  # G and H only where the step is accepted
            f_new, G_new, H_new, acc = _gn_trial_fast(kern, form, new, lx, ya, delta, Wk, eps, dtype, fa)
        else:
            f_new, G_new, H_new = _gn_terms(form, new, logx, ya64, delta, Wk, eps, dtype)
            acc = f_new < fa
        gain = np.where(acc, (fa - f_new) / np.maximum(fa, 1e-300), 0.0)
        moved = np.max(np.abs(new - th), axis=1)
        th[acc], fa[acc], Ga[acc], Ha[acc] = new[acc], f_new[acc], G_new[acc], H_new[acc]
        lam = np.where(acc, np.maximum(lam / 3.0, 1e-9), lam * 4.0)
        stalled = (acc & (gain < ftol)) | (lam > 1e12) | (~acc & (moved == 0))
        if stalled.any():
            gone = ix[stalled]
            theta[gone], f[gone], done[gone] = th[stalled], fa[stalled], True
            keep = ~stalled
            ix, th, fa, Ga, Ha, lam = ix[keep], th[keep], fa[keep], Ga[keep], Ha[keep], lam[keep]
            if W is not None and W.ndim == 2:
                Wa = Wa[keep]
            if logy.ndim == 2:
                ya, ya64 = ya[keep], ya64[keep]
    theta[ix], f[ix] = th, fa  # rows that ran out of iterations
    return BatchResult(theta=theta, f=f, converged=done, iterations=it, row_iterations=row_its)


def _rows_of(W: np.ndarray | None, ix: np.ndarray | None, k: int) -> np.ndarray | None:
    """Point weights for k rows: per-row weights (2-d) taken at ``ix`` (all when None); shared ones (1-d)
    broadcast to (k, n) without a copy."""
    if W is None:
        return None
    if W.ndim == 2:
        return W if ix is None else W[ix]
    return np.broadcast_to(W, (k, W.shape[-1]))


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

    from scipy.optimize import minimize

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
    stationary: float = 0.0,
) -> PolishResult:
    """L-BFGS-B, analytic gradient, objective rescaled to ~1, tight tolerances (ftol 1e-15, gtol 1e-12).

    Skipped (``nit`` 0) when the start's relative projected gradient is already below ``stationary``: after
    the float64 LM to a relative gain of 1e-12 it lowered the objective by ~1e-15 (relative) on every law of
    the test suite, and importing scipy.optimize costs more than a whole Chinchilla fit's start-up."""
    f0, g0 = gradient(form, theta0, logx, logy, delta, weights)
    gn0 = projected_grad_norm(form, theta0, g0) / objective_scale(f0, logy.size)
    if np.isfinite(f0) and gn0 < stationary:
        return PolishResult(theta=theta0, f=f0, success=True, message="", nit=0, grad_norm=gn0)
    from scipy.optimize import minimize

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
