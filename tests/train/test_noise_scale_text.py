"""The noise scale on a real text run (trainer) and ``scalinglab noise-scale`` on run and study folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from scalinglab.cli.noise import critical_batch


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A short GPT run on text:default, 2 micro-batches per step (so the noise scale is measured)."""
    from scalinglab.train.trainer import train

    out = tmp_path_factory.mktemp("gns_text") / "run"
    B, T, steps = 8, 32, 100
    train(dict(n_layer=1, d_model=32, n_head=2, n_ctx=T, data="text:default", tokens=B * T * steps,
               batch_size=B, micro_batch_size=B // 2, lr=3e-3, schedule="constant", warmup_tokens=5 * B * T,
               log_every=5, eval_every=10**6, eval_batches=1, ckpt_every=10**6, seed=0), out)
    return out


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_b_simple_rises_as_the_loss_falls(text_run: Path) -> None:
    rows = [r for r in _rows(text_run) if r["step"] >= 20]
    assert all(r["gns_g2"] is not None and r["gns_trace"] is not None for r in rows)
    b = np.array([r["gns_b_simple_tokens"] for r in rows], dtype=float)
    loss = np.array([r["train_loss"] for r in rows])
    assert np.isfinite(b).all() and (b > 0).all()
    assert loss[-3:].mean() < loss[0] - 0.3  # it learned
    assert spearmanr(loss, b).statistic < -0.5  # lower loss, larger noise scale
    assert b[-3:].mean() > 2 * b[0]


def test_cli_fits_b_crit_on_the_text_run(text_run: Path) -> None:
    r = critical_batch(text_run, bootstrap=20)
    assert r["n_points"] >= 10 and r["seq_len"] == 32 and r["converged"]
    assert r["B_crit_sequences"] == pytest.approx(r["B_crit_tokens"] / 32)
    lo, hi = r["B_crit_tokens_ci95"]
    assert lo <= r["B_crit_tokens"] <= hi
    assert r["target_loss"] == pytest.approx(_rows(text_run)[-1]["train_loss"])


def _write_run(run: Path, L: np.ndarray, B: np.ndarray, n_ctx: int = 64) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"n_ctx": n_ctx}}))
    rows = [{"step": i + 1, "train_loss": float(l), "gns_b_simple_tokens": float(b), "gns_g2": 1.0,
             "gns_trace": float(b)} for i, (l, b) in enumerate(zip(L, B, strict=True))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_recovers_a_known_b_crit_law_from_a_study(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    B_star, alpha_B = 3.0e5, 0.4
    for k in range(3):  # three runs covering different loss ranges
        L = np.geomspace(6.0 - k, 2.5 - 0.5 * k, 40)
        B = B_star / L ** (1 / alpha_B) * np.exp(0.05 * rng.standard_normal(40))
        _write_run(tmp_path / "runs" / f"r{k}", L, B)
    r = critical_batch(tmp_path, target_loss=2.0, bootstrap=50)
    assert len(r["runs"]) == 3 and r["converged"]
    assert r["alpha_B"] == pytest.approx(alpha_B, rel=0.05)
    assert r["B_star"] == pytest.approx(B_star, rel=0.15)
    assert r["B_crit_tokens"] == pytest.approx(B_star / 2.0 ** (1 / alpha_B), rel=0.05)
    assert r["B_crit_sequences"] == pytest.approx(r["B_crit_tokens"] / 64)
    lo, hi = r["ci95"]["alpha_B"]
    assert lo <= alpha_B <= hi


def test_cli_without_measurements_fails_with_a_clear_message(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, np.array([4.0, 3.5, 3.0]), np.array([1.0, 1.0, 1.0]))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [dict(json.loads(x), gns_b_simple_tokens=None) for x in lines]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-c", "from scalinglab.cli import main; main()", "noise-scale", str(run)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "0 usable noise-scale measurements" in p.stderr and "micro-batches" in p.stderr
    assert "Traceback" not in p.stderr
