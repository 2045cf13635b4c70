"""The training loop on the real bundled corpus: exact resume, run-folder contract, divergence, noise-scale
hooks that leave the parameters alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scalinglab.errors import ConfigError
from scalinglab.model.counting import count_params
from scalinglab.train.checkpoint import load_checkpoint, load_model
from scalinglab.train.metric_keys import METRIC_KEYS
from scalinglab.train.trainer import train

from .conftest import tiny


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict:
    return load_checkpoint(run)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exact_resume_stop_and_crash(text_data, tmp_path):
    cfg = tiny(text_data, noise_scale_every=2)  # measured and plain steps on both sides of the resume
    straight = tmp_path / "straight"
    s0 = train(cfg, straight)
    assert s0["status"] == "done" and s0["steps"] == 8

    # k steps, stop (checkpoint), then k more in a fresh call
    stopped = tmp_path / "stopped"
    s1 = train(cfg, stopped, should_stop=lambda step: step == 4)
    assert s1["status"] == "stopped" and s1["steps"] == 4 and not (stopped / "summary.json").exists()
    s2 = train(cfg, stopped)
    assert s2["status"] == "done"

    # a crash after rows 5 and 6 were logged but the last checkpoint is at step 4
    crashed = tmp_path / "crashed"

    def boom(row):
        if row["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, crashed, on_metrics=boom)
    assert load_checkpoint(crashed)["step"] == 4 and len(rows(crashed)) == 6
    train(cfg, crashed)

    ref = rows(straight)
    assert [r["step"] for r in ref] == list(range(1, 9))
    # measured steps 0, 2, 4, 6: their rows (1, 3, 5, 7) carry the noise scale, the others None
    assert [r["gns_trace"] is not None for r in ref] == [True, False] * 4
    for run in (stopped, crashed):
        got = rows(run)
        assert [r["step"] for r in got] == list(range(1, 9))
        for a, b in zip(ref, got, strict=True):
            for k in ("train_loss", "val_loss", "grad_norm", "lr", "flops_6n", "gns_g2", "gns_trace"):
                assert a[k] == b[k], (k, a["step"])  # bit-identical, not approximately equal
        assert same_weights(weights(straight), weights(run))


def test_run_folder_contract_and_finished_rerun(text_data, tmp_path):
    run = tmp_path / "run"
    s = train(tiny(text_data, tokens=8 * 32 * 5, eval_every=2, ckpt_every=2), run)
    for key in (
        "status",
        "params",
        "flops_per_token",
        "tokens",
        "steps",
        "flops",
        "final_train_loss",
        "final_val_loss",
        "final_val_bpb",
        "wall_s",
        "batch_size_tokens",
    ):
        assert key in s
    assert s["params"] == count_params(load_model(run)[0].cfg)
    got = rows(run)
    for r in got:
        assert set(METRIC_KEYS) <= set(r)
        assert r["flops_6n"] == 6 * s["params"]["kaplan"] * r["tokens"]  # exact integers
        assert r["tokens"] == r["step"] * 8 * 32
    assert got[-1]["val_loss"] == s["final_val_loss"] and s["final_val_bpb"] > 0
    assert [r["val_loss"] is not None for r in got] == [False, True, False, True, True]
    assert s["flops"]["palm"] == s["flops_per_token"]["palm"] * s["tokens"]
    assert json.loads((run / "summary.json").read_text()) == s
    before = (run / "ckpt.pt").stat().st_mtime_ns
    assert train(tiny(text_data, tokens=8 * 32 * 5), run) == s  # finished: the stored summary, not retrained
    assert (run / "ckpt.pt").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match=r"finished run was written with a different config \(fields \['to"):
        train(tiny(text_data), run)  # another budget: not the run in this folder
    model, meta = load_model(run)
    assert meta["step"] == 5 and meta["vocab_size"] == 256 and Path(meta["dataset_path"]).is_dir()
    logits, _ = model(torch.zeros(1, 4, dtype=torch.long))
    assert logits.shape == (1, 4, 256)
    with pytest.raises(ConfigError, match="different config"):
        train(tiny(text_data, lr=1e-3), _stopped(text_data, tmp_path))


def _stopped(text_data, tmp_path) -> Path:
    run = tmp_path / "half"
    train(tiny(text_data), run, should_stop=lambda step: step == 2)
    return run


def test_noise_scale_measures_without_touching_parameters(text_data, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    train(tiny(text_data, tokens=8 * 32 * 4, noise_scale=True), on)
    train(tiny(text_data, tokens=8 * 32 * 4, noise_scale=False), off)
    assert same_weights(weights(on), weights(off))
    assert any(r["gns_trace"] is not None for r in rows(on))
    assert all(r["gns_trace"] is None for r in rows(off))
    assert load_checkpoint(on)["noise_scale"]["ema"] is not None


def test_noise_scale_every_k_steps_measures_those_steps_only(text_data, tmp_path):
    """Default micro-batching: only the measured steps (0, 3, 6) are split in two; the others run one backward
    and report the running averages."""
    run = tmp_path / "every3"
    train(tiny(text_data, tokens=8 * 32 * 7, micro_batch_size=None, noise_scale_every=3), run)
    assert load_checkpoint(run)["noise_scale"]["ema"]["n_updates"] == 3
    r = rows(run)
    assert [x["step"] for x in r] == list(range(1, 8))
    # a row carries the noise scale only when a measurement was made since the last one that did (rows after
    # steps 0, 3, 6): one row per measurement, so a fit to the rows does not count one measurement 3 times
    assert [x["step"] for x in r if x["gns_trace"] is not None] == [1, 4, 7]
    assert len({x["gns_trace"] for x in r if x["gns_trace"] is not None}) == 3


def test_compile_and_bf16_paths_agree_with_eager(text_data, tmp_path):
    """The GPU options also run on CPU, so CI covers them: ``torch.compile`` (with the noise-scale hooks in
    the compiled backward) gives eager's losses and noise scale to float tolerance, and bf16 autocast trains
    to eager's loss within bf16 precision."""
    base = tiny(text_data, tokens=8 * 32 * 4, noise_scale_every=1)
    runs = {}
    for name, kw in {"eager": {}, "compiled": {"compile": True}, "bf16": {"dtype": "bfloat16"}}.items():
        assert train({**base, **kw}, tmp_path / name)["status"] == "done"
        runs[name] = rows(tmp_path / name)
    keys = ("train_loss", "val_loss", "grad_norm", "gns_g2", "gns_trace")
    for a, b in zip(runs["eager"], runs["compiled"], strict=True):
        for k in keys:
            assert (a[k] is None) == (b[k] is None), (k, a["step"])  # val_loss only on eval steps
            assert a[k] is None or b[k] == pytest.approx(a[k], rel=1e-4), (k, a["step"])
    for a, b in zip(runs["eager"], runs["bf16"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.05)
        assert b["gns_trace"] > 0 and b["gns_g2"] > 0


def test_odd_batch_is_split_for_the_noise_scale_and_files_follow_the_umask(text_data, tmp_path):
    """A batch of 15 sequences: measured steps run 3 micro-batches of 5 (it has no split in two); the run's
    files get the permissions the umask gives (not mkstemp's 0600)."""
    import os
    import stat

    run = tmp_path / "odd"
    old = os.umask(0o027)  # not the usual 022: the files must follow the umask in force, whatever it is
    try:
        train(tiny(text_data, batch_size=15, micro_batch_size=None, tokens=15 * 32 * 4), run)
    finally:
        os.umask(old)
    assert [r["gns_trace"] is not None for r in rows(run)] == [True, False, False, False]  # step 0 measured
    for name in ("ckpt.pt", "config.json", "summary.json", "metrics.jsonl"):
        assert stat.S_IMODE(os.stat(run / name).st_mode) == 0o640, name


def test_divergence_stops_cleanly_and_keeps_last_good_checkpoint(text_data, tmp_path):
    run = tmp_path / "div"
    s = train(tiny(text_data, lr=1e30, grad_clip=0.0, ckpt_every=1, noise_scale=False), run)
    assert s["status"] == "diverged"
    good = s["diverged_at_step"] - 1
    assert 1 <= good < 8 and s["steps"] == good
    ck = load_checkpoint(run)
    assert ck["step"] == good
    assert all(r["step"] <= good and r["train_loss"] == r["train_loss"] for r in rows(run))
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    assert train(tiny(text_data, lr=1e30, grad_clip=0.0, ckpt_every=1, noise_scale=False), run) == s


def test_bad_config_is_a_clear_error(text_data, tmp_path):
    with pytest.raises(ConfigError, match="micro_batch_size"):
        train(tiny(text_data, micro_batch_size=3), tmp_path / "x")
    with pytest.raises(ConfigError, match="tokens"):
        train(tiny(text_data, tokens=0), tmp_path / "y")


def test_repeated_data_run_trains_on_its_subset_in_epochs(text_data, tmp_path):
    """unique_tokens: the trainer draws only the first U tokens, in epochs, records them in the summary, and
    a stopped run resumes to the same end as one that never stopped."""
    u = 32 * 16 + 1  # 16 windows of 32 targets: 2 batches of 8 per epoch
    cfg = tiny(text_data, tokens=8 * 32 * 8, unique_tokens=u)  # 8 steps = 4 epochs
    s = train(cfg, tmp_path / "rep")
    assert s["unique_tokens"] == u and s["epochs"] == pytest.approx(4.0)
    stopped = train(cfg, tmp_path / "rep2", should_stop=lambda step: step == 3)
    assert stopped["status"] == "stopped"
    resumed = train(cfg, tmp_path / "rep2")
    assert resumed["final_train_loss"] == s["final_train_loss"]
    fresh = train(tiny(text_data, tokens=8 * 32 * 8), tmp_path / "fresh")
    assert fresh["final_train_loss"] != s["final_train_loss"] and "epochs" not in fresh


def test_the_pieces_of_a_run_work_alone(text_data, tmp_path):
    """The run's setup, one optimiser step and its metrics row, without the loop: a step moves the weights
    and the optimiser; a step whose gradient is not finite moves neither and says so."""
    from scalinglab.train import trainer
    from scalinglab.train.config import TrainConfig

    cfg = TrainConfig.make(**tiny(text_data, noise_scale_every=1))
    d = trainer._Dist()
    run = trainer._setup(cfg, tmp_path, d)
    assert (run.steps, run.micro, run.n_micro, run.n_micro_gns) == (8, 4, 2, 2)
    trainer._build(run)
    assert trainer._resume(run, resume=True) is None  # nothing to resume in an empty folder
    trainer._wrap(run, None)
    before = {k: v.clone() for k, v in run.raw.state_dict().items()}
    st = trainer._step(run)
    assert st.ok and st.lr > 0 and 0 < st.train_loss < 10 and st.gnorm > 0
    assert not same_weights(before, run.raw.state_dict())
    run.step += 1
    row = trainer._metrics_row(run, st, evaluated=False, tps=1.0, wall=0.5)
    assert set(METRIC_KEYS) <= set(row) and row["step"] == 1 and row["val_loss"] is None
    with torch.no_grad():
        next(run.raw.parameters())[0, 0] = float("nan")
    steps_taken = [s["step"] for s in run.opt.state.values()]
    poisoned = {k: v.clone() for k, v in run.raw.state_dict().items()}
    st = trainer._step(run)
    assert not st.ok and [s["step"] for s in run.opt.state.values()] == steps_taken
    after = run.raw.state_dict()
    assert all(torch.equal(torch.nan_to_num(poisoned[k]), torch.nan_to_num(after[k])) for k in poisoned)
    run.meter.close()
