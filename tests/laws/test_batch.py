"""Two-batch noise-scale estimators against a synthetic gradient oracle with known G and Sigma."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalinglab.errors import InputError
from scalinglab.laws import batch


def _oracle(rng, d=40):
    G = rng.normal(size=d) * 0.5
    L = rng.normal(size=(d, d)) / np.sqrt(d)
    Sigma = L @ L.T + 0.5 * np.eye(d)
    return G, Sigma, np.linalg.cholesky(Sigma)


def _draw_sq_norms(rng, G, chol, b_small, b_big, n_draws):
    """Per-example gaussian gradients; the small batch is the first b_small examples of the big one."""
    z = rng.normal(size=(n_draws, b_big, G.size)) @ chol.T + G
    g_small = z[:, :b_small].mean(axis=1)
    g_big = z.mean(axis=1)
    return (g_small**2).sum(axis=1), (g_big**2).sum(axis=1)


@pytest.mark.parametrize("b_small,b_big", [(1, 8), (4, 32), (8, 16), (16, 128)])
def test_estimates_unbiased_and_b_simple(b_small, b_big):
    rng = np.random.default_rng(b_small * 1000 + b_big)
    G, Sigma, chol = _oracle(rng)
    g2_true, tr_true = float(G @ G), float(np.trace(Sigma))
    s, g = _draw_sq_norms(rng, G, chol, b_small, b_big, n_draws=4000)
    g2_est, tr_est = batch.noise_scale_estimates(s, g, b_small, b_big)
    assert g2_est.shape == (4000,)
    assert abs(g2_est.mean() / g2_true - 1) < 0.02
    assert abs(tr_est.mean() / tr_true - 1) < 0.02
    # ratio of the averages (what the EMA does), never the average of per-draw ratios
    ema = batch.NoiseScaleEMA(beta=0.999)
    for a, b in zip(g2_est, tr_est, strict=True):
        ema.update(a, b)
    assert abs(ema.b_simple / (tr_true / g2_true) - 1) < 0.05


def test_scalar_inputs_and_identity():
    # noiseless: |G_b|^2 = |G|^2 + tr/b exactly
    g2, tr = 3.0, 50.0
    out = batch.noise_scale_estimates(g2 + tr / 4, g2 + tr / 64, 4, 64)
    assert isinstance(out[0], float)
    assert out == pytest.approx((g2, tr), rel=1e-12)


@pytest.mark.parametrize("bs,bb", [(8, 8), (16, 8), (0, 8), (-1, 8), (4, 0)])
def test_bad_batch_sizes(bs, bb):
    with pytest.raises(InputError, match="b_small|positive"):
        batch.noise_scale_estimates(1.0, 0.5, bs, bb)


def test_ema_bias_correction_and_state_roundtrip():
    ema = batch.NoiseScaleEMA(beta=0.9)
    assert np.isnan(ema.b_simple)
    ema.update(2.0, 10.0)
    assert ema.g2 == pytest.approx(2.0) and ema.trace_sigma == pytest.approx(10.0)  # corrected after 1 step
    ema.update(4.0, 10.0)
    ema.update(float("nan"), 1.0)  # ignored
    state = json.loads(json.dumps(ema.state_dict()))
    other = batch.NoiseScaleEMA()
    other.load_state_dict(state)
    assert other.b_simple == pytest.approx(ema.b_simple) and other.n_updates == 2
    w = np.array([0.9, 1.0]) * 0.1
    assert ema.g2 == pytest.approx((w @ [2.0, 4.0]) / w.sum())


def test_conversions():
    assert batch.sequences_to_tokens(512, 1024) == 2**19
    # at B = B_crit: S = 2 S_min and E = 2 E_min (Kaplan 5.1-5.2)
    assert batch.s_min(1000, 256, 256) == pytest.approx(500)
    assert batch.e_min(1e6, 256, 256) == pytest.approx(5e5)
    assert batch.c_min(1e20, 64, 256) == pytest.approx(1e20 / 1.25)
    # (S/S_min - 1)(E/E_min - 1) = 1 for any B
    B, Bc, S = 300.0, 1200.0, 5000.0
    E = B * S
    assert (S / batch.s_min(S, B, Bc) - 1) * (E / batch.e_min(E, B, Bc) - 1) == pytest.approx(1.0)
    assert batch.b_crit(3.0, B_star=2e8) == pytest.approx(1.07e6, rel=0.01)  # SPEC a.5 uses ~2e8
    with pytest.raises(InputError):
        batch.s_min(1.0, 0.0, 1.0)
