"""The trainer on the LSTM family (exact resume, noise scale, CLI) and the final validation's extras (loss by
position, extra evaluation sets) on the real bundled corpora."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.model.lstm import LSTMLM
from scalinglab.train.checkpoint import load_checkpoint, load_model
from scalinglab.train.trainer import train

from .conftest import tiny
from .test_trainer import rows, same_weights


def lstm_cfg(data: str, **kw) -> dict:
    cfg = tiny(data, arch="lstm", noise_scale_every=2, **kw)
    cfg.pop("n_head")
    return cfg


def test_lstm_exact_resume_and_noise_scale(text_data, tmp_path):
    cfg = lstm_cfg(text_data)
    s0 = train(cfg, tmp_path / "straight")
    assert s0["status"] == "done" and s0["params"]["kaplan"] == 8 * 2 * 32 * 32
    stopped = tmp_path / "stopped"
    assert train(cfg, stopped, should_stop=lambda step: step == 4)["status"] == "stopped"
    train(cfg, stopped)
    ref, got = rows(tmp_path / "straight"), rows(stopped)
    assert [r["step"] for r in got] == list(range(1, 9))
    for a, b in zip(ref, got, strict=True):
        for k in ("train_loss", "val_loss", "grad_norm", "gns_g2", "gns_trace", "gns_b_simple_tokens"):
            assert a[k] == b[k], (k, a["step"])  # bit-identical
    assert same_weights(load_checkpoint(tmp_path / "straight")["model"], load_checkpoint(stopped)["model"])
    measured = [r["gns_b_simple_tokens"] for r in ref if r["gns_b_simple_tokens"] is not None]
    assert len(measured) == 4 and all(b > 0 and math.isfinite(b) for b in measured)  # steps 0, 2, 4, 6
    model, meta = load_model(stopped)
    assert isinstance(model, LSTMLM) and meta["model"]["arch"] == "lstm"


def test_final_validation_by_position_and_extra_sets(text_data, tmp_path):
    sets = ["text:xz-docs", "text:default,split=test"]
    s = train(tiny(text_data, eval_sets=sets, eval_batches=3), tmp_path / "run")
    loss, n = np.array(s["val_loss_by_position"]), np.array(s["val_tokens_by_position"])
    # 3 batches of 8 windows spread over the split; the split's last window counts only its tail targets
    assert len(loss) == len(n) == 32 and n.max() == 3 * 8 and n.min() >= 3 * 8 - 1
    assert (loss * n).sum() / n.sum() == pytest.approx(s["final_val_loss"], rel=1e-6)  # the same tokens
    for name in sets:
        r = s["eval_sets"][name]
        assert r["tokens"] == sum(r["tokens_by_position"]) > 3 * 7 * 32 and len(r["loss_by_position"]) == 32
        assert r["bpb"] == pytest.approx(r["loss"] / math.log(2))  # byte-level: one byte per token
    assert s["eval_sets"]["text:xz-docs"]["set_tokens"] == 84_938  # the whole bundled transfer corpus
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["eval_sets"] == s["eval_sets"]
    # the same numbers again from the checkpoint (what a study does for sets added after a run finished)
    from scalinglab.train.evaluate import evaluate_run

    again = evaluate_run(tmp_path / "run", ["text:xz-docs"])
    assert again["val_loss_by_position"] == pytest.approx(s["val_loss_by_position"], rel=1e-5)
    assert again["eval_sets"]["text:xz-docs"]["loss"] == pytest.approx(s["eval_sets"]["text:xz-docs"]["loss"],
                                                                       rel=1e-5)


def test_cli_trains_an_lstm(text_data, tmp_path):
    from scalinglab.cli import app

    args = ["train", "--arch", "lstm", "--n-layer", "1", "--d-model", "16", "--ctx", "16", "--tokens", "2048",
            "--data", text_data, "--batch-size", "8", "--eval-set", "text:xz-docs", "--out"]
    res = CliRunner().invoke(app, [*args, str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "eval set text:xz-docs:" in res.output and "bits/byte" in res.output
    res = CliRunner().invoke(app, [*args, str(tmp_path / "b"), "--n-head", "2"])
    assert res.exit_code != 0 and "--n-head apply to gpt only" in str(res.exception)
