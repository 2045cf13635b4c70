"""Deterministic train / val / test assignment by document hash (stable across runs and machines).

A document goes to a split by the first 8 bytes of the sha256 of its bytes read as a number u in [0, 1):
u < test_frac -> test, u < test_frac + val_frac -> val, else train. Identical documents therefore always land
in the same split, so a duplicated passage never leaks from train into val or test. When val or test would be
empty (small corpora) the train documents with the largest u move there, which is just as deterministic.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from scalinglab.errors import InputError

SPLITS = ("train", "val", "test")


def doc_unit(doc: bytes) -> float:
    """The document's hash as a number in [0, 1)."""
    return int.from_bytes(hashlib.sha256(doc).digest()[:8], "big") / 2.0**64


def doc_digests(docs: list[bytes]) -> list[bytes]:
    """sha256 digest of every document, hashed on all cores (hashlib releases the GIL on large buffers)."""
    if len(docs) < 64:
        return [hashlib.sha256(d).digest() for d in docs]
    workers = int(os.environ.get("SCALINGLAB_THREADS") or os.cpu_count() or 1)
    step = -(-len(docs) // max(1, workers))

    def run(lo: int) -> list[bytes]:
        return [hashlib.sha256(d).digest() for d in docs[lo:lo + step]]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [g for part in pool.map(run, range(0, len(docs), step)) for g in part]


def content_digest(digests: list[bytes], where: list[str]) -> str:
    """sha256 over the documents' digests, in order, with their split: the identity of a split corpus."""
    h = hashlib.sha256()
    for d, w in zip(digests, where, strict=True):
        h.update(d + w.encode())
    return h.hexdigest()


def assign_splits(docs: list[bytes], val_frac: float, test_frac: float,
                  digests: list[bytes] | None = None) -> list[str]:
    """The split name of every document; val and test are never empty (needs >= 3 distinct documents).
    ``digests``: the documents' sha256 digests when already computed (``doc_digests``)."""
    if not (0 < val_frac < 0.5 and 0 < test_frac < 0.5):
        raise InputError(f"val_frac={val_frac} and test_frac={test_frac} must each lie in (0, 0.5)")
    if len(set(docs)) < 3:
        raise InputError(f"the corpus has {len(set(docs))} distinct document(s); a train/val/test split "
                         "needs at least 3 (add text, or use a larger corpus)")
    digests = digests if digests is not None else doc_digests(docs)
    units = [int.from_bytes(g[:8], "big") / 2.0**64 for g in digests]
    out = ["test" if u < test_frac else "val" if u < test_frac + val_frac else "train" for u in units]
    for name in ("test", "val"):
        if name not in out:
            # move the distinct train document with the largest hash (all its copies) to the empty split
            u_max = max(u for u, s in zip(units, out, strict=True) if s == "train")
            out = [name if u == u_max else s for u, s in zip(units, out, strict=True)]
    if "train" not in out:
        raise InputError("no document is left for the train split; lower val_frac / test_frac")
    return out
