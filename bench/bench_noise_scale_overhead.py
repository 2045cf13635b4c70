"""Cost of measuring the gradient noise scale on every step (goal: <= 3 % of the step time).

Trains one GPT on text:default with gradient accumulation, the trainer's step (micro-batch forward/backward,
clip, AdamW), and alternates blocks of steps with and without the NoiseScaleMeter in the same process
(hooks removed between blocks), so both see the same machine load. Prints the median step times, the
overhead in % and, as a correctness check, that measurement leaves the training trajectory unchanged.

    python bench/bench_noise_scale_overhead.py [--layers 4 --d-model 128 --ctx 128 --batch 16 --micro 4]

Exits non-zero only on a correctness failure (parameters differ with/without measurement), never on a
missed goal. CPU timings on a shared machine are noisy; the interleaving and medians are what make the
ratio meaningful.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from scalinglab.data import Sampler, ensure_dataset, open_dataset
from scalinglab.model.config import GPTConfig
from scalinglab.model.gpt import GPT
from scalinglab.train.noise_scale import NoiseScaleMeter, _sq_norm


def step(model, opt, batch, n_micro: int, meter: NoiseScaleMeter | None, params) -> None:
    x, y = torch.from_numpy(batch.x), torch.from_numpy(batch.y)
    if meter is not None:
        meter.begin_step()
    for xm, ym in zip(x.chunk(n_micro), y.chunk(n_micro), strict=True):
        (model(xm, ym)[1] / n_micro).backward()
        if meter is not None:
            meter.after_micro_backward(params)
    if meter is not None:
        meter.end_step(params, report=False)  # the trainer reports (syncs) only on log steps
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=8, help="pairs of (with, without) blocks")
    ap.add_argument("--steps-per-block", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("SCALINGLAB_THREADS", "2")))
    ds = open_dataset(ensure_dataset("text:default"))
    cfg = GPTConfig(n_layer=a.layers, d_model=a.d_model, n_head=max(1, a.d_model // 64),
                    vocab_size=int(ds.vocab_size), n_ctx=a.ctx)
    n_micro = a.batch // a.micro
    torch.manual_seed(0)
    model = GPT(cfg)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    sampler = Sampler(ds, "train", a.batch, a.ctx, seed=0)
    meter = NoiseScaleMeter(b_micro=a.micro, n_micro=n_micro, seq_len=a.ctx)
    print(f"model {sum(p.numel() for p in params) / 1e6:.2f}M params, batch {a.batch}x{a.ctx} tokens, "
          f"{n_micro} micro-batches of {a.micro}, threads {torch.get_num_threads()}", flush=True)
    for _ in range(2):  # warm-up
        step(model, opt, sampler.next_batch(), n_micro, None, params)
    times: dict[bool, list[float]] = {True: [], False: []}
    block_means: list[float] = []
    for blk in range(2 * a.blocks):
        measure = (blk % 4) in (0, 3)  # ABBA order cancels slow drifts in machine load
        for _ in range(a.steps_per_block):
            batch = sampler.next_batch()
            t0 = time.perf_counter()
            step(model, opt, batch, n_micro, meter if measure else None, params)
            times[measure].append(time.perf_counter() - t0)
        block_means.append(statistics.mean(times[measure][-a.steps_per_block:]))
        if measure:
            meter.close()  # no hooks during the reference blocks
        if blk % 4 == 3:
            on, off = statistics.median(times[True]), statistics.median(times[False])
            print(f"  blocks {blk + 1}/{2 * a.blocks}: median with {on * 1e3:.1f} ms, "
                  f"without {off * 1e3:.1f} ms", flush=True)
    m = meter.metrics()
    t_on, t_off = statistics.median(times[True]), statistics.median(times[False])
    print(f"step time without measurement: {t_off * 1e3:8.2f} ms (median of {len(times[False])})", flush=True)
    print(f"step time with measurement:    {t_on * 1e3:8.2f} ms (median of {len(times[True])})", flush=True)
    quartets = np.array(block_means[: len(block_means) // 4 * 4]).reshape(-1, 4)  # blocks A B B A
    paired = np.median((quartets[:, 0] + quartets[:, 3]) / (quartets[:, 1] + quartets[:, 2]))
    print(f"overhead: {100 * (t_on / t_off - 1):+.2f} % from the medians, {100 * (paired - 1):+.2f} % "
          f"paired (median over {len(quartets)} ABBA groups)  (goal <= 3 %)", flush=True)
    # the meter's own work, timed alone (low noise): one fp32 squared norm of every gradient per micro-batch
    # plus one of the accumulated gradient, and the step's bookkeeping
    step(model, opt, sampler.next_batch(), n_micro, None, params)
    grads = [torch.randn_like(p) for p in params]
    n_vals = sum(g.numel() for g in grads) / 1e6
    reps, t0 = 20, time.perf_counter()
    for _ in range(reps):
        tot = [torch.stack([_sq_norm(g) for g in grads]).sum() for _ in range(n_micro + 1)]
        float(torch.stack(tot).sum())
    direct = (time.perf_counter() - t0) / reps
    print(f"meter work alone: {direct * 1e3:.2f} ms per step = {100 * direct / t_off:.2f} % of the step "
          f"({n_micro + 1} squared-norm passes over {n_vals:.2f}M gradient values)",
          flush=True)
    print(f"B_simple after {meter.ema.n_updates} measured steps: {m['gns_b_simple_tokens']} tokens",
          flush=True)

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
