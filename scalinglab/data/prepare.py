"""``prepare(spec, out)`` builds a dataset folder; ``ensure_dataset(spec)`` builds it once into a cache."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from scalinglab.data.build import FORMAT, write_dataset
from scalinglab.data.spec import DOMAINS, Spec, parse_spec
from scalinglab.errors import ConfigError


@dataclass
class DatasetInfo:
    """Summary of a prepared dataset: token counts per split, vocabulary and fingerprint."""

    path: str
    spec: str
    domain: str
    vocab_size: int
    fingerprint: str
    tokens: dict  # {"train": n, "val": n, "test": n}
    extra_splits: dict  # further evaluation splits (math difficulty sets), {name: tokens}
    bytes_per_token: dict  # text only: UTF-8 bytes per token of each split, else None
    record_len: int | None
    tokenizer: str

    @classmethod
    def from_meta(cls, path: Path, meta: dict) -> DatasetInfo:
        sp = meta["splits"]
        main = ("train", "val", "test")
        return cls(path=str(path), spec=meta["spec"], domain=meta["domain"], vocab_size=meta["vocab_size"],
                   fingerprint=meta["fingerprint"], tokens={k: sp[k]["tokens"] for k in main},
                   extra_splits={k: v["tokens"] for k, v in sp.items() if k not in main},
                   bytes_per_token={k: (v["bytes"] / v["tokens"] if v["bytes"] else None)
                                    for k, v in sp.items()},
                   record_len=meta["record_len"], tokenizer=meta["tokenizer"]["kind"])

    def to_json(self) -> dict:
        """The pinned ``data info --json`` object (tokens, vocab_size, fingerprint) plus details."""
        d = asdict(self)
        return {"tokens": d.pop("tokens"), "vocab_size": d.pop("vocab_size"),
                "fingerprint": d.pop("fingerprint"), **d}


def _build(spec: Spec):
    if spec.domain == "text":
        from scalinglab.data.text import build_text

        return build_text(spec)
    if spec.domain == "image":
        from scalinglab.data.images import build_images

        return build_images(spec)
    if spec.domain == "math":
        from scalinglab.data.mathgen import build_math

        return build_math(spec)
    raise ConfigError(f"unknown data domain {spec.domain!r}; choose one of {', '.join(DOMAINS)}")


def prepare(spec: str, out: Path, *, force: bool = False, **opts) -> DatasetInfo:
    """Build the dataset named by ``spec`` into the folder ``out`` (atomically). ``opts`` are spec options
    (e.g. ``tokenizer="bpe", vocab_size=4096``); ``force`` replaces an existing folder."""
    sp = parse_spec(spec, **opts)
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; choose another --out or pass --force")
    built = _build(sp)
    meta = write_dataset(built, out, str(sp), sp.options, dtype=sp.opt("dtype"), replace=force)
    return DatasetInfo.from_meta(out, meta)


def default_cache_dir() -> Path:
    env = os.environ.get("SCALINGLAB_CACHE")
    return Path(env) / "data" if env else Path.home() / ".cache" / "scalinglab" / "data"


def cache_key(spec: str) -> str:
    """Folder name in the cache: the domain, then a hash of the spec, options, source identity and format."""
    from scalinglab.data.text import source_stamp

    sp = parse_spec(spec)
    stamp = source_stamp(sp.source) if sp.domain == "text" else _file_stamp(sp.source)
    h = hashlib.sha256(json.dumps([FORMAT, str(sp), stamp], sort_keys=True, default=str).encode())
    return f"{sp.domain}-{h.hexdigest()[:16]}"


def _file_stamp(source: str) -> list:
    """A cheap identity of a user file, or of every file in a user folder (rewriting an image in place
    changes neither the folder's size nor its mtime): paths, sizes, mtimes."""
    p = Path(source).expanduser()
    if p.is_dir():
        return [str(p.resolve())] + [[str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns]
                                     for f in sorted(p.rglob("*")) if f.is_file()]
    if p.exists():
        return [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns]
    return [source]


def ensure_dataset(spec_or_dir: str, cache_dir: Path | None = None) -> Path:
    """A prepared folder for ``spec_or_dir``: the folder itself if it is one, else the cached build of the
    spec (built on first use; two processes racing both end up with the one folder that won the rename)."""
    p = Path(str(spec_or_dir)).expanduser()
    if (p / "meta.json").is_file():
        return p
    out = Path(cache_dir or default_cache_dir()) / cache_key(str(spec_or_dir))
    if (out / "meta.json").is_file():
        return out
    try:
        prepare(str(spec_or_dir), out)
    except (ConfigError, OSError):
        if (out / "meta.json").is_file():  # another process finished first: use its folder
            return out
        raise
    return out
