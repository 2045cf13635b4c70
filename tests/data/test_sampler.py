"""Sampler: batch k is a pure function of (seed, k); exact resume; DDP rows; deterministic evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.data import Sampler, eval_batches
from scalinglab.errors import ConfigError, InputError


def test_batches_are_windows_of_the_stream_shifted_by_one(default_text):
    s = Sampler(default_text, "train", batch_size=8, seq_len=32, seed=3)
    b = s.next_batch()
    assert b.x.shape == b.y.shape == (8, 32) and b.x.dtype == b.y.dtype == np.int64 and b.mask is None
    tok = np.asarray(default_text.tokens("train"))
    for off, x, y in zip(s.offsets(0), b.x, b.y, strict=True):
        assert (x == tok[off:off + 32]).all() and (y == tok[off + 1:off + 33]).all()


def test_batch_k_depends_only_on_seed_and_k_so_resume_is_exact(default_text):
    a = Sampler(default_text, "train", 4, 16, seed=7)
    run = [a.next_batch().x for _ in range(5)]
    b = Sampler(default_text, "train", 4, 16, seed=7)
    for _ in range(2):
        b.next_batch()
    state = b.state_dict()
    assert state["cursor"] == 2 and state["seed"] == 7
    c = Sampler(default_text, "train", 4, 16, seed=0)
    c.load_state_dict(state)
    assert all((c.next_batch().x == x).all() for x in run[2:])
    assert not (Sampler(default_text, "train", 4, 16, seed=8).next_batch().x == run[0]).all()


def test_ranks_split_the_global_batch(default_text):
    full = Sampler(default_text, "train", 8, 16, seed=1).batch(4)
    parts = [Sampler(default_text, "train", 8, 16, seed=1, rank=r, world_size=4).batch(4) for r in range(4)]
    assert (np.concatenate([p.x for p in parts]) == full.x).all()
    with pytest.raises(ConfigError, match="split evenly"):
        Sampler(default_text, "train", 6, 16, world_size=4)


def test_eval_batches_predict_every_token_once(default_text):
    n = default_text.num_tokens("val")
    batches = list(eval_batches(default_text, "val", 16, 128))
    counted = sum(b.y.size if b.mask is None else int(b.mask.sum()) for b in batches)
    assert counted == n - 1  # every target of the split exactly once, the tail too
    first = np.concatenate([b.x[:, 0] for b in batches])[:-1]
    tok = np.asarray(default_text.tokens("val"))
    assert (first == tok[0:len(first) * 128:128]).all()
    # the last window ends at the split's end and counts only what the others did not
    last = batches[-1]
    assert (last.y[-1] == tok[n - 128:]).all() and 0 < last.mask[-1].sum() < 128
    again = list(eval_batches(default_text, "val", 16, 128, max_batches=3))
    assert len(again) == 3 and again[0].x.shape == (16, 128)
    same = eval_batches(default_text, "val", 16, 128, 3)
    assert all((a.x == b.x).all() for a, b in zip(again, same, strict=True))


def test_image_batches_align_to_records_and_mask_the_bos(digits):
    s = Sampler(digits, "train", 16, 64, seed=0)
    b = s.next_batch()
    assert (b.x[:, 0] == 17).all() and b.y.max() <= 16 and (b.mask == 1).all()
    b2 = Sampler(digits, "train", 16, 100, seed=0).next_batch()  # windows run into the next image
    assert ((b2.y == 17) == (b2.mask == 0)).all()
    ev = list(eval_batches(digits, "val", 32, 64))
    assert sum(e.mask.sum() for e in ev) == 64 * digits.meta["splits"]["val"]["documents"]


def test_sampler_errors(digits):
    with pytest.raises(InputError, match="no split 'dev'"):
        Sampler(digits, "dev", 4, 16)
    with pytest.raises(InputError, match="fewer than seq_len"):
        Sampler(digits, "val", 4, 10**7)
    with pytest.raises(ConfigError, match="seed"):
        Sampler(digits, "train", 4, 16, seed=-1)


def test_unique_tokens_repeat_one_subset_in_epochs(default_text):
    """Repeated-data runs: the first U tokens only, every window once per epoch, a new order each epoch."""
    u, T, B = 16 * 100 + 1, 16, 8  # 100 non-overlapping windows of 16 targets
    s = Sampler(default_text, "train", B, T, seed=5, unique_tokens=u)
    assert s.epoch_tokens == 100 * 16
    offs = np.concatenate([s.offsets(k) for k in range(50)])  # 400 rows = 4 epochs
    tok = np.asarray(default_text.tokens("train"))
    assert offs.max() + T + 1 <= u  # nothing outside the subset
    epochs = offs.reshape(4, 100)
    for e in epochs:
        assert sorted(e.tolist()) == list(range(0, 1600, 16))  # every window exactly once per epoch
    assert not (epochs[0] == epochs[1]).all()  # a fresh permutation per epoch
    b = s.batch(13)  # the rows of a batch are its windows, shifted by one for the targets
    for off, x, y in zip(s.offsets(13), b.x, b.y, strict=True):
        assert (x == tok[off:off + T]).all() and (y == tok[off + 1:off + T + 1]).all()
    again = Sampler(default_text, "train", B, T, seed=5, unique_tokens=u)
    again.load_state_dict(s.state_dict())
    assert (again.batch(37).x == s.batch(37).x).all()  # batch k depends on (seed, k) only
    assert s.state_dict()["unique_tokens"] == u


def test_unique_tokens_errors(default_text):
    n = default_text.num_tokens("train")
    with pytest.raises(InputError, match="more than the train split"):
        Sampler(default_text, "train", 4, 16, unique_tokens=n + 1)
    with pytest.raises(ConfigError, match="at least seq_len"):
        Sampler(default_text, "train", 4, 16, unique_tokens=10)


def test_unique_tokens_on_records(digits):
    s = Sampler(digits, "train", 8, 64, seed=0, unique_tokens=65 * 40)
    starts = set(s.windows.tolist())
    seen = np.concatenate([s.offsets(k) for k in range(2 * len(starts) // 8)])
    assert set(seen.tolist()) == starts and all(o + 65 <= 65 * 40 for o in starts)
