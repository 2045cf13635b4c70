"""DDP under torchrun on CPU (gloo, 2 processes) = the single-process loss curve, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalinglab.train.trainer import train

from .conftest import tiny


@pytest.mark.slow
def test_torchrun_two_processes_match_one(text_data, tmp_path):
    cfg = tiny(text_data, tokens=8 * 32 * 6, eval_every=3, noise_scale_every=1)  # DDP measures every step
    single = tmp_path / "single"
    train(cfg, single)  # 8 sequences per step as 2 micro-batches of 4

    ddp = tmp_path / "ddp"  # 2 ranks x 1 micro-batch of 4 = the same 8 sequences per step
    cli = Path(sys.executable).with_name("scalinglab")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(cli),
        "train",
        "--n-layer",
        "2",
        "--d-model",
        "32",
        "--n-head",
        "2",
        "--ctx",
        "32",
        "--tokens",
        str(cfg["tokens"]),
        "--data",
        text_data,
        "--batch-size",
        "8",
        "--micro-batch-size",
        "4",
        "--lr",
        str(cfg["lr"]),
        "--log-every",
        "1",
        "--eval-every",
        "3",
        "--eval-batches",
        "2",
        "--ckpt-every",
        "4",
        "--seed",
        str(cfg["seed"]),
        "--out",
        str(ddp),
        "--json",
    ]
    env = {**os.environ, "SCALINGLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)
    assert summary["world_size"] == 2 and summary["status"] == "done"

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    a, b = rows(single), rows(ddp)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b, strict=True):
        assert rb["tokens"] == ra["tokens"] and rb["flops_palm"] == ra["flops_palm"]
        for k in ("train_loss", "grad_norm"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (k, ra["step"])
        if ra["val_loss"] is not None:
            assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-5)
        for k in ("gns_g2", "gns_trace"):  # DDP comm hook vs micro-batch hooks: the same two batch sizes
            if ra[k] is not None:
                assert rb[k] == pytest.approx(ra[k], rel=1e-3), (k, ra["step"])
