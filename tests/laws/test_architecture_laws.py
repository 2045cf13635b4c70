"""Kaplan 2020's architecture analyses as pure maths, on data drawn from known ground truth: L(t) by position
and the a(N) trend, the transfer offset, and the shape range within 3 %."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import InputError
from scalinglab.laws.context import exponent_trend, fit_position_loss
from scalinglab.laws.shape import shape_sensitivity
from scalinglab.laws.transfer import transfer_offset


def test_position_fit_recovers_the_law_with_intervals():
    rng = np.random.default_rng(0)
    t = np.arange(1, 257)
    truth = {"L_inf": 1.45, "t_0": 0.8, "alpha": 0.55}
    y = (truth["L_inf"] + (t / truth["t_0"]) ** -truth["alpha"]) * np.exp(0.004 * rng.standard_normal(t.size))
    r = fit_position_loss(t, y, bootstrap=200, seed=1)
    assert r.converged and not r.warnings and r.form.variables == ("t",)
    for k, v in truth.items():
        lo, hi = r.ci95[k]
        assert lo <= v <= hi and r.params[k] == pytest.approx(v, rel=0.05), k
    with pytest.raises(InputError, match="usable positions"):
        fit_position_loss([1, 2, 3], [3.0, 2.9, 2.8])


def test_exponent_trend_recovers_a_known_slope():
    rng = np.random.default_rng(2)
    n = np.geomspace(1e4, 1e7, 8)
    a = 0.2 + 0.07 * np.log10(n) + 0.005 * rng.standard_normal(n.size)
    tr = exponent_trend(n, a, np.full(n.size, 0.005))
    assert tr.slope == pytest.approx(0.07, abs=0.01) and tr.slope_ci[0] < 0.07 < tr.slope_ci[1]
    assert tr.intercept == pytest.approx(0.2, abs=0.05) and tr.n_points == 8
    with pytest.raises(InputError):
        exponent_trend([1e4, 1e4, 1e4], [0.1, 0.2, 0.3])


def test_transfer_offset_parallel_and_not():
    rng = np.random.default_rng(3)
    n = np.geomspace(1e5, 1e8, 7)
    train = (8.8e13 / n) ** 0.076 * np.exp(0.005 * rng.standard_normal(n.size))
    other = 1.2 * (8.8e13 / n) ** 0.076 * np.exp(0.005 * rng.standard_normal(n.size))
    r = transfer_offset(n, train, other, seed=0)
    assert r.offset_ci[0] < np.log(1.2) < r.offset_ci[1] and r.ratio == pytest.approx(1.2, rel=0.01)
    assert r.slope_ci[0] < 0 < r.slope_ci[1]  # parallel lines: no slope
    assert r.train.params["alpha"] == pytest.approx(0.076, abs=0.01)
    assert r.other.params["alpha"] == pytest.approx(0.076, abs=0.01)
    steeper = (3e13 / n) ** 0.12
    r2 = transfer_offset(n, train, steeper, seed=0)
    assert r2.slope_ci[1] < 0  # the other set improves faster with N: the offset shrinks, and it shows
    with pytest.raises(InputError, match="two or more"):
        transfer_offset([1e5], [3.0], [3.5])


def test_shape_range_within_tolerance():
    # increase = c (ln(x/x*))^2: within 3 % for |ln(x/x*)| <= sqrt(0.03/c) -> x in [x* e^-w, x* e^w]
    c, best = 0.01, 20.0
    w = np.sqrt(0.03 / c)
    x = best * np.exp(np.linspace(-2.5, 2.5, 41))
    loss = 2.0 * (1 + c * np.log(x / best) ** 2)
    r = shape_sensitivity(x, loss)
    assert r.best_x == pytest.approx(best) and r.increase.min() == 0.0
    assert r.lo == pytest.approx(best * np.exp(-w), rel=0.01)
    assert r.hi == pytest.approx(best * np.exp(w), rel=0.01)
    assert not r.lo_open and not r.hi_open and r.decades == pytest.approx(2 * w / np.log(10), rel=0.02)
    flat = shape_sensitivity([2, 10, 50], [2.0, 2.01, 2.02])  # never leaves 3 %: open on both sides
    assert flat.lo_open and flat.hi_open and (flat.lo, flat.hi) == (2.0, 50.0)
    for bad in (([1, 1], [2.0, 2.1]), ([1, 2], [2.0, -1.0]), ([1], [2.0])):
        with pytest.raises(InputError):
            shape_sensitivity(*bad)
