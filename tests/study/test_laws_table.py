"""The table of study laws (scalinglab.study.laws) is the one place a law is declared: the plan's allowed
names, the fitting dispatch and order, and the plan-time identifiability checks all come from it."""

from __future__ import annotations

import dataclasses

import pytest

from scalinglab.errors import ConfigError
from scalinglab.study import design, fitting
from scalinglab.study import laws as study_laws
from scalinglab.study.plan import LAWS, make_runs, parse_plan, run_id
from scalinglab.study.store import Store


def test_the_plan_allows_exactly_the_table():
    assert LAWS == study_laws.NAMES
    assert set(study_laws.LAWS) == set(LAWS) | {study_laws.ANSWER}
    for name in LAWS:  # every law a plan can name is checked before training and fitted through its row
        row = study_laws.LAWS[name]
        assert row.check is not None and (row.fit is not None or (row.table and row.form))
    with pytest.raises(ConfigError, match="unknown laws"):
        parse_plan({"fit": {"laws": ["L(X)"]}})


def test_fit_order_puts_each_law_after_what_it_reads():
    order = study_laws.fit_order(["repeat", "L(C_min)", "L(N)", "L(N,D)", "B_crit(L)"])
    assert order.index("L(N,D)") < order.index("repeat")  # repeat holds L(N,D) at the study's fit
    assert order.index("B_crit(L)") < order.index("L(C_min)")  # C_min = C / (1 + B / B_crit)
    assert order[-1] == study_laws.ANSWER  # the answer reads the three approaches and the floors of L(N)
    assert study_laws.fit_order(["L(N)", "L(D)"]) == ["L(N)", "L(D)"]  # no approach: no answer
    assert study_laws.fit_order(["isoflop"]) == ["isoflop", study_laws.ANSWER]


def test_design_and_fitting_dispatch_through_the_row(tmp_path, monkeypatch):
    """Change one row and both the plan-time check and the fit follow it: nothing else lists the laws."""
    plan = parse_plan({"model": {"n_params": [1e4, 1e5, 1e6]}, "tokens": {"absolute": [1e6]},
                       "fit": {"laws": ["L(N)"]}})
    runs = make_runs(plan, 256)
    assert design.check(plan, runs, 256)[0].identified
    row = study_laws.LAWS["L(N)"]

    def refuse(pts, plan):
        return study_laws.LawCheck("L(N)", len(pts), {}, False, "the stub says no")

    monkeypatch.setitem(study_laws.LAWS, "L(N)", dataclasses.replace(row, check=refuse))
    with pytest.raises(ConfigError, match="the stub says no"):
        design.check(plan, runs, 256)
    seen = []

    def prepare(ctx):
        seen.append(len(ctx.runs))
        return None  # too few runs

    monkeypatch.setitem(study_laws.LAWS, "L(N)", dataclasses.replace(row, fit=prepare))
    store = Store(tmp_path)
    ids = []
    for n in (1e7, 1e8, 1e9):
        cfg = {"n": n, "tokens": 10**9, "seed": 0, "batch_size": 8, "n_ctx": 128, "n_layer": 1, "d_model": 8}
        ids.append(run_id(cfg))
        counts = {"params": {"kaplan": n}, "flops_per_token": {"6n": 6 * n}}
        store.add_runs([(ids[-1], cfg, ["L(N)"], counts)])
        store.finish_run(ids[-1], "done", {"final_val_loss": 3.0 - 0.1 * len(ids), "steps": 5, "wall_s": 1.0})
    lines = []
    assert fitting.fit_study(store, plan, ids, lines.append) == []
    assert seen == [3] and lines == ["fit L(N): skipped (too few finished runs for it)"]
