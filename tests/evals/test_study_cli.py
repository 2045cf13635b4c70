"""End to end: tiny real training runs in a study folder, `scalinglab eval`, `study eval`, `export-hf`."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app  # noqa: E402
from scalinglab.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study folder with two finished runs (d_model 16 and 32) trained on GPT-3-format 2D+ text."""
    from scalinglab.study.store import Store
    from scalinglab.train.trainer import train

    root = tmp_path_factory.mktemp("study")
    rng = random.Random(0)
    pairs = [[(rng.randrange(100), rng.randrange(100)) for _ in range(30)] for _ in range(60)]
    docs = ["".join(f"\n\nQ: What is {a} plus {b}?\n\nA: {a + b}" for a, b in doc) for doc in pairs]
    data = root / "arith.txt"
    data.write_text("\n\f\n".join(docs))
    store = Store(root)
    for d in (16, 32):
        cfg = dict(n_layer=1, d_model=d, n_head=2, n_ctx=64, data=f"text:{data}", tokens=64 * 4 * 3,
                   batch_size=4, device="cpu", noise_scale=False, eval_batches=1)
        rid = f"run-d{d}"
        summary = train(cfg, root / "runs" / rid)
        store.add_runs([(rid, cfg, ["grid"], {"params": summary["params"]})])
        store.finish_run(rid, "done", summary)
    store.close()
    return root


def test_eval_run_and_export_agree(study, tmp_path):
    runner = CliRunner()
    run = study / "runs" / "run-d32"
    res = runner.invoke(app, ["eval", str(run), "--task", "arithmetic.2d+", "--preset", "lmeval",
                              "--shots", "0,1", "--limit", "8", "--json"])
    assert res.exit_code == 0, res.output
    ours = json.loads(res.output)["results"]
    assert [r["shots"] for r in ours] == [0, 1] and ours[0]["model"]["backend"] == "scalinglab"
    out = tmp_path / "hf"
    assert runner.invoke(app, ["export-hf", str(run), str(out)]).exit_code == 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    res = runner.invoke(app, ["eval", str(out), "--task", "arithmetic.2d+", "--preset", "lmeval",
                              "--shots", "0,1", "--limit", "8", "--json"])
    theirs = json.loads(res.output)["results"]
    assert [r["acc"] for r in theirs] == [r["acc"] for r in ours] and theirs[0]["model"]["backend"] == "hf"
    from scalinglab.evals.hf import HFLM
    from scalinglab.evals.native import ScalingLabLM

    reqs = [("Q: What is 3 plus 4?\n\nA:", " 7"), ("", "Q: What"), ("abc ", "def")]
    a = HFLM.from_pretrained(out).loglikelihood(reqs)
    b = ScalingLabLM.from_run(run).loglikelihood(reqs)
    assert max(abs(x.logprob - y.logprob) for x, y in zip(a, b, strict=True)) < 1e-4


def test_study_eval_stores_results_and_plots(study):
    from scalinglab.study.store import Store

    args = ["study", "eval", str(study), "--tasks", "arithmetic.2d+,analogy.generated", "--shots", "0,1",
            "--seeds", "2", "--limit", "6", "--contamination", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["records"]) == 2 * 2 * 2
    with Store(study) as s:
        df = s.evals_frame()
    assert len(df) == 8 and set(df["task"]) == {"arithmetic.2d+", "analogy.generated"}
    assert set(df["shots"]) == {0, 1} and df["n_params"].notna().all() and df["n_params"].nunique() == 2
    assert set(df["metric"]) == {"exact_match", "acc_per_token"} and (df["n"] == 6).all()
    assert df["contamination"].between(0, 1).all()
    for f in out["figures"]:
        assert f.endswith(".png") and (study / "report").is_dir()


def test_bad_inputs_are_clear(study, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(tmp_path), "--task", "arithmetic.2d+"])
    assert isinstance(res.exception, InputError) and "not a scalinglab run" in str(res.exception)
    res = runner.invoke(app, ["eval", str(study / "runs" / "run-d16"), "--task", "arithmetic.9d+"])
    assert "unknown task" in str(res.exception)
    res = runner.invoke(app, ["eval", str(study / "runs" / "run-d16"), "--task", "words.ri", "--shots", "a"])
    assert isinstance(res.exception, InputError)
    res = runner.invoke(app, ["eval", str(study / "runs" / "run-d16"), "--task", "words.ri", "--limit", "0"])
    assert "limit=0" in str(res.exception)  # not "every document"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "ckpt.pt").write_bytes(b"\x80\x04 not a checkpoint")
    res = runner.invoke(app, ["eval", str(tmp_path / "junk"), "--task", "arithmetic.2d+"])
    assert isinstance(res.exception, InputError) and "not a readable checkpoint" in str(res.exception)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "gpt2", "n_layer": ')
    res = runner.invoke(app, ["eval", str(tmp_path / "hf"), "--task", "arithmetic.2d+"])
    assert isinstance(res.exception, InputError) and "cannot load the Hugging Face" in str(res.exception)
