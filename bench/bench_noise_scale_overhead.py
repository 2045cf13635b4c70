"""Cost of measuring the gradient noise scale (goal: <= 3 % of the step time).

Trains one GPT on text:default with the trainer's step (micro-batch forward/backward, clip, AdamW) and
interleaves, step by step in rotating order, four variants in the same process so that all see the same
machine load. Each variant trains its own copy of the model (same initialisation, same batches), so the
meter's hooks stay installed on its copy as in the trainer and never fire in the others:

  A  n_micro micro-batches, no meter            (the reference for the meter's own cost)
  B  n_micro micro-batches, NoiseScaleMeter on every step
  C  one micro-batch, no meter                  (the trainer with the noise scale off)
  D  the trainer's default with the noise scale on: every k-th step (``TrainConfig.noise_scale_every``)
     is split into two micro-batches and measured, the others run one micro-batch and no meter

and prints the overheads as ratios of mean step times, each with a 95 % bootstrap interval (resampling blocks
of k rounds, so that every block holds one measured D step):

  meter          B / A - 1: the measurement's own cost at a given gradient accumulation (the McCandlish "free
                 with accumulation" case: a run that accumulates anyway pays only this, on every step);
  every step     B / C - 1 (when n_micro = 2): measuring on every step, split included;
  default        D / C - 1: what the trainer's default costs against switching the noise scale off.

The goal is judged on the upper end of the interval, so a "met" is a statement at 95 % confidence, not a lucky
draw. Step time is CPU time of this process (``time.process_time``), which other processes on a shared machine
disturb far less than wall time; SCALINGLAB_THREADS=1 (the default here) gives the cleanest figure.

    python bench/bench_noise_scale_overhead.py [--layers 2 --d-model 64 --ctx 64 --batch 16 --micro 8]

Exits non-zero only on a correctness failure (parameters differ with/without measurement), never on a missed
goal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from scalinglab.data import Sampler, ensure_dataset, open_dataset
from scalinglab.model.config import GPTConfig
from scalinglab.model.gpt import GPT
from scalinglab.train.config import TrainConfig
from scalinglab.train.noise_scale import NoiseScaleMeter, _norms

GOAL = 0.03


def step(model, opt, batch, n_micro: int, meter: NoiseScaleMeter | None, params) -> None:
    x, y = torch.from_numpy(batch.x), torch.from_numpy(batch.y)
    if meter is not None:
        meter.begin_step()
    for xm, ym in zip(x.chunk(n_micro), y.chunk(n_micro), strict=True):
        (model(xm, ym, return_logits=False)[1] / n_micro).backward()  # as the trainer calls it
        if meter is not None:
            meter.after_micro_backward(params)
    if meter is not None:
        meter.end_step(params, report=False)  # the trainer reports (syncs) only on log steps
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def overhead(num: np.ndarray, den: np.ndarray, block: int, rng: np.random.Generator) -> tuple[float, ...]:
    """mean(num)/mean(den) - 1 and its 95 % bootstrap interval, resampling blocks of ``block`` rounds (the
    variants of a round stay together)."""
    n = len(num) // block * block
    num, den = num[:n].reshape(-1, block).sum(axis=1), den[:n].reshape(-1, block).sum(axis=1)
    idx = rng.integers(0, len(num), size=(4000, len(num)))
    boot = num[idx].mean(axis=1) / den[idx].mean(axis=1) - 1
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(num.mean() / den.mean() - 1), float(lo), float(hi)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--micro", type=int, default=8,
                    help="sequences per micro-batch in A and B (default: B/2, the trainer's default split)")
    ap.add_argument("--rounds", type=int, default=160, help="rounds of one A, B, C and D step each")
    ap.add_argument("--every", type=int, default=TrainConfig.model_fields["noise_scale_every"].default,
                    help="D measures every k-th step (default: the trainer's)")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("SCALINGLAB_THREADS", "1")))
    ds = open_dataset(ensure_dataset("text:default"))
    cfg = GPTConfig(n_layer=a.layers, d_model=a.d_model, n_head=max(1, a.d_model // 64),
                    vocab_size=int(ds.vocab_size), n_ctx=a.ctx)
    n_micro = a.batch // a.micro
    meter = NoiseScaleMeter(b_micro=a.micro, n_micro=n_micro, seq_len=a.ctx)
    meter_d = NoiseScaleMeter(b_micro=a.batch // 2, n_micro=2, seq_len=a.ctx)
    variants = {"A": (n_micro, None), "B": (n_micro, meter), "C": (1, None), "D": (2, meter_d)}
    n_d = [0]  # D's step counter

    def plan(k: str) -> tuple[int, NoiseScaleMeter | None]:
        if k != "D":
            return variants[k]
        n_d[0] += 1
        return variants["D"] if (n_d[0] - 1) % a.every == 0 else (1, None)

    runs = {}
    for k in variants:
        torch.manual_seed(0)
        model = GPT(cfg)
        params = list(model.parameters())
        runs[k] = (model, torch.optim.AdamW(params, lr=1e-3), params)
    n_params = sum(p.numel() for p in params) / 1e6
    print(f"model {n_params:.2f}M params ({a.layers} layers, d {a.d_model}), batch {a.batch}x{a.ctx} tokens, "
          f"A/B: {n_micro} micro-batches of {a.micro}, threads {torch.get_num_threads()}, {a.rounds} rounds",
          flush=True)
    sampler = Sampler(ds, "train", a.batch, a.ctx, seed=0)
    for _ in range(a.every):  # warm-up (the first metered steps install the hooks)
        batch = sampler.next_batch()
        for k in variants:
            step(*runs[k][:2], batch, *plan(k), runs[k][2])
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(a.rounds):
        batch = sampler.next_batch()  # the same batch for all
        for k in order[r % 4:] + order[: r % 4]:  # rotate, so that no variant always follows the same one
            nm, mt = plan(k)
            model, opt, params = runs[k]
            t0 = time.process_time()
            step(model, opt, batch, nm, mt, params)
            if k == "D" and mt is not None and a.every > 1:
                mt.close()  # as the trainer does: no hooks on the steps in between
            times[k].append(time.process_time() - t0)
    t = {k: np.array(v) for k, v in times.items()}
    for k, label in (("A", f"{n_micro} micro-batches, no meter"), ("B", f"{n_micro} micro-batches, meter"),
                     ("C", "1 micro-batch, no meter"), ("D", f"default: 2 + meter every {a.every}, else 1")):
        print(f"  {k} {label:36s} {t[k].mean() * 1e3:8.2f} ms/step (median {np.median(t[k]) * 1e3:.2f})")
    rng = np.random.default_rng(0)
    lines = [("meter      (B/A)", overhead(t["B"], t["A"], a.every, rng))]
    if n_micro == 2:
        lines.append(("every step (B/C)", overhead(t["B"], t["C"], a.every, rng)))
    lines.append((f"default    (D/C, every {a.every})", overhead(t["D"], t["C"], a.every, rng)))
    for name, (o, lo, hi) in lines:
        verdict = "goal met" if hi <= GOAL else ("goal missed" if lo > GOAL else "not shown either way")
        print(f"overhead {name}: {100 * o:+.2f} %  (95 % interval {100 * lo:+.2f} .. {100 * hi:+.2f} %)  "
              f"goal <= {100 * GOAL:.0f} %: {verdict}", flush=True)

    # the meter's own work, timed alone (low noise): one fused norm pass per micro-batch and one over .grad,
    # stacked into the one tensor a step queues
    grads = [torch.randn_like(p) for p in params]
    reps, t0 = 200, time.process_time()
    for _ in range(reps):
        torch.stack([n for _ in range(n_micro + 1) for n in _norms(grads)])
    direct = (time.process_time() - t0) / reps
    share = 100 * direct / t["A"].mean()
    print(f"meter work alone: {direct * 1e3:.3f} ms per step = {share:.2f} % of step A "
          f"({n_micro + 1} squared-norm passes over {sum(g.numel() for g in grads) / 1e6:.2f}M values)",
          flush=True)
    b_simple = meter.metrics()["gns_b_simple_tokens"]
    print(f"B_simple after {meter.ema.n_updates} measured steps: {b_simple} tokens", flush=True)

    # correctness: the same 4 steps with and without the meter give bit-identical parameters
    final = []
    for measure in (False, True):
        torch.manual_seed(0)
        mdl = GPT(cfg)
        ps = list(mdl.parameters())
        o = torch.optim.AdamW(ps, lr=1e-3)
        mtr = NoiseScaleMeter(b_micro=a.micro, n_micro=n_micro, seq_len=a.ctx) if measure else None
        smp = Sampler(ds, "train", a.batch, a.ctx, seed=1)
        for _ in range(4):
            step(mdl, o, smp.next_batch(), n_micro, mtr, ps)
        final.append(np.concatenate([p.detach().numpy().ravel() for p in ps]))
    same = np.array_equal(*final)
    print(f"parameters identical with and without measurement: {same}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
