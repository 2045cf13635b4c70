"""The report's data layer on a synthetic study with a known law: normalisation, frontier, isoFLOP sets,
the batch sweep's B_crit, and the adapter from the real study store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import InputError
from scalinglab.report import derive
from scalinglab.report.data import StudyData, load_study
from scalinglab.report.synthetic import BUDGETS, synthetic_study, write_store


def test_envelope_is_the_true_compute_frontier(study, study_data):
    """Learning curves follow L(N, t) exactly (up to 0.4% noise), so their envelope must sit on the law's
    frontier min over the trained N of L(N, C / 6N), and never far below it."""
    env = derive.envelope(derive.curves(study_data))
    assert len(env) >= 20
    ns = study.runs.loc[study.runs["batch_size_tokens"] == study.law.b_ref, "params_kaplan"].unique()
    c = env["C"].to_numpy()[:, None]
    # each run only reaches C up to its own budget; the frontier can only use runs that got there
    cmax = study.runs.groupby("params_kaplan")["flops_6n"].max().reindex(ns).to_numpy()[None, :]
    true = np.where(c <= cmax * 1.0001, study.law.loss(ns[None, :], c / (6 * ns[None, :])), np.inf).min(
        axis=1
    )
    rel = env["loss"].to_numpy() / true - 1
    assert np.all(rel > -0.02) and np.median(np.abs(rel)) < 0.01, rel


def test_isoflop_sets_found(study_data):
    sets = derive.isoflop_sets(derive.final_points(study_data))
    budgets = np.sort(sets["budget"].unique())
    assert len(budgets) == len(BUDGETS)
    np.testing.assert_allclose(budgets, BUDGETS, rtol=0.03)
    assert sets.groupby("budget")["N"].nunique().min() >= 5


def test_batch_sweep_recovers_b_crit(study, study_data):
    pts = derive.final_points(study_data)
    sweep = derive.batch_sweeps(pts)
    assert sorted(sweep["B"]) == [4096, 8192, 32768, 131072, 524288]
    fits = derive.sweep_fits(derive.steps_to_targets(derive.curves(study_data), sweep))
    assert len(fits) >= 3
    np.testing.assert_allclose(fits["B_crit"], study.law.b_crit_sweep, rtol=0.15)


def test_noise_and_eval_points(study, study_data):
    from scalinglab.laws.batch import past_warmup

    nz = derive.noise_points(study_data)
    m = study.metrics
    warm = past_warmup(m["step"], m.groupby("run_id")["step"].transform("max"))  # the study's one rule
    assert 0 < len(nz) == (m["gns_b_simple_tokens"].notna() & warm).sum() < len(m)
    # log B_simple vs log L has the generating slope -1/alpha_B (noise is log-normal, so OLS is unbiased)
    slope = np.polyfit(np.log(nz["loss"]), np.log(nz["B_simple"]), 1)[0]
    assert slope == pytest.approx(-1 / study.law.alpha_b, rel=0.1)
    ev = derive.eval_points(study_data)
    assert set(ev["shots"]) == {0, 1, 10} and (ev["n_seeds"] == 2).all()


def test_eval_points_keep_scorers_apart_and_a_rerun_is_not_extra_seeds(study, study_data):
    """Two scorers on one (run, task, K), and one of them evaluated twice: two series of 3 seeds each, the
    re-run's values replacing the first run's (not averaged in as 3 more seeds)."""
    rid = study_data.runs["run_id"].iloc[0]
    rows = []
    for scorer, accs in (("acc", [0.1, 0.1, 0.1]), ("acc_norm", [0.8, 0.8, 0.8]), ("acc", [0.2, 0.22, 0.24])):
        rows.append({"run_id": rid, "task": "t", "shots": 1, "scorer": scorer, "preset": "gpt3",
                     "value": sum(accs) / 3, "acc_per_seed": accs, "seeds": [0, 1, 2], "acc_se": 0.02})
    d = StudyData.from_frames(study.runs, study.metrics, evals=pd.DataFrame(rows))
    ev = derive.eval_points(d).set_index("scorer")
    assert list(ev["n_seeds"]) == [3, 3]
    assert ev.loc["acc", "acc"] == pytest.approx(0.22) and ev.loc["acc_norm", "acc"] == pytest.approx(0.8)
    assert set(ev["series"]) == {"t [acc, gpt3]", "t [acc_norm, gpt3]"}


def test_normalise_accepts_store_and_trainer_names(study):
    runs = study.runs.rename(columns={"params_kaplan": "n_kaplan", "params_total": "n_total"})
    a = StudyData.from_frames(runs, study.metrics)
    b = StudyData.from_frames(study.runs, study.metrics)
    pd.testing.assert_frame_equal(a.runs, b.runs)
    t = StudyData.from_frames(study.runs, study.metrics, param_count="total")
    assert (derive.final_points(t)["N"] == study.runs["params_total"]).all()


def test_bad_input_names_the_problem(study):
    with pytest.raises(InputError, match="run_id"):
        StudyData.from_frames(study.runs.drop(columns="run_id"))
    with pytest.raises(InputError, match="parameter count"):
        StudyData.from_frames(study.runs.drop(columns=["params_kaplan", "params_total"]))
    with pytest.raises(InputError, match="appears more than once"):
        StudyData.from_frames(pd.concat([study.runs.head(2), study.runs.head(1)]))
    with pytest.raises(InputError, match="'step'"):
        StudyData.from_frames(study.runs, study.metrics.drop(columns="step"))
    with pytest.raises(InputError, match="not a study folder"):
        load_study(__import__("pathlib").Path("/nonexistent-study"))


def test_failed_runs_are_left_out(study):
    runs = study.runs.copy()
    runs.loc[3, "status"] = "diverged"
    runs.loc[4, "status"] = "pending"
    runs.loc[5, "final_val_loss"] = np.inf  # a frame from elsewhere (the store turns inf into NULL)
    d = StudyData.from_frames(runs, study.metrics)
    pts = derive.final_points(d)
    assert len(pts) == len(runs) - 3 and runs.loc[3, "run_id"] not in set(pts["run_id"])
    assert np.isfinite(pts["loss"]).all()


def test_load_from_the_study_store(tmp_path):
    s = synthetic_study(12, seed=1, points_per_run=20)
    write_store(s, tmp_path)
    d = load_study(tmp_path)
    assert d.name == tmp_path.name and len(d.runs) == 12
    np.testing.assert_allclose(d.runs["n_kaplan"], s.runs["params_kaplan"])
    np.testing.assert_allclose(d.runs["loss"], s.runs["final_val_loss"])
    np.testing.assert_allclose(d.runs["batch_tokens"], s.runs["batch_size_tokens"])
    assert len(d.metrics) == len(s.metrics)
    assert len(d.evals) == len(s.evals)
    np.testing.assert_allclose(np.sort(d.evals["accuracy"]), np.sort(s.evals["accuracy"]))


def test_store_with_a_failed_and_a_pending_run_loads(tmp_path):
    """The runner stores no summary (NULL) for a failed or not yet finished run: the report leaves them out
    instead of failing on the missing summary."""
    from scalinglab.study.store import Store

    s = synthetic_study(12, seed=1, points_per_run=8)
    write_store(s, tmp_path)
    with Store(tmp_path) as st:
        ids = st.run_ids()
        st.finish_run(ids[0], "failed", None, error="RuntimeError: boom")
        counts = {"params": {"kaplan": 1000, "total": 2000}, "flops_per_token": {"6n": 6000}}
        st.add_runs([("pending0", {"n_layer": 1, "tokens": 4096}, ["grid"], counts)])
    d = load_study(tmp_path)
    pts = derive.final_points(d)
    assert ids[0] not in set(pts["run_id"]) and "pending0" not in set(pts["run_id"]) and len(pts) == 11


def test_evals_module_records_expand_per_seed(study):
    """Rows as `scalinglab eval` stores them (EvalResult dicts: one row per K with acc_per_seed) become one
    row per seed; with a single seed the error bar is the binomial error over documents."""
    rid = study.runs["run_id"].iloc[0]
    rows = pd.DataFrame(
        [
            dict(
                run_id=rid,
                task="arith",
                shots=0,
                metric="exact_match",
                value=0.5,
                seeds=[0, 1],
                acc_per_seed=[0.4, 0.6],
                acc_se=0.05,
            ),
            dict(
                run_id=rid,
                task="arith",
                shots=1,
                metric="exact_match",
                value=0.7,
                seeds=[3],
                acc_per_seed=[0.7],
                acc_se=0.04,
            ),
        ]
    )
    d = StudyData.from_frames(study.runs, study.metrics, evals=rows)
    assert sorted(d.evals["seed"]) == [0, 1, 3]
    ev = derive.eval_points(d).set_index("shots")
    assert ev.loc[0, "acc"] == pytest.approx(0.5) and ev.loc[0, "sem"] == pytest.approx(
        0.1
    )  # sd 0.1414/sqrt 2
    assert ev.loc[1, "acc"] == pytest.approx(0.7) and ev.loc[1, "sem"] == pytest.approx(0.04)
