"""GPT-3's arithmetic result on a CPU ladder: few-shot 2D+ accuracy against N, same tokens for every size.

Trains a ladder of small GPTs (byte level, the real trainer) on arithmetic-rich text: GPT-3-format
problems ``\\n\\nQ: What is 48 plus 76?\\n\\nA: 124`` (the released files' layout = the ``gpt3`` prompt)
for 2D+ (and/or 2D-), with every problem of the evaluation split left out (checked by the contamination
test: the script exits 1 if any evaluated problem is in the training text). Then evaluates each model on
``arithmetic.2d+`` (and/or ``2d-``) for each K, by exact match of the greedy generation, and prints the
accuracy table against N (non-embedding parameters). Takes ~25 minutes on 2 busy CPU cores.

    python bench/bench_evals_ladder.py [--sizes 1x32,2x64,3x96] [--tokens 3000000] [--limit 500]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def training_text(path: Path, n_docs: int, per_doc: int, excluded: set[str], ops: list[str],
                  seed: int = 0) -> int:
    """Write GPT-3-format two-digit problems (operands U[0, 100), operators ``ops`` among plus/minus), none
    in ``excluded``; returns the size in bytes."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = []
        while len(lines) < per_doc:
            a, b = rng.randrange(100), rng.randrange(100)
            op = rng.choice(ops)
            q = f"{a} {op} {b}"
            if q in excluded:
                continue
            lines.append(f"\n\nQ: What is {q}?\n\nA: {a + b if op == 'plus' else a - b}")
        docs.append("".join(lines))
    text = "\n\f\n".join(docs)
    path.write_text(text)
    return len(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1x32,2x64,3x96", help="LAYERSxD_MODEL, comma-separated")
    ap.add_argument("--tokens", type=int, default=3_000_000, help="training tokens (bytes) per model")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-ctx", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--tasks", default="arithmetic.2d+", help="arithmetic.2d+ and/or arithmetic.2d-")
    ap.add_argument("--shots", default="0,1")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=500, help="evaluated problems per task")
    ap.add_argument("--out", type=Path, default=None, help="folder for data and runs (default: a temp dir)")
    args = ap.parse_args()

    from scalinglab.evals.contamination import NgramIndex
    from scalinglab.evals.loading import set_threads
    from scalinglab.evals.native import ScalingLabLM
    from scalinglab.evals.runner import evaluate
    from scalinglab.evals.tasks import get_task
    from scalinglab.train.trainer import train

    set_threads()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_evals_ladder_"))
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t.strip() for t in args.tasks.split(",")]
    shots = [int(k) for k in args.shots.split(",")]
    excluded = {d["question"] for t in tasks for d in get_task(t).docs("test")}
    data = out / "arith.txt"
    ops = [{"+": "plus", "-": "minus"}[t[-1]] for t in tasks]
    n_bytes = training_text(data, n_docs=4000, per_doc=40, excluded=excluded, ops=ops)
    print(f"training text: {n_bytes / 1e6:.1f} MB of GPT-3-format {'/'.join(ops)} problems, "
          f"{len(excluded)} eval problems excluded; {args.tokens:,} tokens per model, "
          f"batch {args.batch_size} x {args.n_ctx}")
    index = NgramIndex(data.read_text().split("\n\f\n"))

    rows = []
    for spec in args.sizes.split(","):
        n_layer, d_model = (int(x) for x in spec.split("x"))
        cfg = dict(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // 16), n_ctx=args.n_ctx,
                   data=f"text:{data}", tokens=args.tokens, batch_size=args.batch_size, lr=args.lr,
                   device="cpu", noise_scale=False, eval_batches=4)
        t0 = time.time()
        summary = train(cfg, out / f"run_{spec}")
        t_train = time.time() - t0
        lm = ScalingLabLM.from_run(out / f"run_{spec}", batch_size=64)
        row = {"size": spec, "N": summary["params"]["non_embedding"], "val_loss": summary["final_val_loss"],
               "train_s": t_train}
        for t in tasks:
            for r in evaluate(lm, t, shots=shots, seeds=args.seeds, limit=args.limit, contamination=index):
                row[(t, r.shots)] = (r.acc, r.acc_sd)
                if r.contamination:
                    print(f"CORRECTNESS FAILURE: {t}: {100 * r.contamination:.1f}% of evaluated problems "
                          "are in the training text")
                    return 1
        rows.append(row)
        accs = "  ".join(f"{t.split('.')[1]} K={k}: {100 * row[(t, k)][0]:5.1f}%"
                         for t in tasks for k in shots)
        print(f"{spec:>6}  N={row['N']:>9,}  val_loss={row['val_loss']:.4f} nats/byte  "
              f"train {t_train:5.0f} s  {accs}", flush=True)

    print("\nexact-match accuracy (%) vs N, mean ± sd over few-shot seeds; 0 % contamination (checked)")
    head = "".join(f"  {t.split('.')[1]} K={k:<3}" for t in tasks for k in shots)
    print(f"{'size':>6} {'N':>10} {'val loss':>9}{head}")
    for row in rows:
        cells = "".join(f"  {100 * row[(t, k)][0]:5.1f}±{100 * row[(t, k)][1]:3.1f}"
                        for t in tasks for k in shots)
        print(f"{row['size']:>6} {row['N']:>10,} {row['val_loss']:>9.4f}{cells}")
    for t in tasks:
        for k in shots:
            acc = [row[(t, k)][0] for row in rows]
            rises = all(b >= a for a, b in zip(acc, acc[1:], strict=False)) and acc[-1] > acc[0]
            print(f"{t} K={k}: accuracy {'rises' if rises else 'does not rise monotonically'} with N "
                  f"({', '.join(f'{100 * a:.1f}' for a in acc)})")
    print(f"runs and data in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
