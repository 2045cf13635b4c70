"""Kaplan's architecture studies end to end on the bundled corpus (tiny models): transformers and LSTMs in one
study with an extra evaluation set, and the shape design; the store, export, headlines, `study fit --json` and
the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.report import build_report
from scalinglab.study.runner import run_study
from scalinglab.study.store import Store

FAMILIES = """
name = "families"
[data]
spec = "text:default"
n_ctx = 16
[model]
shapes = [{n_layer = 1, d_model = 16}, {n_layer = 1, d_model = 32}, {n_layer = 2, d_model = 32}]
arch = ["gpt", "lstm"]
head_dim = 16
[tokens]
absolute = [4096]
[batch]
size = 8
[lr]
value = 3e-3
[eval]
sets = ["text:xz-docs"]
[fit]
laws = ["L(N)"]
check = "warn"  # 3 sizes over 0.9 decades: the machinery, not the law
[train]
eval_batches = 2
log_every = 8
"""

SHAPE = """
name = "shape"
design = "shape"
[data]
spec = "text:default"
n_ctx = 16
[model]
n_params = [3000]
head_dim = 8
[shape]
tokens = 4096
n_layers = [1, 2, 4]
[batch]
size = 8
[lr]
value = 3e-3
[fit]
laws = []
[train]
eval_batches = 2
"""


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("SCALINGLAB_THREADS", "1")


def test_two_families_with_a_transfer_set(tmp_path):
    plan = tmp_path / "families.toml"
    plan.write_text(FAMILIES)
    lines: list[str] = []
    out = run_study(plan, tmp_path / "s", echo=lines.append, report=build_report)
    text = "\n".join(lines)
    assert out["runs"]["done"] == 6
    store = Store(tmp_path / "s")
    runs = store.runs_frame()
    arch = runs["config"].map(lambda c: json.loads(c).get("arch", "gpt"))
    assert sorted(arch) == ["gpt"] * 3 + ["lstm"] * 3
    pos = store.position_frame()
    assert len(pos) == 6 * 2 * 16 and set(pos["eval_set"]) == {"val", "text:xz-docs"}
    assert (pos.groupby(["run_id", "eval_set"])["position"].agg(list) == [list(range(1, 17))] * 12).all()
    sets = store.eval_sets_frame().merge(runs[["run_id", "final_val_loss"]], on="run_id")
    val = sets[sets["eval_set"] == "val"]
    assert (val["loss"] - val["final_val_loss"]).abs().max() < 1e-6  # the same tokens as val_loss
    xz = sets[sets["eval_set"] == "text:xz-docs"]
    assert len(xz) == 6 and (xz["bpb"] > 0).all()
    fit = next(f for f in store.fits() if f["law"] == "L(N)")
    assert fit["result"]["n_points"] == 3  # the transformers' L(N); the LSTMs are compared, not mixed in
    for head in ("loss by position (Kaplan Fig. 20)", "  gpt: N=",
                 "LSTM vs transformer (Kaplan Fig. 7) at N =",
                 "transfer (Kaplan Fig. 8), gpt: log(L_other/L_train) =", "on text:xz-docs over 3 runs"):
        assert head in text, head
    assert {"lstm_vs_transformer", "transfer", "position_loss"} <= {
        p.stem for p in (tmp_path / "s" / "report" / "figures").glob("*.png")}
    paths = store.export(tmp_path / "x", "csv")
    assert len(pd.read_csv(tmp_path / "x" / "position_loss.csv")) == len(pos) and len(paths) == 7

    # a set added after the runs finished: evaluated from their checkpoints, nothing retrained
    attempts = runs.set_index("run_id")["attempts"]
    more = 'sets = ["text:xz-docs", "text:default,split=test"]'
    plan.write_text(FAMILIES.replace('sets = ["text:xz-docs"]', more))
    lines.clear()
    run_study(plan, tmp_path / "s", echo=lines.append, report=False)
    assert "evaluated 6 finished run(s) from their checkpoints" in "\n".join(lines)
    assert not any(line.startswith("training") for line in lines)
    store = Store(tmp_path / "s")
    assert (store.runs_frame().set_index("run_id")["attempts"] == attempts).all()
    assert (store.eval_sets_frame()["eval_set"] == "text:default,split=test").sum() == 6

    from scalinglab.cli import app

    res = CliRunner().invoke(app, ["study", "fit", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    arch_json = json.loads(res.stdout[res.stdout.index("{"):])["architecture"]
    assert set(arch_json["transfer"]) == {"text:xz-docs", "text:default,split=test"}
    assert arch_json["families"]["best"]["gap_late"] is not None and len(arch_json["context"]["runs"]) == 6


def test_shape_design_end_to_end(tmp_path):
    plan = tmp_path / "shape.toml"
    plan.write_text(SHAPE)
    lines: list[str] = []
    run_study(plan, tmp_path / "s", echo=lines.append, report=build_report)
    line = next(x for x in lines if x.startswith("shape (Kaplan Fig. 5): d_model / n_layer within 3% of"))
    assert "3 shapes over" in line and "at N = " in line
    assert (tmp_path / "s" / "report" / "figures" / "shape.png").is_file()
