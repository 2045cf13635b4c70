"""Benchmark: byte tokenising + sharding of a ~64 MB folder of real text (goal >= 50 MB/s on 2 cores).

Builds a folder of files from the bundled corpus, runs ``prepare("text:FOLDER")`` (read, split into documents,
hash-split, tokenise, write shards) and compares its throughput with a plain copy of the same files measured
in the same run (the reference: disk + memcpy speed on this machine right now).
Exit status 1 only if the shards do not reproduce the input text.

    SCALINGLAB_THREADS=2 python bench/bench_data_tokenize.py [--mb 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scalinglab.data import open_dataset, prepare
from scalinglab.data.text import DOC_SEP, default_corpus, load_documents


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=64.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    text = default_corpus()[0].replace(DOC_SEP, b"\n\n\n")  # plain files: documents = packed paragraphs
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        total, i = 0, 0
        while total < args.mb * 1e6:  # 8 MB files; each copy tagged so that documents differ between files
            chunk = f"Copy {i}.\n\n".encode() + text[:8_000_000]
            (src / f"part{i:03d}.txt").write_bytes(chunk.replace(b"LORD", f"LORD{i}".encode()))
            total += len(chunk)
            i += 1
        t_copy, t_prep, c_prep = [], [], []
        for r in range(args.repeats):  # best of N: the machine is shared, the minimum is the least disturbed
            t0 = time.perf_counter()
            shutil.copytree(src, Path(tmp) / f"copy{r}")
            t_copy.append(time.perf_counter() - t0)
            t0, c0 = time.perf_counter(), time.process_time()
            info = prepare(f"text:{src}", Path(tmp) / f"ds{r}")
            t_prep.append(time.perf_counter() - t0)
            c_prep.append(time.process_time() - c0)
            shutil.rmtree(Path(tmp) / f"copy{r}")
        t_copy, t_prep, c_prep = min(t_copy), min(t_prep), min(c_prep)
        ds = open_dataset(info.path)
        docs = load_documents(str(src))[0]
        n_tok = sum(info.tokens.values())
        ok = n_tok == sum(map(len, docs)) + len(DOC_SEP) * (len(docs) - 3)
        val = np.asarray(ds.tokens("val")).tobytes()
        ok = ok and set(val.split(DOC_SEP)) <= set(docs)
    mb = total / 1e6
    print(f"input {mb:.1f} MB in {i} files, {len(docs)} documents, tokens {info.tokens}")
    threads = os.environ.get("SCALINGLAB_THREADS") or os.cpu_count()
    print(f"threads {threads}, load average {os.getloadavg()[0]:.1f} (best of {args.repeats})")
    print(f"prepare (byte tokenise + split + shard): {t_prep:.2f} s = {mb / t_prep:.1f} MB/s (goal >= 50)")
    print(f"CPU time of prepare (all threads): {c_prep:.2f} s = {mb / c_prep:.1f} MB per CPU-second "
          "(the wall-clock rate an idle core would give)")
    print(f"reference copytree of the same files:    {t_copy:.2f} s = {mb / t_copy:.1f} MB/s")
    print(f"ratio prepare / copy throughput: {t_copy / t_prep:.3f}")
    print("correctness:", "ok (token count and val documents match the input)" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
