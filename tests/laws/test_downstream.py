"""Downstream accuracy from loss (the OLMo ladder's two steps) on a ladder with a known ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.laws.downstream import backtest_downstream, fit_downstream, sigmoid

TRUTH1 = {"E": 0.6, "A": 200.0, "B": 300.0, "alpha": 0.32, "beta": 0.30}
TRUTH2 = {"lo": 0.25, "hi": 1.0, "k": 6.0, "L0": 1.05}  # a 4-way multiple-choice task


def task_loss(N, D):
    t = TRUTH1
    return t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]


def ladder(seed=0, n_docs=2000):
    """6 sizes x 4 token multiples; task loss with 0.3 % noise, accuracy binomial over n_docs questions."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(2e7, 2e9, 6):
        for m in (5, 10, 20, 40):
            L = task_loss(N, m * N) * np.exp(rng.normal(0, 0.003))
            acc = rng.binomial(n_docs, sigmoid(L, **TRUTH2)) / n_docs
            rows.append({"N": N, "D": m * N, "task_loss": L, "acc": acc})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    return fit_downstream(ladder(), bootstrap=100, acc_range=(0.25, 1.0), starts=300)


def test_both_steps_recover_the_truth(fitted):
    r = fitted
    assert r.converged and not r.warnings
    assert set(r.step1.form.variables) == {"N", "D"}  # enough rungs for the Chinchilla form
    assert r.step1.params["alpha"] == pytest.approx(TRUTH1["alpha"], abs=0.02)
    assert r.step2["L0"] == pytest.approx(TRUTH2["L0"], abs=0.03)
    assert r.step2["k"] == pytest.approx(TRUTH2["k"], rel=0.1)
    assert r.step2["lo"] == pytest.approx(0.25, abs=0.01)
    assert r.r2_acc > 0.99


def test_prediction_at_a_larger_model_is_within_its_interval(fitted):
    N, D = 7e9, 20 * 7e9  # 3.5x beyond the largest rung in N, 1.75x in D
    truth = float(sigmoid(task_loss(N, D), **TRUTH2))
    pred = float(fitted.predict(N, D))
    lo, hi = fitted.predict_interval(N, D)
    assert abs(pred - truth) < 0.02  # within 2 points of accuracy
    assert lo < truth < hi and hi - lo < 0.1
    mean_lo, mean_hi = fitted.predict_interval(N, D, noise=False)
    assert mean_hi - mean_lo < hi - lo  # the mean curve is tighter than one new evaluation
    json.dumps(fitted.to_dict())


def test_backtest_on_the_largest_rung():
    bt = backtest_downstream(ladder(seed=1), bootstrap=60, acc_range=(0.25, 1.0), starts=300)
    row = bt["rows"][-1]
    assert row["N"] == pytest.approx(2e9) and row["D"] == pytest.approx(8e10)
    assert abs(bt["abs_error"]) < 0.03 and bt["covered"]


def test_few_runs_use_compute_and_validation_loss_stands_in():
    df = (
        ladder().iloc[::4].rename(columns={"task_loss": "loss"}).reset_index(drop=True)
    )  # one multiple per size
    r = fit_downstream(df, bootstrap=0)
    assert set(r.step1.form.variables) == {"C"} and r.x == "loss"
    assert any("validation loss" in w for w in r.warnings)
    with pytest.raises(FitError, match="intervals need a bootstrap"):
        r.predict_interval(1e9, 2e10)


def test_errors():
    df = ladder().head(3)
    with pytest.raises(FitError, match="at least 4 runs"):
        fit_downstream(df)
    bad = ladder().assign(acc=lambda d: d["acc"] * 100)
    with pytest.raises(InputError, match="fraction"):
        fit_downstream(bad)


def test_olmo_ladder_predicts_the_7b_hellaswag_accuracy():
    """Real data: the OLMo ladder's 16 rungs (190M-1.3B, 1-10x Chinchilla tokens; final checkpoints) predict
    the 7B model trained on 3.9T tokens. OLMo reports its ranked-classification tasks within 2 points; here
    the task loss lands within 0.5 % and the accuracy within 2 points, inside the 95 % interval."""
    from pathlib import Path

    df = pd.read_csv(Path(__file__).with_name("olmo_ladder_hellaswag.csv"), comment="#")
    ladder, target = df[df["size"] != "7B"], df[df["size"] == "7B"].iloc[0]
    r = fit_downstream(ladder, bootstrap=200, acc_range=(0.25, 1.0))  # 4-way choice: chance 25 %
    assert set(r.step1.form.variables) == {"C"}  # 4 sizes over 0.83 decades: N and D not separable
    loss = float(r.predict_loss(target["N"], target["D"]))
    assert loss == pytest.approx(target["task_loss"], rel=0.005)
    acc = float(r.predict(target["N"], target["D"]))
    lo, hi = r.predict_interval(target["N"], target["D"])
    assert abs(acc - target["acc"]) < 0.02 and lo < target["acc"] < hi
    # the Chinchilla form on the same rungs misses by more (its N exponent is not identified), still covered
    nd = fit_downstream(ladder, bootstrap=100, acc_range=(0.25, 1.0), step1="nd", starts=500)
    assert any("decades" in w for w in nd.warnings)
    lo, hi = nd.predict_interval(target["N"], target["D"])
    assert abs(float(nd.predict(target["N"], target["D"])) - target["acc"]) < 0.05 and lo < target["acc"] < hi
