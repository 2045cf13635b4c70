"""The `repeat` and `downstream` study laws on a store filled from known laws, and the [repeat] design."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.cli.study import print_summary
from scalinglab.laws.downstream import sigmoid
from scalinglab.laws.repeat import MUENNIGHOFF2023, repeat_loss
from scalinglab.study import fitting
from scalinglab.study.plan import make_runs, parse_plan, run_id
from scalinglab.study.store import Store

BASE = {k: MUENNIGHOFF2023[k] for k in ("E", "A", "B", "alpha", "beta")}
RD_TRUE = 5.0
S2 = {"lo": 0.0, "hi": 1.0, "k": 4.0, "L0": 2.4}


def _add(store, n, d, roles, u=None, seed=0):
    cfg = {"n": n, "tokens": int(d), "seed": seed, "batch_size": 8, "n_ctx": 128, "n_layer": 1, "d_model": 8}
    if u is not None:
        cfg["unique_tokens"] = int(u)
    rid = run_id(cfg)
    store.add_runs([(rid, cfg, roles, {"params": {"kaplan": n}, "flops_per_token": {"6n": 6 * n}})])
    loss = float(repeat_loss(n, d, u or d, BASE, rd_star=RD_TRUE, rn_star=None))
    loss *= 1 + 0.001 * np.sin(1e3 * np.log(n * d))  # +-0.1 %
    store.add_metrics(rid, [{"step": 1, "tokens": d, "val_loss": loss, "train_loss": loss}])
    store.finish_run(rid, "done", {"final_val_loss": loss, "steps": 1, "wall_s": 1.0})
    return rid, loss


@pytest.fixture
def study(tmp_path):
    store = Store(tmp_path)
    ids = []
    for n in np.geomspace(1e7, 1e9, 5):  # unique-data grid for L(N, D)
        for m in (10, 40):
            ids.append(_add(store, n, m * n, ["grid"])[0])
    for n in (3e7, 1e8, 3e8):  # 1..32 epochs over 2e8 unique tokens
        for e in (1, 2, 4, 8, 16, 32):
            ids.append(_add(store, n, e * 2e8, ["repeat:200000000"], u=2e8)[0])
    return store, ids


def test_repeat_law_recovers_its_decay_constant(study):
    store, ids = study
    plan = parse_plan(
        {"model": {"n_params": [1e7]}, "tokens": {"absolute": [1e9]}, "fit": {"laws": ["repeat"]}}
    )
    points = fitting.seed_mean(fitting.finished_runs(store, plan, ids))
    assert len(fitting.table_l_nd(points)) == 10  # the repeated runs stay out of L(N, D)
    lines: list[str] = []
    fits = {f["law"]: f for f in fitting.fit_study(store, plan, ids, lines.append)}
    assert set(fits) == {"repeat"}, lines
    rep = fits["repeat"]["result"]
    assert rep["notes"] == ["E, A, B, alpha, beta held at an L(N,D) fit of the unique-data runs"]
    assert rep["converged"] and rep["params"]["rd_star"] == pytest.approx(RD_TRUE, rel=0.15)
    lo, hi = rep["ci95"]["rd_star"]
    assert lo < rep["params"]["rd_star"] < hi
    bt = fits["repeat"]["backtest"]
    assert bt["by"] == "epochs" and abs(bt["rel_error"]) < 0.02  # the 32-epoch runs predicted from the rest
    rows = {r["law"]: r for r in fitting.fit_rows(list(fits.values()))}
    assert rows["repeat"]["params"]["rd_star"] == rep["params"]["rd_star"]
    # a refit on the same table is read from the store
    again = fitting.fit_study(store, plan, ids, lines.append)
    assert next(f for f in again if f["law"] == "repeat")["created_at"] == fits["repeat"]["created_at"]


def test_downstream_law_from_stored_evaluations(study):
    store, ids = study
    runs = store.runs_frame()
    for rid in runs["run_id"]:
        if store.run(rid)["config"].get("unique_tokens"):
            continue
        tl = 1.2 * float(store.run(rid)["final_val_loss"])  # a task loss that tracks the LM loss
        acc = float(sigmoid(tl, **S2))
        store.add_eval(
            rid,
            {
                "task": "arithmetic.2d+",
                "shots": 0,
                "metric": "exact_match",
                "value": acc,
                "n": 500,
                "task_loss": tl,
                "acc": acc,
            },
        )
    plan = parse_plan(
        {
            "model": {"n_params": [1e7]},
            "tokens": {"absolute": [1e9]},
            "fit": {"laws": ["downstream"]},
            "downstream": {"tasks": ["arithmetic.2d+"]},
        }
    )
    lines: list[str] = []
    fits = {f["law"]: f for f in fitting.fit_study(store, plan, ids, lines.append)}
    assert "downstream" in fits, lines
    res = fits["downstream"]["result"]
    (task,) = res["tasks"]
    assert task["task"] == "arithmetic.2d+" and task["shots"] == 0 and task["x"] == "task_loss"
    t = task["target"]
    # without an L(N,D) fit the target is the largest run scaled by sqrt(10) in N and D; truth: the known laws
    truth = float(
        sigmoid(1.2 * float(repeat_loss(t["N"], t["D"], t["D"], BASE, rd_star=1.0, rn_star=None)), **S2)
    )
    assert abs(t["acc"] - truth) < 0.03 and t["low"] <= truth <= t["high"]
    assert task["backtest"] is not None and "error" not in task["backtest"], task["backtest"]
    assert abs(fits["downstream"]["backtest"]["abs_error"]) < 0.05
    out: list[str] = []
    print_summary(list(fits.values()), out.append)
    assert any("downstream" in x and "arithmetic.2d+@K0:acc" in x for x in out)


def test_repeat_design_plans_epochs_over_a_subset():
    plan = parse_plan(
        {
            "model": {"shapes": [{"n_layer": 1, "d_model": 16}, {"n_layer": 2, "d_model": 32}]},
            "data": {"n_ctx": 32},
            "repeat": {"unique_tokens": [3e4], "epochs": [1, 4], "sizes": "largest"},
            "fit": {"laws": ["repeat"]},
        }
    )
    runs = make_runs(plan, vocab_size=256)
    rep = [r for r in runs if "repeat:30000" in r.roles]
    assert len(rep) == 2 and len(runs) == 2  # the largest size only; the plan trains nothing else
    assert sorted(r.config["tokens"] for r in rep) == [30000, 120000]
    assert {r.config["unique_tokens"] for r in rep} == {30000} and {r.config["d_model"] for r in rep} == {32}
