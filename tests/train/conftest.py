"""Fixtures for the trainer tests: the bundled real corpus prepared once into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models: one torch thread (the trainer reads SCALINGLAB_THREADS; no OpenMP oversubscription)."""
    monkeypatch.setenv("SCALINGLAB_THREADS", "1")


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
