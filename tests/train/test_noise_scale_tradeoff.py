"""The steps/examples hyperbola fit and the trade-off analysis helpers, on data with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalinglab.errors import InputError
from scalinglab.laws.batch import fit_tradeoff
from scalinglab.train.batch_tradeoff import centred_mean, crossing, raw_from_ema


@pytest.mark.parametrize("s_min,b_crit", [(100.0, 20.0), (2500.0, 3.0), (40.0, 500.0)])
def test_hyperbola_fit_recovers_known_s_min_e_min(s_min: float, b_crit: float) -> None:
    B = b_crit * np.array([0.1, 0.3, 1.0, 3.0, 10.0])
    rng = np.random.default_rng(0)
    S = s_min * (1 + b_crit / B) * np.exp(0.02 * rng.standard_normal(B.size))  # 2 % noise on the steps
    f = fit_tradeoff(B, S)
    assert f["S_min"] == pytest.approx(s_min, rel=0.04)
    assert f["E_min"] == pytest.approx(s_min * b_crit, rel=0.04)
    assert f["B_crit"] == pytest.approx(b_crit, rel=0.06)
    np.testing.assert_allclose(f["hyperbola"], 1.0, atol=0.25)  # (S/S_min - 1)(E/E_min - 1) = 1
    exact = fit_tradeoff(B, s_min * (1 + b_crit / B))
    assert exact["B_crit"] == pytest.approx(b_crit, rel=1e-9)
    np.testing.assert_allclose(exact["hyperbola"], 1.0, rtol=1e-7)


def test_hyperbola_fit_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="distinct batch sizes"):
        fit_tradeoff([8, 8, 8], [10, 11, 12])
    with pytest.raises(InputError, match="positive"):
        fit_tradeoff([2, 4, 8], [10, 0, 5])
    with pytest.raises(InputError, match="straddle"):  # more steps at larger batch: no trade-off
        fit_tradeoff([2, 4, 8], [10, 20, 40])


def test_raw_values_recovered_exactly_from_logged_emas() -> None:
    rng = np.random.default_rng(1)
    x, beta = rng.standard_normal(50), 0.9
    m, ema = 0.0, []
    for t, v in enumerate(x, 1):
        m = beta * m + (1 - beta) * v
        ema.append(m / (1 - beta**t))
    np.testing.assert_allclose(raw_from_ema(np.array(ema), beta), x, atol=1e-9)


def test_centred_mean_has_no_lag_and_crossing_interpolates() -> None:
    steps = np.arange(1, 101, dtype=float)
    loss = 5.0 - 0.02 * steps  # linear: a centred mean reproduces it exactly (a trailing one would lag)
    np.testing.assert_allclose(centred_mean(loss, 7), loss, atol=1e-12)
    assert crossing(steps, loss, 4.01) == pytest.approx(49.5)
    assert crossing(steps, loss, 1.0) is None


def test_per_step_estimates_recovered_from_a_real_run(text_data, tmp_path, monkeypatch) -> None:
    """A short run (the meter's EMA decay is then beta_for_run's, not 0.99): the per-step |G|^2 and tr(Sigma)
    recovered from the logged EMAs equal what the meter fed its EMA, step by step."""
    import scalinglab.laws.batch as lb
    from scalinglab.train.batch_tradeoff import per_step_noise
    from scalinglab.train.checkpoint import load_checkpoint
    from scalinglab.train.trainer import train

    from .conftest import tiny

    fed: list[tuple[float, float]] = []
    update = lb.NoiseScaleEMA.update

    def record(self, g2, trace):
        fed.append((g2, trace))
        return update(self, g2, trace)

    monkeypatch.setattr(lb.NoiseScaleEMA, "update", record)
    run = tmp_path / "run"
    train(tiny(text_data, tokens=8 * 32 * 12, noise_scale_every=1), run)
    assert load_checkpoint(run)["noise_scale"]["ema"]["beta"] != 0.99  # the case that used to go wrong
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    g2, tr = per_step_noise(run, rows)
    np.testing.assert_allclose(g2, [a for a, _ in fed], rtol=1e-9)
    np.testing.assert_allclose(tr, [b for _, b in fed], rtol=1e-9)
    with pytest.raises(InputError, match="every step"):
        per_step_noise(run, rows[:-1])
