"""What a domain builder returns, and the atomic writer of a prepared dataset folder.

Folder layout: ``meta.json``; per split ``{split}.bin`` (tokens), ``{split}.docs.npy`` (int64 token offset of
each document / record start), optional ``{split}.mask.bin`` (uint8, 1 = the target at that position counts
in the loss); ``tokenizer.json`` for BPE. The folder is written under a temporary name beside ``out`` and
switched into place (``scalinglab.io.replace_dir``), so a reader never sees a half-written dataset, nor none;
what killed writers left beside it is swept first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalinglab.data.tokenizer import dtype_for_vocab
from scalinglab.errors import ConfigError, InputError
from scalinglab.io import replace_dir, sweep_temps, temp_dir, writing

FORMAT = 1


@dataclass
class SplitData:
    tokens: np.ndarray  # token ids (any integer dtype; cast to the shard dtype on write)
    starts: np.ndarray  # int64 offsets of document / record starts in ``tokens``
    mask: np.ndarray | None = None  # uint8 per position: 1 where the token is counted as a target
    n_bytes: int | None = None  # text only: UTF-8 bytes that ``tokens`` decode to (for bits per byte)


@dataclass
class Built:
    domain: str
    vocab_size: int
    splits: dict[str, SplitData]  # train, val, test, then any extra evaluation splits
    tokenizer: dict  # {"kind": ..., "fingerprint": ...}
    split_rule: dict
    record_len: int | None = None
    align: str = "none"  # "record": the sampler starts sequences at record starts
    save_tokenizer: Callable[[Path], None] | None = None
    content_sha: str | None = None  # identity of the split documents; None = hash the written shards
    extra: dict = field(default_factory=dict)


def _fsync_write(path: Path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_dataset(built: Built, out: Path, spec: str, options: dict, dtype: str | None = None,
                  replace: bool = False) -> dict:
    """Write ``built`` to the folder ``out`` atomically; returns the meta dict. Refuses to overwrite an
    existing folder unless ``replace`` (then the old one is swapped out only once the new one is complete)."""
    out = Path(out)
    if out.exists() and not replace:
        raise ConfigError(f"{out} already exists; choose another --out or pass --force")
    dt = dtype_for_vocab(built.vocab_size, dtype)
    for name, s in built.splits.items():
        if len(s.tokens) == 0:
            raise InputError(f"the {name} split is empty")
        hi = int(s.tokens.max())
        if hi >= built.vocab_size:
            raise InputError(f"token id {hi} in the {name} split is outside the vocabulary "
                             f"({built.vocab_size})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot write the dataset to {out}: a part of that path is a file") from None
    sweep_temps(out.parent)  # what killed writers left (never a live one's)
    with temp_dir(out) as tmp, writing(out):
        content = hashlib.sha256()
        splits_meta = {}
        for name, s in built.splits.items():
            tok = memoryview(np.ascontiguousarray(s.tokens, dtype=dt)).cast("B")  # no copy when already dt
            if built.content_sha is None:
                content.update(name.encode())
                content.update(tok)
            _fsync_write(tmp / f"{name}.bin", tok)
            np.save(tmp / f"{name}.docs.npy", np.asarray(s.starts, dtype=np.int64))
            if s.mask is not None:
                m = memoryview(np.ascontiguousarray(s.mask, dtype=np.uint8)).cast("B")
                if built.content_sha is None:
                    content.update(b"mask")
                    content.update(m)
                _fsync_write(tmp / f"{name}.mask.bin", m)
            splits_meta[name] = {"tokens": int(len(s.tokens)), "documents": int(len(s.starts)),
                                 "bytes": s.n_bytes, "mask": s.mask is not None}
        if built.save_tokenizer is not None:
            built.save_tokenizer(tmp / "tokenizer.json")
        content_sha = built.content_sha or content.hexdigest()
        fp = hashlib.sha256(json.dumps([FORMAT, content_sha, built.tokenizer, built.split_rule],
                                       sort_keys=True).encode()).hexdigest()[:16]
        meta = {
            "format": FORMAT, "spec": spec, "domain": built.domain, "options": options,
            "vocab_size": built.vocab_size, "dtype": dt.name, "record_len": built.record_len,
            "align": built.align, "splits": splits_meta, "tokenizer": built.tokenizer,
            "split_rule": built.split_rule, "content_sha256": content_sha, "fingerprint": fp,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **built.extra,
        }
        _fsync_write(tmp / "meta.json", (json.dumps(meta, indent=1) + "\n").encode())
        try:
            replace_dir(tmp, out, replace=replace)
        except (FileNotFoundError, FileExistsError) as e:  # another process wrote `out` meanwhile
            raise ConfigError(f"{out} was written by another process at the same time ({type(e).__name__}); "
                              "run one `data prepare` per output folder") from None
    return meta
