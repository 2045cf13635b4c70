"""A tiny stand-in for scalinglab.data (the pinned contract) over the bytes of a real text file, used only
while scalinglab.data is not importable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXT = Path("/usr/share/common-licenses/GPL-3")


@dataclass
class Batch:
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None


class Dataset:
    vocab_size = 256
    fingerprint = "gpl3-bytes"
    domain = "text"
    record_len = None

    def __init__(self, path: Path, masked: bool = False) -> None:
        data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
        cut = int(0.9 * len(data))
        self._tok = {"train": data[:cut], "val": data[cut:]}
        self.masked = masked

    def tokens(self, split):
        return self._tok[split]

    def mask(self, split):
        # a real, data-dependent mask: count only positions whose target is a letter
        if not self.masked:
            return None
        t = self._tok[split]
        return (((t >= 65) & (t <= 90)) | ((t >= 97) & (t <= 122))).astype(np.uint8)

    def bytes_per_token(self, split):
        return 1.0


def ensure_dataset(spec, cache_dir=None):
    return Path(TEXT)


def open_dataset(path):
    return Dataset(path)


def _rows(ds, split, offs, T):
    t = ds.tokens(split)
    x = np.stack([t[o:o + T] for o in offs]).astype(np.int64)
    y = np.stack([t[o + 1:o + T + 1] for o in offs]).astype(np.int64)
    m = ds.mask(split)
    mk = None if m is None else np.stack([m[o + 1:o + T + 1] for o in offs]).astype(np.float32)
    return Batch(x, y, mk)


class Sampler:
    def __init__(self, dataset, split, batch_size, seq_len, seed):
        self.ds, self.split, self.B, self.T, self.seed, self.cursor = dataset, split, batch_size, seq_len, seed, 0

    def next_batch(self):
        rng = np.random.default_rng([self.seed, self.cursor])
        offs = rng.integers(0, len(self.ds.tokens(self.split)) - self.T - 1, size=self.B)
        self.cursor += 1
        return _rows(self.ds, self.split, offs, self.T)

    def state_dict(self):
        return {"seed": self.seed, "cursor": self.cursor}

    def load_state_dict(self, st):
        self.seed, self.cursor = st["seed"], st["cursor"]


def eval_batches(dataset, split, batch_size, seq_len, max_batches):
    n = len(dataset.tokens(split))
    offs = list(range(0, n - seq_len - 1, seq_len))[: batch_size * max_batches]
    for i in range(0, len(offs), batch_size):
        yield _rows(dataset, split, offs[i:i + batch_size], seq_len)
