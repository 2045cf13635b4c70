"""Reproducible batches: batch k of a ``Sampler`` is a pure function of (seed, k), so resuming a run is
restoring the cursor. ``eval_batches`` walks a split deterministically for validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalinglab.data.dataset import Dataset, open_dataset
from scalinglab.errors import ConfigError, InputError


@dataclass
class Batch:
    """x, y: int64 [batch, seq_len] (y is x shifted by one); mask: float32 [batch, seq_len] (1 = target
    counted in the loss) or None when every target counts."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None


def _as_dataset(dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else open_dataset(Path(str(dataset)))


def _gather(tokens, mask, offsets: np.ndarray, seq_len: int) -> Batch:
    idx = offsets[:, None] + np.arange(seq_len + 1)
    chunk = np.asarray(tokens[idx], dtype=np.int64)
    m = None if mask is None else np.asarray(mask[idx[:, 1:]], dtype=np.float32)
    return Batch(chunk[:, :-1], chunk[:, 1:], m)


class Sampler:
    """Random windows of ``seq_len + 1`` tokens from one split.

    ``align``: "none" (any offset, the default for text) or "record" (windows start at a record start:
    an image's BOS or a math problem's first character; the default for image and math data).
    ``batch_size`` is global; with ``world_size > 1`` every rank draws the same global batch and returns its
    own contiguous block of rows, so data-parallel training sees exactly the single-process data.

    ``unique_tokens`` U: train on the first U tokens of the split only, in epochs (repeated-data studies,
    Muennighoff et al. 2023). The subset is cut into windows (text: the (U - 1) // seq_len non-overlapping
    windows, so each epoch predicts every token of the subset once; records: every record start whose window
    ends inside the subset); epoch e visits them in a permutation seeded by (seed, e), and row r of the
    stream (batch r // batch_size) is window r mod n_windows of epoch r // n_windows. Batch k still depends
    only on (seed, k): resume is restoring the cursor.
    """

    def __init__(self, dataset, split: str, batch_size: int, seq_len: int, seed: int = 0, *,
                 align: str | None = None, rank: int = 0, world_size: int = 1,
                 unique_tokens: int | None = None) -> None:
        self.ds = _as_dataset(dataset)
        self.split, self.batch_size, self.seq_len, self.seed = split, int(batch_size), int(seq_len), int(seed)
        if self.batch_size < 1 or self.seq_len < 1:
            raise ConfigError(f"batch_size={batch_size} and seq_len={seq_len} must be positive")
        if self.seed < 0:
            raise ConfigError(f"seed={seed} must be >= 0")
        if world_size < 1 or not 0 <= rank < world_size or self.batch_size % world_size:
            raise ConfigError(f"batch_size={batch_size} must split evenly over world_size={world_size} "
                              f"(rank={rank})")
        self.rank, self.world_size = rank, world_size
        self.tokens, self.mask_arr = self.ds.tokens(split), self.ds.mask(split)
        n = len(self.tokens)
        if n < self.seq_len + 1:
            raise InputError(f"the {split} split of {self.ds.path} has {n} tokens, fewer than seq_len+1="
                             f"{self.seq_len + 1}")
        self.align = align or self.ds.meta.get("align", "none")
        if self.align == "record":
            starts = self.ds.doc_starts(split)
            _check_records_fit(self.ds, split, starts, n, self.seq_len)
            self.starts = starts[starts + self.seq_len + 1 <= n]
            if len(self.starts) == 0:
                raise InputError(f"no record of the {split} split has seq_len+1={self.seq_len + 1} tokens "
                                 "after it")
        elif self.align != "none":
            raise ConfigError(f"align={align!r}: use 'none' or 'record'")
        self.n = n
        self.cursor = 0
        self.unique_tokens = None if unique_tokens is None else int(unique_tokens)
        self._epoch_perm: tuple[int, np.ndarray] | None = None
        if self.unique_tokens is not None:
            self.windows = self._subset_windows(split)

    def _subset_windows(self, split: str) -> np.ndarray:
        """Window start offsets inside the first ``unique_tokens`` tokens (see the class docstring)."""
        u = self.unique_tokens
        if u is None or u < self.seq_len + 1:
            raise ConfigError(f"unique_tokens={u}: must be at least seq_len+1 = {self.seq_len + 1}")
        if u > self.n:
            raise InputError(f"unique_tokens={u:,} is more than the {split} split's {self.n:,} tokens")
        if self.align == "record":
            w = self.starts[self.starts + self.seq_len + 1 <= u]
            if len(w) == 0:
                raise ConfigError(f"unique_tokens={u}: no record window of {self.seq_len + 1} tokens fits")
            return w.astype(np.int64)
        return np.arange((u - 1) // self.seq_len, dtype=np.int64) * self.seq_len

    @property
    def epoch_tokens(self) -> int | None:
        """Targets per epoch over the subset (text: n_windows x seq_len); None without ``unique_tokens``."""
        return None if self.unique_tokens is None else int(len(self.windows) * self.seq_len)

    def _perm(self, epoch: int) -> np.ndarray:
        if self._epoch_perm is None or self._epoch_perm[0] != epoch:
            rng = np.random.default_rng([self.seed, int(epoch), 1])  # 3 words: never a batch key [seed, k]
            self._epoch_perm = (epoch, rng.permutation(len(self.windows)))
        return self._epoch_perm[1]

    def offsets(self, k: int) -> np.ndarray:
        """Start offsets of the rows of global batch ``k`` (all ranks)."""
        if self.unique_tokens is not None:
            rows = np.arange(int(k) * self.batch_size, (int(k) + 1) * self.batch_size)
            nw = len(self.windows)
            out = np.empty(self.batch_size, dtype=np.int64)
            for e in np.unique(rows // nw):
                sel = rows // nw == e
                out[sel] = self.windows[self._perm(int(e))[rows[sel] % nw]]
            return out
        rng = np.random.default_rng([self.seed, int(k)])
        if self.align == "record":
            return self.starts[rng.integers(0, len(self.starts), size=self.batch_size)]
        return rng.integers(0, self.n - self.seq_len, size=self.batch_size)

    def batch(self, k: int) -> Batch:
        """Batch ``k`` (this rank's rows), independent of the cursor."""
        off = self.offsets(k)
        per = self.batch_size // self.world_size
        return _gather(self.tokens, self.mask_arr, off[self.rank * per:(self.rank + 1) * per], self.seq_len)

    def next_batch(self) -> Batch:
        b = self.batch(self.cursor)
        self.cursor += 1
        return b

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        d = {"seed": self.seed, "cursor": self.cursor, "fingerprint": self.ds.fingerprint}
        if self.unique_tokens is not None:
            d["unique_tokens"] = self.unique_tokens
        return d

    def load_state_dict(self, state: dict) -> None:
        fp = state.get("fingerprint")
        if fp is not None and fp != self.ds.fingerprint:
            raise InputError(f"the sampler state was saved for dataset {fp}, this dataset is "
                             f"{self.ds.fingerprint}; resume with the same data")
        self.seed, self.cursor = int(state["seed"]), int(state["cursor"])


def _check_records_fit(ds: Dataset, split: str, starts: np.ndarray, n: int, seq_len: int) -> None:
    """A record (an image, a math problem with its answer) longer than a window would lose its end (for
    math: the answer, the only counted targets): refused, naming the context length that fits."""
    longest = int(np.max(np.diff(np.append(starts, n)))) if len(starts) else 0
    if longest > seq_len + 1:
        raise ConfigError(f"the {split} split of {ds.path} has records of up to {longest} tokens, more than "
                          f"a window of seq_len+1 = {seq_len + 1}: use a context of at least {longest - 1}")


def _record_windows(starts: np.ndarray, n: int, seq_len: int) -> list[tuple[int, int]]:
    """Greedy windows of whole records: (offset, end) with every record inside exactly one window."""
    ends = np.append(starts[1:], n)
    out, i = [], 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and ends[j] - starts[i] <= seq_len + 1:
            j += 1
        out.append((int(starts[i]), int(min(ends[j - 1], starts[i] + seq_len + 1))))
        i = j
    return out


def eval_batches(dataset, split: str, batch_size: int, seq_len: int,
                 max_batches: int | None = None) -> Iterator[Batch]:
    """Deterministic validation batches (no randomness).

    Text: consecutive non-overlapping windows (every token predicted once; when ``max_batches`` cuts the
    walk short, the windows are spread evenly over the split). Records (images, math): each window holds
    whole records and each record's targets are counted in exactly one window (mask), so the mean of the
    masked loss is the per-token loss of the split. The last batch may have fewer rows; weight batches by
    ``mask.sum()`` (or the number of targets) to average exactly.
    """
    ds = _as_dataset(dataset)
    tokens, mask = ds.tokens(split), ds.mask(split)
    n = len(tokens)
    if n < seq_len + 1:
        raise InputError(f"the {split} split has {n} tokens, fewer than seq_len+1={seq_len + 1}")
    if ds.meta.get("align") == "record":
        starts = ds.doc_starts(split)
        _check_records_fit(ds, split, starts, n, seq_len)
        windows = [(o, e, o + 1) for o, e in _record_windows(starts, n, seq_len)]
    else:
        windows = _stream_windows(n, seq_len)
    yield from _window_batches(tokens, mask, windows, batch_size, seq_len, max_batches)


def token_batches(tokens: np.ndarray, batch_size: int, seq_len: int, max_batches: int | None = None,
                  mask: np.ndarray | None = None) -> Iterator[Batch]:
    """``eval_batches`` over a bare token stream (e.g. an extra evaluation set encoded with a run's
    tokenizer): consecutive non-overlapping windows, every token predicted once, spread evenly over the
    stream when ``max_batches`` cuts the walk short."""
    n = len(tokens)
    if n < seq_len + 1:
        raise InputError(f"a token stream of {n} tokens is shorter than seq_len+1={seq_len + 1}")
    yield from _window_batches(tokens, mask, _stream_windows(n, seq_len), batch_size, seq_len, max_batches)


def _stream_windows(n: int, seq_len: int) -> list[tuple[int, int, int]]:
    """(offset, end, first target counted): a last window ends at n and counts only the tail."""
    windows = [(o, o + seq_len + 1, o + 1) for o in range(0, n - seq_len, seq_len)]
    done = windows[-1][1]
    if done < n:
        windows.append((n - seq_len - 1, n, done))
    return windows


def _window_batches(tokens, mask, windows: list[tuple[int, int, int]], batch_size: int, seq_len: int,
                    max_batches: int | None) -> Iterator[Batch]:
    n = len(tokens)
    if max_batches is not None and len(windows) > max_batches * batch_size:
        keep = np.linspace(0, len(windows) - 1, max_batches * batch_size).round().astype(int)
        windows = [windows[i] for i in keep]
    for b in range(0, len(windows), batch_size):
        w = windows[b:b + batch_size]
        off = np.array([o for o, _, _ in w], dtype=np.int64)
        idx = np.minimum(off[:, None] + np.arange(seq_len + 1), n - 1)
        chunk = np.asarray(tokens[idx], dtype=np.int64)
        pos = off[:, None] + np.arange(1, seq_len + 1)  # token offset of each target
        end = np.array([e for _, e, _ in w])[:, None]
        first = np.array([f for _, _, f in w])[:, None]
        valid = (pos < end) & (pos >= first)
        if mask is None and valid.all():
            m = None
        else:
            m = valid.astype(np.float32)
            if mask is not None:
                m *= np.asarray(mask[np.minimum(pos, n - 1)], dtype=np.float32)
        yield Batch(chunk[:, :-1], chunk[:, 1:], m)
