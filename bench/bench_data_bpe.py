"""Benchmark: training a byte-level BPE tokenizer (Hugging Face ``tokenizers``) on 10 MB of real text
(goal: under a minute on 2 cores), then encoding it; checks that encode/decode round-trips the text.

Reference measured in the same run: one pure-Python pass counting whitespace-separated words of the same
10 MB (``collections.Counter(text.split())``), so the ratio is comparable across machines and loads.
Exit status 1 only on a round-trip failure.

    SCALINGLAB_THREADS=2 python bench/bench_data_bpe.py [--mb 10] [--vocab 8192]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

from scalinglab.data.text import DOC_SEP, default_corpus, split_documents
from scalinglab.data.tokenizer import BPETokenizer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", os.environ.get("SCALINGLAB_THREADS", "2"))
    text = default_corpus()[0]
    data = text
    while len(data) < args.mb * 1e6:  # the bundled corpus is 9.3 MB: top up with its start
        data += DOC_SEP + text
    data = data[: int(args.mb * 1e6)]
    docs = [d.decode() for d in split_documents(data)]
    t0 = time.perf_counter()
    Counter(data.decode().split())
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok = BPETokenizer.train(docs, args.vocab)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = tok.encode_batch(docs)
    t_enc = time.perf_counter() - t0
    ok = all(tok.decode(e) == d for e, d in zip(enc, docs, strict=True))
    n_tok = sum(map(len, enc))
    print(f"BPE vocab {tok.vocab_size} on {len(data) / 1e6:.1f} MB ({len(docs)} documents), "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}")
    mb = len(data) / 1e6
    print(f"train: {t_train:.1f} s (goal < 60 s); encode: {t_enc:.1f} s = {mb / t_enc:.1f} MB/s, "
          f"{len(data) / n_tok:.2f} bytes/token")
    print(f"reference Counter(text.split()): {t_ref:.2f} s; ratio train / reference: {t_train / t_ref:.1f}")
    print("round trip:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
