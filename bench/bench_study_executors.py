"""Benchmark: a small ladder trained sequentially (1 worker x all cores) vs a process pool (k x 1 thread).

    python bench/bench_study_executors.py [--runs 4] [--tokens 60000]

Prints the wall time of each mode and their ratio (same machine, same run), and the final losses of both
(they must agree: the executor decides where a run trains, never what it computes). Exits non-zero only
when a run fails or the losses disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from scalinglab.study.plan import make_runs, parse_plan
from scalinglab.study.runner import data_identity, execute, register
from scalinglab.study.store import Store


def _plan(executor: dict, runs: int, tokens: int):
    shapes = [{"n_layer": 1, "d_model": 24}, {"n_layer": 2, "d_model": 32}, {"n_layer": 2, "d_model": 48}]
    return parse_plan(
        {
            "name": "bench",
            "data": {"spec": "text:default", "n_ctx": 64},
            "model": {"shapes": shapes[: max(1, min(3, runs))], "head_dim": 16},
            "tokens": {"absolute": [tokens]},
            "seeds": {"seeds": list(range(max(1, -(-runs // 3))))},
            "batch": {"size": 16},
            "train": {"eval_batches": 4},
            "executor": executor,
        }
    )


def _time(executor: dict, runs: int, tokens: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as d:
        plan = _plan(executor, runs, tokens)
        vocab, _ = data_identity(plan.data.spec)
        store = Store(d)
        specs = make_runs(plan, vocab)[:runs]
        ids = register(store, Path(d), plan, specs, vocab)
        t0 = time.perf_counter()
        out = execute(store, Path(d), plan, ids, lambda s: None)
        wall = time.perf_counter() - t0
        if out.get("done") != len(ids):
            print(f"FAIL: {executor}: {out}", file=sys.stderr)
            sys.exit(1)
        r = store.runs_frame()
        return wall, dict(zip(r["run_id"], r["final_val_loss"], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=60_000)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    seq_wall, seq = _time({"kind": "local", "workers": 0, "threads_per_run": cores}, a.runs, a.tokens)
    pool_wall, pool = _time({"kind": "local", "workers": cores, "threads_per_run": 1}, a.runs, a.tokens)
    print(f"{a.runs} runs x {a.tokens} tokens on {cores} cores")
    print(f"sequential ({cores} threads/run): {seq_wall:.1f} s")
    print(f"process pool ({cores} workers x 1 thread): {pool_wall:.1f} s")
    print(f"ratio sequential / pool: {seq_wall / pool_wall:.2f} (> 1: the pool is faster)")
    bad = [k for k in seq if abs(seq[k] - pool[k]) > 1e-3 * abs(seq[k])]
    for k in seq:
        print(f"  {k}: val loss sequential {seq[k]:.5f}  pool {pool[k]:.5f}")
    if bad:
        print(f"FAIL: losses differ between executors for {bad}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
