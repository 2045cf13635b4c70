"""Extra evaluation sets: other text distributions, encoded with a run's own tokenizer (Kaplan 2020 Fig. 8).

A set is named by a spec (numpy only, no torch; the model side is ``scalinglab.train.evaluate``):

- ``text:SOURCE[,split=all|train|val|test][,doc_bytes=N][,val_frac=F][,test_frac=F]``: the documents of a
  text source as a data spec reads them (a bundled corpus such as ``xz-docs``, a file, a folder or a glob),
  every one (``split=all``, the default) or one split of them by the data layer's document-hash rule.
  Naming the training corpus itself needs ``split=val`` or ``split=test`` (its other documents were trained
  on).
- ``file:PATH``: one file, whole: UTF-8 text (a single document), or ``.npy`` token ids for non-text models.

The documents are joined by the corpus separator and encoded with the tokenizer of the dataset the model
trained on (bytes or its BPE), so the loss is in the model's own nats/token; bits per byte use the UTF-8 bytes
the tokens encode (None for ``.npy`` ids).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalinglab.errors import ConfigError, InputError

KINDS = ("text", "file")
TEXT_OPTIONS = ("split", "doc_bytes", "val_frac", "test_frac")
SPLIT_CHOICES = ("all", "train", "val", "test")


@dataclass(frozen=True)
class EvalSetSpec:
    """A parsed set spec: ``kind`` text|file, ``source``, ``split`` (text) and the data-spec ``options``."""

    spec: str
    kind: str
    source: str
    split: str = "all"
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class EvalStream:
    """One evaluation set as tokens of a model's vocabulary."""

    name: str  # the spec as written
    tokens: np.ndarray  # int64 token ids, documents joined by the corpus separator
    n_bytes: int | None  # UTF-8 bytes those tokens encode (text); None for token-id files
    documents: int

    @property
    def bytes_per_token(self) -> float | None:
        return self.n_bytes / len(self.tokens) if self.n_bytes else None


def parse_eval_set(spec: str) -> EvalSetSpec:
    """Validate a set spec without reading anything (a ConfigError names what is wrong)."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in KINDS or not rest:
        raise ConfigError(f"eval set {spec!r}: expected text:SOURCE[,split=..] or file:PATH")
    if kind == "file":
        return EvalSetSpec(spec, "file", rest)
    from scalinglab.data.spec import parse_spec

    parts = rest.split(",")
    split, keep = "all", [parts[0]]
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if not eq:
            keep.append(p)  # a comma inside a path
        elif key == "split":
            if value not in SPLIT_CHOICES:
                raise ConfigError(f"eval set {spec!r}: split={value!r}, allowed {', '.join(SPLIT_CHOICES)}")
            split = value
        elif key not in TEXT_OPTIONS:
            raise ConfigError(f"eval set {spec!r}: option {key!r} does not apply (the set is encoded with "
                              f"the run's own tokenizer); allowed: {', '.join(TEXT_OPTIONS)}")
        else:
            keep.append(p)
    parsed = parse_spec("text:" + ",".join(keep))
    return EvalSetSpec(spec, "text", parsed.source, split, tuple(sorted(parsed.options.items())))


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve() and Path(a).exists()
    except OSError:
        return False


def check_eval_set(spec: str, train_spec: str | None) -> EvalSetSpec:
    """``parse_eval_set`` plus the guard against evaluating on training documents: a text set from the
    training corpus's own source must name ``split=val`` or ``split=test``."""
    es = parse_eval_set(spec)
    if es.kind == "text" and train_spec and ":" in train_spec and es.split in ("all", "train"):
        from scalinglab.data.spec import parse_spec

        try:
            train = parse_spec(train_spec)
        except ConfigError:
            return es
        if train.domain == "text" and _same_source(es.source, train.source):
            raise ConfigError(f"eval set {spec!r} reads the training corpus ({train_spec}), whose train "
                              "split the model was trained on: add ,split=test (or ,split=val)")
    return es


def load_eval_set(spec: str, dataset) -> EvalStream:
    """The set ``spec`` encoded with ``dataset``'s tokenizer (a ``scalinglab.data.Dataset``); cached per
    (spec, dataset folder) in the process. A split of the training corpus itself is cut with the training
    spec's ``doc_bytes``, ``val_frac`` and ``test_frac`` (unless the set names its own), so ``split=test`` is
    exactly the documents the model never trained on."""
    train_spec = dataset.meta.get("spec")
    es = check_eval_set(spec, train_spec)
    defaults: tuple = ()
    if es.kind == "text" and train_spec and str(train_spec).startswith("text:"):
        from scalinglab.data.spec import parse_spec

        train = parse_spec(train_spec)
        if _same_source(es.source, train.source):
            defaults = tuple(sorted((k, v) for k, v in train.options.items() if k in TEXT_OPTIONS))
    kind = dataset.meta["tokenizer"]["kind"]
    return _load(spec, str(dataset.path), kind, int(dataset.vocab_size), defaults, _stamp(es))


def _stamp(es: EvalSetSpec) -> str:
    """The source's identity (checksum of a bundled corpus; paths, sizes, mtimes of files): an edited file
    is read again, not taken from the cache."""
    from scalinglab.data.text import source_stamp

    try:
        return json.dumps(source_stamp(es.source) if es.kind == "text" else
                          [es.source, Path(es.source).expanduser().stat().st_size,
                           Path(es.source).expanduser().stat().st_mtime_ns])
    except (OSError, InputError):
        return "missing"  # _load says what is missing


@functools.lru_cache(maxsize=32)
def _load(spec: str, ds_path: str, kind: str, vocab: int, defaults: tuple = (),
          stamp: str = "") -> EvalStream:
    from scalinglab.data.dataset import Dataset
    from scalinglab.data.text import DOC_SEP

    es = parse_eval_set(spec)
    if es.kind == "file" and es.source.endswith(".npy"):
        path = Path(es.source).expanduser()
        if not path.is_file():
            raise InputError(f"eval set {spec!r}: no file {path}")
        ids = np.asarray(np.load(path, allow_pickle=False)).ravel()
        if ids.size < 2 or ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= vocab:
            raise InputError(f"eval set {spec!r}: needs at least 2 integer token ids in [0, {vocab})")
        return EvalStream(spec, ids.astype(np.int64), None, 1)
    if kind not in ("bytes", "bpe"):
        raise ConfigError(f"eval set {spec!r} is text, but the model's data has a {kind} tokenizer")
    docs = _documents(es, spec, dict(defaults))
    if kind == "bytes":
        data = DOC_SEP.join(docs)
        return EvalStream(spec, np.frombuffer(data, dtype=np.uint8).astype(np.int64), len(data), len(docs))
    from scalinglab.data.tokenizer import decode_utf8

    tok = Dataset(Path(ds_path)).tokenizer
    sep = tok.encode(DOC_SEP.decode())
    enc = tok.encode_batch([decode_utf8(d, spec) for d in docs])
    ids = [t for i, e in enumerate(enc) for t in ((sep if i else []) + list(e))]
    n_bytes = sum(map(len, docs)) + len(DOC_SEP) * (len(docs) - 1)
    return EvalStream(spec, np.asarray(ids, dtype=np.int64), n_bytes, len(docs))


def _documents(es: EvalSetSpec, spec: str, defaults: dict) -> list[bytes]:
    if es.kind == "file":
        path = Path(es.source).expanduser()
        if not path.is_file():
            raise InputError(f"eval set {spec!r}: no file {path}")
        data = path.read_bytes().strip()
        if not data:
            raise InputError(f"eval set {spec!r}: {path} is empty")
        return [data]
    from scalinglab.data.spec import OPTIONS
    from scalinglab.data.splits import assign_splits
    from scalinglab.data.text import load_documents

    opts = {**defaults, **dict(es.options)}
    get = lambda k: opts.get(k, OPTIONS["text"][k][0])  # noqa: E731
    docs, _ = load_documents(es.source, get("doc_bytes"))
    if es.split != "all":
        where = assign_splits(docs, get("val_frac"), get("test_frac"))
        docs = [d for d, w in zip(docs, where, strict=True) if w == es.split]
    return docs
