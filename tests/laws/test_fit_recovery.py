"""Fitting on simulated data with known parameters: recovery, interval coverage, back-test, diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalinglab.errors import FitError
from scalinglab.laws.fit import FitResult, backtest, fit

from ._sim import CASES, simulate


@pytest.mark.parametrize("name", list(CASES))
def test_every_exponent_recovered_within_2_percent(name):
    form, data, truth = simulate(name, seed=0)
    # the Chinchilla grid is subsampled (300 of 4,500 starts, seeded) to keep the suite fast;
    # the full grid runs on the real data in test_fit_chinchilla.py
    res = fit(form, data, starts=300 if name == "chinchilla" else None)
    assert res.converged, res.summary()
    assert res.n_at_optimum >= 1
    for k in form.exponents:
        assert res.params[k] == pytest.approx(truth[k], rel=0.02), (k, res.params[k], truth[k])
    assert res.r2_log > 0.9


def test_intervals_cover_the_truth_at_about_the_nominal_rate():
    """30 simulated data sets, 95% bootstrap percentile intervals: count how often they cover the truth."""
    hits = {"alpha": 0, "L_inf": 0}
    reps = 30
    for seed in range(reps):
        form, data, truth = simulate("power+const", seed=100 + seed, n=40)
        res = fit(form, data, bootstrap=100, seed=seed, starts=12)
        for k in hits:
            lo, hi = res.ci95[k]
            hits[k] += lo <= truth[k] <= hi
    for k, h in hits.items():
        # binomial(30, 0.95): P(X <= 24) ~ 0.6%
        assert h >= 25, (k, h)


def test_backtest_predicts_held_out_larger_runs():
    form, data, truth = simulate("chinchilla", seed=3, n=200)
    data["C"] = 6 * data["N"] * data["D"]
    bt = backtest(form, data, holdout=20, bootstrap=200, starts=200)
    assert bt.observed.size == 20 and bt.fit.n_points == 180
    assert np.all(
        bt.variables["N"] * bt.variables["D"] * 6 >= np.max(6 * data["N"] * data["D"]) * 0
    )  # shapes
    assert bt.mean_abs_rel_error < 0.02
    assert bt.coverage >= 0.8  # 95% prediction intervals, 1% noise
    assert "coverage" in bt.summary()


def test_result_roundtrip_and_prediction_interval():
    form, data, _ = simulate("power", seed=1, n=50)
    res = fit(form, data, bootstrap=100, seed=7)
    d = json.loads(json.dumps(res.to_dict(samples=True)))
    back = FitResult.from_dict(d)
    assert back.params == pytest.approx(res.params) and back.ci95 == res.ci95 and back.converged
    np.testing.assert_allclose(back.predict(N=[1e7, 1e9]), res.predict(N=[1e7, 1e9]))
    lo, hi = res.predict_interval(N=np.array([1e7, 1e12]))
    mid = res.predict(N=np.array([1e7, 1e12]))
    assert np.all(lo < mid) and np.all(mid < hi)
    assert (hi - lo)[1] / mid[1] > (hi - lo)[0] / mid[0]  # wider in extrapolation
    with pytest.raises(FitError, match="bootstrap"):
        fit(form, data).predict_interval(N=1e9)
    assert "alpha" in res.summary() and "95%" in res.summary()


def test_diagnostics_are_reported_not_silent():
    # under 1.5 decades of N
    form, data, _ = simulate("power", seed=2, n=40)
    data["N"] = 1e8 * (data["N"] / data["N"].min()) ** (1.0 / 4.0)  # squeeze to one decade
    data["loss"] = form.predict({"N_c": 8.8e13, "alpha": 0.076}, N=data["N"])
    res = fit(form, data)
    assert any("decades" in w for w in res.warnings)
    assert "WARNING" in res.summary()
    # loss that rises with N: the best decreasing power law has alpha at its lower bound 0
    n = np.logspace(6, 10, 40)
    res = fit("power+const", {"N": n, "loss": 2.0 + 0.01 * np.log(n)}, var="N")
    assert any("bound" in w or "not identified" in w for w in res.warnings), (res.params, res.warnings)
    # alpha and beta confounded: N and D move together
    form, data, _ = simulate("chinchilla", seed=4, n=60)
    data["D"] = 20 * data["N"] * np.exp(0.01 * np.random.default_rng(0).normal(size=60))
    data["loss"] = form.predict(CASES["chinchilla"][1], N=data["N"], D=data["D"])
    res = fit(form, data, starts=200, bootstrap=100)
    assert any("identifiable" in w for w in res.warnings), res.warnings


def test_too_few_points_is_a_fit_error():
    form, data, _ = simulate("chinchilla", seed=0, n=5)
    with pytest.raises(FitError, match="too few points"):
        fit(form, data)
