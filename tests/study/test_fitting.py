"""After the runs, on a store filled from a known law (Hoffmann et al. 2022's L(N, D)): the three approaches
recover N_opt ~ C^(beta/(alpha+beta)), fits are stored with their back-tests, unchanged data is not re-fitted,
and diverged runs are left out."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.cli.study import print_summary
from scalinglab.study import fitting
from scalinglab.study.plan import parse_plan, run_id
from scalinglab.study.store import Store

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
A_TRUE = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])  # 0.4516


def law(n, d):
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def _add(store: Store, n: float, d: float, roles: list[str], status: str = "done", seed: int = 0) -> str:
    cfg = {"n": n, "tokens": int(d), "seed": seed, "batch_size": 8, "n_ctx": 128, "n_layer": 1, "d_model": 8}
    rid = run_id(cfg)
    steps = 20
    store.add_runs([(rid, cfg, roles, {"params": {"kaplan": n}, "flops_per_token": {"6n": 6 * n}})])
    rows = []
    for k in range(1, steps + 1):  # a learning curve: the law at the tokens seen so far
        t = d * k / steps
        loss = law(n, t)
        rows.append({"step": k, "tokens": t, "flops_6n": 6 * n * t, "val_loss": loss, "train_loss": loss})
    store.add_metrics(rid, rows)
    noise = 1 + 0.001 * np.sin(1e3 * np.log(n * d))  # +-0.1 %: measured losses are never exact
    loss = float("nan") if status == "diverged" else law(n, d) * noise
    store.finish_run(rid, status, {"final_val_loss": loss, "steps": steps, "wall_s": 1.0})
    return rid


@pytest.fixture
def study(tmp_path):
    store = Store(tmp_path)
    ids = []
    for c in (1e18, 1e19, 1e20):  # isoFLOP sets around the optimum
        n_opt = 0.6 * (c / 6) ** A_TRUE  # near Chinchilla's G (C/6)^a
        for f in np.geomspace(1 / 6, 6, 7):
            n = n_opt * f
            ids.append(_add(store, n, c / (6 * n), [f"isoflop:{c:.3g}"]))
    for n in np.geomspace(1e7, 1e9, 5):  # a Kaplan L(N) set at one large D
        ids.append(_add(store, n, 3e10, ["L(N)"]))
    ids.append(_add(store, 5e7, 3e10, ["L(N)"], status="diverged", seed=9))
    plan = parse_plan({"model": {"n_params": [1e7]}, "tokens": {"absolute": [1e9]},
                       "fit": {"laws": ["L(N)", "isoflop", "L(N,D)", "L(C_min)"], "l_n_form": "power+const",
                               "bootstrap": 50}})
    return store, plan, ids


def test_three_approaches_recover_the_exponent(study):
    store, plan, ids = study
    lines: list[str] = []
    fits = fitting.fit_study(store, plan, ids, lines.append)
    assert {f["law"] for f in fits} == {"L(N)", "isoflop", "L(N,D)", "L(C_min)", "compute-optimal"}, lines
    ex = fitting.nopt_exponents(fits)
    assert ex["approach3_parametric"] == pytest.approx(A_TRUE, abs=0.01)
    assert ex["approach2_isoflop"] == pytest.approx(A_TRUE, abs=0.03)
    assert 0.2 < ex["approach1_envelope"] < 0.8  # the envelope of a 24-run grid: the right ballpark only
    rows = {r["law"]: r for r in fitting.fit_rows(fits)}
    ln = rows["L(N)"]
    assert ln["converged"] and ln["r2_log"] > 0.99
    assert abs(ln["backtest"]["rel_error"]) < 0.01 and ln["backtest"]["covered"] in (True, False)
    nd = next(f for f in fits if f["law"] == "L(N,D)")["result"]
    assert nd["params"]["alpha"] == pytest.approx(TRUE["alpha"], rel=0.02)
    assert next(f for f in fits if f["law"] == "L(N)")["result"]["n_points"] == 5  # the diverged run is out
    a = fitting.allocation(store, plan, ids, fits)
    c = a["C"]
    assert a["N_opt"] * a["D_opt"] * 6 == pytest.approx(c, rel=1e-6)
    assert c == pytest.approx(10 * 6 * 1e9 * 3e10)  # 10x the largest run
    # every number acted on has an interval that holds the true optimum of the law the runs follow
    assert a["refused"] is None and a["from"] == "3", a
    n_true = (TRUE["alpha"] * TRUE["A"] / (TRUE["beta"] * TRUE["B"])) ** (1 / (TRUE["alpha"] + TRUE["beta"]))
    n_true *= (c / 6) ** A_TRUE
    assert a["N_opt_ci"][0] < n_true < a["N_opt_ci"][1] and a["N_opt_ci"][1] / a["N_opt_ci"][0] < 1.5
    assert a["loss_ci"][0] < law(n_true, c / (6 * n_true)) < a["loss_ci"][1]
    ans = fitting.answer(fits)
    assert ans["overlap"] is not None and set(ans["approaches"]) == {"1", "2", "3"}
    bt = ans["approaches"]["3"]["backtest"]  # every run of the largest budget held out, the law refitted
    assert bt["C"] == pytest.approx(1e20) and bt["n_runs"] == 7 and abs(bt["loss_rel_error"]) < 0.01
    out: list[str] = []
    print_summary(fits, out.append)
    assert any("Approach 1" in x for x in out) and any("Approach 2 (isoFLOP)" in x for x in out)
    assert any(x.startswith("allocation at C = ") for x in out) and any("overlap" in x for x in out)


def test_unchanged_data_is_not_refitted(study, monkeypatch):
    store, plan, ids = study
    plan.fit.laws = ["L(N)"]
    first = fitting.fit_study(store, plan, ids, print)[0]
    import scalinglab.laws.fit as lf

    def boom(*a, **k):
        raise AssertionError("re-fitted unchanged data")

    monkeypatch.setattr(lf, "fit", boom)
    again = fitting.fit_study(store, plan, ids, print)[0]
    assert again["created_at"] == first["created_at"]
    _add(store, 5e8, 3e10, ["L(N)"])  # new data: the fit is redone (and here it fails loudly, reported)
    lines: list[str] = []
    fitting.fit_study(store, plan, ids + [store.run_ids()[-1]], lines.append)
    assert any("re-fitted unchanged data" in x for x in lines)
    # ... and the fit stored before is gone: it described other data and must not be shown as current
    assert store.fits() == [] and any("earlier fit removed" in x for x in lines)


def test_a_stored_fit_is_dropped_when_its_law_can_no_longer_be_fitted(study):
    store, plan, ids = study
    plan.fit.laws = ["L(N)"]
    assert [f["law"] for f in fitting.fit_study(store, plan, ids, print)] == ["L(N)"]
    lines: list[str] = []
    assert fitting.fit_study(store, plan, [], lines.append) == []  # e.g. a new plan with no finished run yet
    assert store.fits() == []
    assert lines == ["fit L(N): skipped (too few finished runs for it) (its earlier fit removed)"]


def test_irreducible_floors_are_the_lower_ends_of_their_intervals(study):
    """A floor is what no loss may go below: the lower 95 % bound of E (L(N,D)) or L_inf, never more than the
    estimate; L(N)'s applies only to runs with no more data than its own."""
    store, plan, ids = study
    fits = {f["law"]: f for f in fitting.fit_study(store, plan, ids, print)}
    points = fitting.seed_mean(fitting.finished_runs(store, plan, ids))
    fl = {f.source: f for f in fitting.floors(fits, points)}
    assert set(fl) >= {"E of L(N,D)", "L_inf of L(N)"}, fl
    for source, f in fl.items():
        key, law = source.split(" of ")
        r = fits[law]["result"]
        assert f.low == r["ci95"][key][0] and f.low <= r["params"][key], (source, f.low, r["params"][key])
    assert fl["L_inf of L(N)"].max_D == pytest.approx(3e10)


def test_l_n_table_without_l_n_runs_is_the_grid_budget_covering_most_sizes():
    import pandas as pd

    def pts(rows):
        return pd.DataFrame([{"N": n, "D": d, "loss": 3.0, "roles": {"grid"}} for n, d in rows])

    sizes = (1e5, 1e6, 1e7, 1e8)
    both = pts([(n, d) for d in (1e8, 1e9) for n in sizes])  # a tie in coverage: the larger budget
    assert set(fitting.table_l_n(both)["D"]) == {1e9}
    fewer = pts([(n, 1e8) for n in sizes] + [(n, 1e9) for n in sizes[:3]])  # more sizes win over more D
    assert set(fitting.table_l_n(fewer)["D"]) == {1e8} and len(fitting.table_l_n(fewer)) == 4
