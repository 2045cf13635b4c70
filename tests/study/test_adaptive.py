"""study suggest and study run --adaptive on a real (tiny) study: suggested runs are planned runs of the
study's shapes, trained, kept across a resume, and never trained twice."""

from __future__ import annotations

import json
import sys

from scalinglab.study.runner import run_study
from scalinglab.study.store import Store

PLAN = """
name = "adapt"
[data]
spec = "text:default"
n_ctx = 16
[model]
shapes = [{n_layer = 1, d_model = 8}, {n_layer = 1, d_model = 16}, {n_layer = 1, d_model = 32}]
head_dim = 8
[tokens]
absolute = [2048, 4096, 8192]
[batch]
size = 8
[lr]
value = 3e-3
[fit]
laws = ["L(N,D)"]
bootstrap = 30
check = "warn"
[train]
eval_batches = 2
log_every = 4
noise_scale = false
"""


def test_adaptive_rounds_train_suggested_runs_once_and_survive_a_resume(tmp_path, capsys, monkeypatch):
    toml = tmp_path / "adapt.toml"
    toml.write_text(PLAN)
    out = tmp_path / "study"
    lines: list[str] = []
    run_study(toml, out, echo=lines.append, report=False, adaptive=1, adaptive_runs=2)
    store = Store(out)
    runs = store.runs_frame()
    adaptive = runs[runs["roles"].map(lambda r: "adaptive" in json.loads(r))]
    assert len(adaptive) == 2 and set(adaptive["status"]) == {"done"}, lines
    assert store.get_meta("adaptive_rounds") == 1 and len(store.get_meta("adaptive_runs")) == 2
    assert any(x.startswith("adaptive round 1: target: N_opt at C = ") for x in lines)
    # the adaptive runs are of the plan's shapes and within 3x the largest planned run's FLOPs
    planned = runs[~runs["run_id"].isin(adaptive["run_id"])]
    assert set(adaptive["d_model"]) <= {8, 16, 32}
    c = 6 * runs["n_kaplan"] * runs["tokens"]
    assert (c[adaptive.index] <= 3 * c[planned.index].max() * 1.01).all()
    # resumed: the round is done, nothing new is trained and the adaptive runs stay in the study
    again: list[str] = []
    run_study(toml, out, echo=again.append, report=False, adaptive=1, adaptive_runs=2)
    assert len(store.runs_frame()) == len(runs) and not any("adaptive round" in x for x in again)
    assert set(store.get_meta("plan_runs")) >= set(adaptive["run_id"])

    from scalinglab.cli._app import main

    monkeypatch.setattr(sys, "argv", ["scalinglab", "study", "suggest", str(out), "--target", "C=1e12",
                                      "--runs", "2", "--json"])
    try:
        main()
    except SystemExit as e:  # a clean exit is fine; an error is not
        assert e.code in (0, None)
    d = json.loads(capsys.readouterr().out)
    assert len(d["runs"]) == 2 and all(r["est_s"] > 0 and r["d_model"] in (8, 16, 32) for r in d["runs"])
    assert d["sd_log_now"] >= d["runs"][-1]["sd_after"] > 0
