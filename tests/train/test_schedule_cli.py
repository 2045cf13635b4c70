"""LR schedules (pure functions) and the ``count`` / ``train`` commands."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.train.hardware import mfu, peak_flops
from scalinglab.train.schedule import lr_at


def test_cosine_warmup_floor():
    kw = dict(peak=1.0, total_steps=101, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1) and lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(100, **kw) == pytest.approx(0.1)  # floor at the last step
    mid = 10 + 45
    assert lr_at(mid, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    lrs = [lr_at(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    # one step after warmup: it is the last, so it is at the floor (as WSD's is)
    assert lr_at(9, peak=1.0, total_steps=10, warmup_steps=9, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_constant_and_wsd():
    assert lr_at(50, peak=2.0, total_steps=100, warmup_steps=5, schedule="constant") == 2.0
    kw = dict(peak=1.0, total_steps=100, warmup_steps=5, schedule="wsd", min_lr_ratio=0.0, decay_frac=0.2)
    assert lr_at(79, **kw) == 1.0 and lr_at(99, **kw) == pytest.approx(0.0)
    assert lr_at(89, **kw) == pytest.approx(0.5)


def test_peak_flops_is_dense_not_sparse():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    # names that contain a shorter entry's name take their own figure, not the shorter one's
    assert peak_flops("NVIDIA L40") == 181e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("NVIDIA A10") == 125e12 and peak_flops("NVIDIA GH200 480GB") == 989e12
    assert peak_flops(None) is None and peak_flops("Some New GPU") is None
    assert mfu(100_000, 6e8, 989e12) == pytest.approx(100_000 * 6e8 / 989e12)


def test_count_cli_json():
    r = CliRunner().invoke(
        app,
        [
            "count",
            "--n-layer",
            "12",
            "--d-model",
            "768",
            "--n-head",
            "12",
            "--vocab",
            "50257",
            "--ctx",
            "1024",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["params"]["total"] == 124_337_664 and out["params"]["kaplan"] == 84_934_656
    assert set(out["flops_per_token"]) >= {"6n", "kaplan", "palm", "chinchilla"}
    # a named size with shape flags: the flags override those fields
    r = CliRunner().invoke(app, ["count", "--name", "gpt2", "--n-layer", "2", "--vocab", "256", "--untied",
                                 "--json"])
    cfg = json.loads(r.stdout)["config"]
    assert (cfg["n_layer"], cfg["vocab_size"], cfg["tied"], cfg["d_model"]) == (2, 256, False, 768)


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--device", "bogus"], "not a torch device"),
        (["--device", "cuda:7"], "not usable"),
        (["--tokens", "nan"], "--tokens nan: must be a finite"),
        (["--warmup-tokens", "inf"], "--warmup-tokens inf"),
        (["--warmup-tokens", "-5"], "warmup_tokens"),
    ],
)
def test_train_cli_bad_input_is_one_clear_error(text_data, tmp_path, extra, expect):
    from scalinglab.errors import ConfigError

    args = ["train", "--n-layer", "1", "--d-model", "32", "--n-head", "2", "--ctx", "32", "--tokens", "2e3",
            "--data", text_data, "--out", str(tmp_path / "r"), *extra]
    r = CliRunner().invoke(app, args)
    assert isinstance(r.exception, ConfigError) and expect in str(r.exception), r.output
    (tmp_path / "f").write_text("")
    r = CliRunner().invoke(app, [*args[:-len(extra) - 2], "--out", str(tmp_path / "f")])
    assert isinstance(r.exception, ConfigError) and "is a file" in str(r.exception)


def test_train_cli_json_and_resume_guard(text_data, tmp_path):
    run = tmp_path / "cli"
    args = [
        "train",
        "--n-layer",
        "1",
        "--d-model",
        "32",
        "--n-head",
        "2",
        "--ctx",
        "32",
        "--tokens",
        "2e3",
        "--data",
        text_data,
        "--batch-size",
        "8",
        "--out",
        str(run),
        "--json",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout[r.stdout.index("{") :])
    assert s["status"] == "done" and s["steps"] == 7 and s["tokens"] == 7 * 8 * 32
    assert math.isfinite(s["final_val_loss"]) and s["params"]["kaplan"] == 12 * 32 * 32
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code != 0 and "--resume" in str(r2.exception)
    r3 = CliRunner().invoke(app, [*args, "--resume"])
    assert r3.exit_code == 0 and json.loads(r3.stdout[r3.stdout.index("{") :]) == s
