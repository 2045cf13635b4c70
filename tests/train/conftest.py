"""Fixtures for the trainer tests: the bundled real corpus prepared once into a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is fastest and avoids OpenMP oversubscription on a shared machine. Sets both
    torch's threads (for in-test forward/backward) and SCALINGLAB_THREADS (read by the trainer); module scope
    so that module-scoped runs (e.g. a trained text run) are covered too."""
    n, env = torch.get_num_threads(), os.environ.get("SCALINGLAB_THREADS")
    torch.set_num_threads(1)
    os.environ["SCALINGLAB_THREADS"] = "1"
    yield
    torch.set_num_threads(n)
    if env is None:
        os.environ.pop("SCALINGLAB_THREADS", None)
    else:
        os.environ["SCALINGLAB_THREADS"] = env


@pytest.fixture(scope="session")
def text_data(tmp_path_factory) -> str:
    """A prepared folder of ``text:default`` (the bundled real corpus, byte-level)."""
    from scalinglab.data import ensure_dataset

    return str(ensure_dataset("text:default", cache_dir=Path(tmp_path_factory.mktemp("data-cache"))))


def tiny(data: str, **kw) -> dict:
    """A tiny run config: 2 layers, d 32, n_ctx 32, batch 8 (8 steps unless ``tokens`` is given)."""
    cfg = dict(
        n_layer=2,
        d_model=32,
        n_head=2,
        n_ctx=32,
        data=data,
        tokens=8 * 32 * 8,
        batch_size=8,
        micro_batch_size=4,
        lr=3e-3,
        log_every=1,
        eval_every=4,
        eval_batches=2,
        ckpt_every=4,
        seed=3,
    )
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="session")
def math_data(tmp_path_factory) -> str:
    """A prepared folder of generated arithmetic problems (the loss counts answer tokens only: a mask)."""
    from scalinglab.data import ensure_dataset

    return str(ensure_dataset("math:arith,n=2000,n_test=20", cache_dir=Path(tmp_path_factory.mktemp("math"))))
