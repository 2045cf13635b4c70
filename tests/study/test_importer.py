"""`study import`: runs trained elsewhere (a table, a W&B export) become a study that `study fit` and `report`
work on; the real Epoch Chinchilla table, and W&B run folders generated from a known law."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import ConfigError, InputError
from scalinglab.study import fitting
from scalinglab.study.importer import import_runs
from scalinglab.study.plan import load_plan
from scalinglab.study.store import Store

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def law(n, d):
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def test_epoch_chinchilla_table_imports_and_fits(chinchilla_csv, tmp_path, cli):
    raw = pd.read_csv(chinchilla_csv)
    out = tmp_path / "chin"
    mapping = {"N": "Model Size", "C": "Training FLOP", "loss": "loss"}
    cols = [x for k, v in mapping.items() for x in ("--col", f"{k}={v}")]
    code, text, err = cli("study", "import", chinchilla_csv, "--out", out, *cols, "--laws", "L(N,D)",
                          "--json")
    assert code == 0, err
    res = json.loads(text)
    assert res["runs"] == res["new_runs"] == len(raw) == 245
    plan = load_plan(out / "study.toml")
    with Store(out) as store:
        ids = store.get_meta("plan_runs")
        runs = fitting.finished_runs(store, plan, ids).sort_values("loss")
        got = runs[["N", "D", "loss"]].to_numpy()
        n = raw["Model Size"]
        want = np.column_stack([n, raw["Training FLOP"] / (6 * n), raw["loss"]])
        assert np.allclose(np.sort(got[:, 0]), np.sort(want[:, 0]), rtol=1e-12)
        assert np.allclose(np.sort(got[:, 2]), np.sort(want[:, 2]), rtol=1e-12)
        assert np.allclose(np.sort(got[:, 1]), np.sort(want[:, 1]), rtol=1e-6)  # tokens stored as integers
    assert plan.fit.laws == ["L(N,D)"] and plan.params == "total"
    # importing the same file again adds nothing; `study run` has nothing to train
    again = import_runs(chinchilla_csv, out, columns=mapping)
    assert again.new_runs == 0 and again.runs == 245
    code, _, err = cli("study", "run", out / "study.toml")
    assert code == 2 and "nothing to train" in err


def _wandb_run(root, i, n, d, steps=5, finished=True):
    files = root / "wandb" / f"run-20260101_00000{i}-abc{i}" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_text(
        "_wandb:\n  value:\n    cli_version: 0.17.0\n"
        f"model:\n  desc: null\n  value:\n    n_params: {n}\n"
        f"train_tokens:\n  desc: null\n  value: {int(d)}\n"
        "seed:\n  desc: null\n  value: 0\n"
    )
    (files / "wandb-summary.json").write_text(json.dumps({"val/loss": law(n, d), "_step": steps}))
    hist = [{"_step": k, "val/loss": law(n, d * k / steps)} for k in range(1, steps + 1)]
    (files / "wandb-history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))


def test_wandb_run_folders(tmp_path):
    sizes = np.geomspace(1e7, 1e9, 4)
    i = 0
    for n in sizes:
        for d in (2e9, 8e9):
            _wandb_run(tmp_path / "src", i, n, d)
            i += 1
    cols = {"N": "model.n_params", "D": "train_tokens", "loss": "val/loss"}
    res = import_runs(tmp_path / "src", tmp_path / "study", columns=cols)
    assert res.runs == 8 and res.metrics == 8 * 5 and res.columns["run"] == "run"
    plan = load_plan(tmp_path / "study" / "study.toml")
    assert plan.fit.laws == ["L(N)", "L(D)", "L(N,D)", "L(C_min)"]
    with Store(tmp_path / "study") as store:
        m = store.metrics_frame()
        ids = store.get_meta("plan_runs")
        runs = fitting.finished_runs(store, plan, ids)
        last = m.sort_values("step").groupby("run_id").tail(1).set_index("run_id")
        assert np.allclose(last.loc[runs["run_id"], "tokens"], runs["D"].to_numpy())  # curves end at D
        assert np.allclose(runs["loss"], law(runs["N"], runs["D"]), rtol=1e-12)
        fit_ln = plan.fit.model_copy(update={"laws": ["L(N)"], "l_n_form": "power+const"})
        only_ln = plan.model_copy(update={"fit": fit_ln})
        fits = {f["law"]: f["result"] for f in fitting.fit_study(store, only_ln, ids, print)}
    ln = fits["L(N)"]  # study fit works on the imported runs: L(N) at the budget every size has
    assert ln["converged"] and ln["n_points"] == 4 and ln["r2_log"] > 0.999
    assert ln["params"]["alpha"] == pytest.approx(TRUE["alpha"], rel=0.01)


def test_curve_table_and_wandb_csv_and_evals(tmp_path):
    rows = []
    for n in (1e7, 3e7, 1e8, 3e8):
        for k in range(1, 6):
            d = 20 * n * k / 5
            rows.append({"name": f"n{n:g}", "_step": k, "params": n, "tokens": d, "val_loss": law(n, d),
                         "acc": 1 / (1 + np.exp(4 * (law(n, d) - 2.6))) if k == 5 else None})
    pd.DataFrame(rows).to_json(tmp_path / "curves.jsonl", orient="records", lines=True)
    res = import_runs(tmp_path / "curves.jsonl", tmp_path / "a", evals={"toy@0": "acc"})
    assert res.runs == 4 and res.metrics == 20 and res.evals == 4
    assert res.columns == {"N": "params", "D": "tokens", "loss": "val_loss", "run": "name", "step": "_step"}
    with Store(tmp_path / "a") as store:
        ev = store.evals_frame()
        runs = store.runs_frame().set_index("run_id")
    assert set(ev["task"]) == {"toy"} and set(ev["shots"]) == {0}
    assert np.allclose(ev["value"], 1 / (1 + np.exp(4 * (runs.loc[ev["run_id"], "final_val_loss"] - 2.6))))
    assert "downstream" in load_plan(tmp_path / "a" / "study.toml").fit.laws
    ui = pd.DataFrame({"Name": ["a", "b", "c"], "State": ["finished", "crashed", "finished"],
                       "params": [1e7, 2e7, 4e7], "tokens": [2e8, 4e8, 8e8], "loss": [3.1, 3.0, 2.9]})
    ui.to_csv(tmp_path / "wandb_export.csv", index=False)
    res = import_runs(tmp_path / "wandb_export.csv", tmp_path / "b")
    assert res.runs == 2 and any("not 'finished'" in s for s in res.skipped)


def test_import_errors(tmp_path):
    df = pd.DataFrame({"size": [1e7, 2e7], "tokens": [1e8, 2e8], "loss": [3.0, 2.9]})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="parameter-count column"):
        import_runs(tmp_path / "t.csv", tmp_path / "s")
    with pytest.raises(InputError, match="no such column"):
        import_runs(tmp_path / "t.csv", tmp_path / "s", columns={"N": "nope"})
    with pytest.raises(InputError, match="variables are"):
        import_runs(tmp_path / "t.csv", tmp_path / "s", columns={"X": "size"})
    with pytest.raises(InputError, match="--params"):
        import_runs(tmp_path / "t.csv", tmp_path / "s", columns={"N": "size"}, params="weird")
    trained = Store(tmp_path / "trained")
    trained.add_runs([("r1", {"n_layer": 1}, ["grid"], {})])
    trained.close()
    with pytest.raises(InputError, match="trained by scalinglab"):
        import_runs(tmp_path / "t.csv", tmp_path / "trained", columns={"N": "size"})
    with pytest.raises(ConfigError):
        from scalinglab.study.runner import refuse_imported

        import_runs(tmp_path / "t.csv", tmp_path / "ok", columns={"N": "size"})
        refuse_imported(tmp_path / "ok")
