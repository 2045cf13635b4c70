"""Deterministic train / val / test assignment by document hash (stable across runs and machines).

A document goes to a split by the first 8 bytes of the sha256 of its bytes read as a number u in [0, 1):
u < test_frac -> test, u < test_frac + val_frac -> val, else train. Identical documents therefore always land
in the same split, so a duplicated passage never leaks from train into val or test. When val or test would be
empty (small corpora) the train documents with the largest u move there, which is just as deterministic.
"""

from __future__ import annotations

import hashlib

from scalinglab.errors import InputError

SPLITS = ("train", "val", "test")


def doc_unit(doc: bytes) -> float:
    """The document's hash as a number in [0, 1)."""
    return int.from_bytes(hashlib.sha256(doc).digest()[:8], "big") / 2.0**64


def assign_splits(docs: list[bytes], val_frac: float, test_frac: float) -> list[str]:
    """The split name of every document; val and test are never empty (needs >= 3 distinct documents)."""
    if not (0 < val_frac < 0.5 and 0 < test_frac < 0.5):
        raise InputError(f"val_frac={val_frac} and test_frac={test_frac} must each lie in (0, 0.5)")
    if len(set(docs)) < 3:
        raise InputError(f"the corpus has {len(set(docs))} distinct document(s); a train/val/test split "
                         "needs at least 3 (add text, or use a larger corpus)")
    units = [doc_unit(d) for d in docs]
    out = ["test" if u < test_frac else "val" if u < test_frac + val_frac else "train" for u in units]
    for name in ("test", "val"):
        if name not in out:
            # move the distinct train document with the largest hash (all its copies) to the empty split
            u_max = max(u for u, s in zip(units, out) if s == "train")
            out = [name if u == u_max else s for u, s in zip(units, out)]
    if "train" not in out:
        raise InputError("no document is left for the train split; lower val_frac / test_frac")
    return out
