"""A masked domain (math: only answer tokens count): the global-batch loss is the same however the batch is
cut
into micro-batches, and it is the masked mean."""

from __future__ import annotations

import json

import pytest

from scalinglab.train.trainer import train

from .conftest import tiny


def test_masked_loss_independent_of_micro_batching(math_data, tmp_path):
    runs = {}
    for micro in (8, 2):
        cfg = tiny(math_data, tokens=8 * 32 * 3, micro_batch_size=micro, noise_scale=False, eval_every=3)
        s = train(cfg, tmp_path / f"m{micro}")
        runs[micro] = [
            json.loads(x) for x in (tmp_path / f"m{micro}" / "metrics.jsonl").read_text().splitlines()
        ]
        assert s["status"] == "done"
    for a, b in zip(runs[8], runs[2], strict=True):
        # micro-batches hold different numbers of answer tokens: weighting by counts keeps the global mean
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert runs[8][-1]["val_loss"] == pytest.approx(runs[2][-1]["val_loss"], rel=1e-5)
