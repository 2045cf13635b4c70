"""``open_dataset(path)``: read-only, memory-mapped view of a prepared dataset folder."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from scalinglab.errors import InputError


class Dataset:
    """Token shards of one prepared dataset. Loss units: nats per token; ``bytes_per_token`` converts text
    losses to bits per byte (bpb = loss / ln 2 / bytes_per_token)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise InputError(f"{self.path} is not a prepared dataset (no meta.json); run `scalinglab data "
                             "prepare SPEC --out DIR` or pass a spec such as text:default")
        try:
            self.meta = json.loads(meta_path.read_text())
            self.vocab_size: int = int(self.meta["vocab_size"])
            self.fingerprint: str = self.meta["fingerprint"]
            self.domain: str = self.meta["domain"]
            self.record_len: int | None = self.meta["record_len"]
            self.dtype = np.dtype(self.meta["dtype"])
            dict(self.meta["splits"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise InputError(f"{meta_path} is not a valid dataset description ({what}); prepare the dataset "
                             "again with `scalinglab data prepare`") from None

    @property
    def splits(self) -> list[str]:
        """train, val, test, then any extra evaluation splits (e.g. math ``test_d9``)."""
        return list(self.meta["splits"])

    def _check(self, split: str) -> None:
        if split not in self.meta["splits"]:
            raise InputError(f"dataset {self.path} has no split {split!r}; it has {', '.join(self.splits)}")

    def tokens(self, split: str) -> np.memmap:
        self._check(split)
        return np.memmap(self.path / f"{split}.bin", dtype=self.dtype, mode="r")

    def mask(self, split: str) -> np.memmap | None:
        """uint8 per position, 1 where the token counts as a target in the loss; None = every token counts."""
        self._check(split)
        if not self.meta["splits"][split]["mask"]:
            return None
        return np.memmap(self.path / f"{split}.mask.bin", dtype=np.uint8, mode="r")

    def doc_starts(self, split: str) -> np.ndarray:
        """int64 token offsets where each document (text) or record (image, math problem) starts."""
        self._check(split)
        return np.load(self.path / f"{split}.docs.npy")

    def num_tokens(self, split: str) -> int:
        self._check(split)
        return int(self.meta["splits"][split]["tokens"])

    def bytes_per_token(self, split: str) -> float | None:
        """Text: UTF-8 bytes per token of the split (1.0 for the byte tokenizer); None for other domains."""
        self._check(split)
        s = self.meta["splits"][split]
        return s["bytes"] / s["tokens"] if s["bytes"] else None

    @cached_property
    def tokenizer(self):
        """encode(str) -> list[int] / decode(list[int]) -> str for text and math (bytes or BPE); the pixel
        tokenizer for images. Any other kind in meta.json is an InputError (never a silent fallback)."""
        from scalinglab.data.tokenizer import BPETokenizer, ByteTokenizer

        kind = self.meta["tokenizer"]["kind"]
        if kind == "bytes":
            return ByteTokenizer()
        if kind == "bpe":
            return BPETokenizer.load(self.path / "tokenizer.json")
        if kind == "pixels":
            from scalinglab.data.images import PixelTokenizer

            return PixelTokenizer(self.meta)
        raise InputError(f"{self.path}: unknown tokenizer kind {kind!r} in meta.json (bytes, bpe or pixels)")

    def documents(self, split: str) -> list[str]:
        """The split's documents as text (text and math domains), in stream order."""
        if self.meta["tokenizer"]["kind"] not in ("bytes", "bpe"):
            raise InputError(f"{self.domain} data has no text documents")
        tok, starts = self.tokens(split), self.doc_starts(split)
        sep = self.meta.get("doc_separator", "")
        bounds = list(starts) + [len(tok)]
        out = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            t = self.tokenizer.decode(np.asarray(tok[a:b]))
            out.append(t[: -len(sep)] if sep and t.endswith(sep) else t)
        return out

    def text(self, split: str) -> str:
        """The whole split decoded to text (documents joined by the dataset's separator)."""
        return self.tokenizer.decode(np.asarray(self.tokens(split)))

    def info(self):
        from scalinglab.data.prepare import DatasetInfo

        return DatasetInfo.from_meta(self.path, self.meta)

    def __repr__(self) -> str:
        n = {s: self.num_tokens(s) for s in ("train", "val", "test")}
        return f"Dataset({self.meta['spec']!r}, vocab={self.vocab_size}, tokens={n}, fp={self.fingerprint})"


def open_dataset(path) -> Dataset:
    """Open a prepared folder, or (convenience) a spec: ``open_dataset("text:default")`` builds/caches it."""
    p = Path(str(path)).expanduser()
    if not (p / "meta.json").is_file() and ":" in str(path):
        from scalinglab.data.prepare import ensure_dataset

        p = ensure_dataset(str(path))
    return Dataset(p)
