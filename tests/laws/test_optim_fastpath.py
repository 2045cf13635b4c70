"""The structured Gauss-Newton kernel of ``ChinchillaND`` (optim.Lse3Kernel: no (K, n, p) Jacobian) against
the general path."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.laws import optim
from scalinglab.laws.forms import ChinchillaND

from ._sim import simulate

DELTA = 1e-3


def _problem(n: int = 120, seed: int = 0):
    form, data, truth = simulate("chinchilla", seed=seed, n=n)
    logx = {"N": np.log(data["N"]), "D": np.log(data["D"])}
    return form, logx, np.log(data["loss"]), truth


def _general(form, theta, logx, logy, weights, eps, dtype, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_LAWS_FASTPATH", "0")
    out = optim._gn_terms(form, theta, logx, logy, DELTA, weights, eps, dtype)
    monkeypatch.delenv("SCALINGLAB_LAWS_FASTPATH")
    return out


def _rel(a, b):
    """Largest difference per row relative to that row's largest entry, over all rows."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.max(np.abs(a - b).max(axis=1) / np.abs(b).max(axis=1)))


def _thetas(form, truth, rng, K):
    """Random thetas around the truth and all over the start grid (steep, flat, one term dominant)."""
    near = form.to_theta(truth) + rng.normal(size=(K // 2, 5)) * [0.3, 1.0, 1.0, 0.05, 0.05]
    grid = form.start_grid()[rng.choice(4500, K - K // 2, replace=False)]
    th = np.vstack([near, grid + rng.normal(size=grid.shape) * 0.1])
    th[:, 3:] = np.abs(th[:, 3:])
    return th


@pytest.mark.parametrize("weights", ["none", "shared", "per-row"])
def test_fast_terms_match_general_path(weights, monkeypatch):
    form, logx, logy, truth = _problem()
    rng = np.random.default_rng(3)
    theta = _thetas(form, truth, rng, 300)
    n = logy.size
    W = {
        "none": None,
        "shared": np.broadcast_to(rng.uniform(0.5, 2.0, n), (len(theta), n)),
        "per-row": rng.integers(0, 4, size=(len(theta), n)).astype(float),  # bootstrap counts
    }[weights]
    F0, G0, H0 = _general(form, theta, logx, logy, W, 0.1, np.float64, monkeypatch)
    F1, G1, H1 = optim._gn_terms(form, theta, logx, logy, DELTA, W, 0.1, np.float64)
    assert np.all(np.isfinite(F0))
    assert _rel(F1, F0) < 1e-10
    assert _rel(G1, G0) < 1e-10
    assert _rel(H1, H0) < 1e-10
    np.testing.assert_array_equal(H1, np.swapaxes(H1, 1, 2))  # symmetric by construction


def test_fast_terms_without_optim_and_in_float32(monkeypatch):
    form, logx, logy, truth = _problem()
    theta = _thetas(form, truth, np.random.default_rng(4), 200)
    F0, G0, H0 = _general(form, theta, logx, logy, None, 0.1, np.float64, monkeypatch)
    kern = optim.GN_KERNELS[form.gn_kernel]
    F1, G1, H1 = kern.terms(theta, logx["N"], logx["D"], logy, DELTA, None, 0.1)  # the kernel on its own
    assert _rel(F1, F0) < 1e-10 and _rel(G1, G0) < 1e-10 and _rel(H1, H0) < 1e-10
    lx32 = {k: v.astype(np.float32) for k, v in logx.items()}
    F2, G2, H2 = kern.terms(theta.astype(np.float32), lx32["N"], lx32["D"], logy.astype(np.float32), DELTA)
    assert _rel(F2, F0) < 1e-4  # float32 rounding of r ~ 1e-7 against |r| ~ 1e-2
    assert _rel(H2, H0) < 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflow_guard_uses_the_shifted_lse(dtype, monkeypatch):
    """a - e up to ~95 overflows exp in float32 (and the guard is per chunk): the max-shifted branch."""
    form, logx, logy, truth = _problem()
    theta = np.tile(form.to_theta(truth), (6, 1))
    theta[:, 0] = -19.0  # e near its lower bound, a and b large: terms far above e
    theta[:, 1] = np.linspace(40.0, 75.0, 6)
    theta[:, 3] = np.linspace(2.0, 3.5, 6)
    F0, G0, H0 = _general(form, theta, logx, logy, None, 0.1, dtype, monkeypatch)
    F1, G1, H1 = optim._gn_terms(form, theta, logx, logy, DELTA, None, 0.1, dtype)
    assert np.all(np.isfinite(F1)) and np.all(np.isfinite(H1))
    tol = 1e-10 if dtype == np.float64 else 1e-3
    assert _rel(F1, F0) < tol and _rel(H1, H0) < tol


def test_matrices_for_a_subset_of_rows():
    """The trial step: the objective of every row, G and H of the rows whose objective is below f_old only."""
    form, logx, logy, truth = _problem()
    theta = _thetas(form, truth, np.random.default_rng(5), 300)
    W = np.random.default_rng(6).integers(0, 3, size=(300, logy.size)).astype(float)
    F, G, H = optim._gn_terms(form, theta, logx, logy, DELTA, W, 0.1, np.float64)
    rows = np.random.default_rng(7).random(300) < 0.6
    f_old = np.where(rows, F * 1.5, F * 0.5)  # these rows accept, the others do not
    kern = optim.GN_KERNELS[form.gn_kernel]
    F2, G2, H2, acc = optim._gn_trial_fast(kern, form, theta, logx, logy, DELTA, W, 0.1, np.float64, f_old)
    np.testing.assert_array_equal(acc, rows)
    np.testing.assert_array_equal(F2, F)
    assert _rel(G2[rows], G[rows]) < 1e-13  # a GEMM over fewer rows may round differently
    assert _rel(H2[rows], H[rows]) < 1e-13
    assert not G2[~rows].any() and not H2[~rows].any()


def test_batched_lm_same_optimum_on_both_paths(monkeypatch):
    form, logx, logy, truth = _problem(n=200, seed=2)
    theta0 = form.start_grid()[::45]  # 100 starts
    fast = optim.batched_lm(form, theta0, logx, logy, DELTA, ftol=1e-12)
    monkeypatch.setenv("SCALINGLAB_LAWS_FASTPATH", "0")
    slow = optim.batched_lm(form, theta0, logx, logy, DELTA, ftol=1e-12)
    assert fast.converged.mean() > 0.95 and slow.converged.mean() > 0.95  # a start may hit max_iter
    assert abs(fast.f.min() / slow.f.min() - 1) < 1e-9
    best = form.to_params(fast.theta[np.argmin(fast.f)])
    for k in ("E", "alpha", "beta"):  # 1% noise on 200 points: close to the truth (A, B vary more)
        assert abs(best[k] / truth[k] - 1) < 0.05, k
    # the same starts reach the optimum on both paths (a start or two may differ by rounding)
    at_opt = lambda r: r.f <= r.f.min() * (1 + 1e-6)  # noqa: E731
    assert abs(int(at_opt(fast).sum()) - int(at_opt(slow).sum())) <= 3
    assert at_opt(fast).sum() > 10


def test_per_row_weights_in_batched_lm_match_separate_fits():
    """Bootstrap-style (K, n) weights: each row is fitted to its own weights, as if alone."""
    form, logx, logy, truth = _problem(n=150, seed=3)
    rng = np.random.default_rng(8)
    W = rng.multinomial(150, np.ones(150) / 150, size=4).astype(float)
    theta0 = np.tile(form.to_theta(truth), (4, 1))
    together = optim.batched_lm(form, theta0, logx, logy, DELTA, weights=W, ftol=1e-12)
    for k in range(4):
        alone = optim.batched_lm(form, theta0[k : k + 1], logx, logy, DELTA, weights=W[k], ftol=1e-12)
        assert abs(together.f[k] / alone.f[0] - 1) < 1e-9
        np.testing.assert_allclose(together.theta[k], alone.theta[0], rtol=1e-6, atol=1e-8)
    assert isinstance(form, ChinchillaND)
