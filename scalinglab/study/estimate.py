"""How long a plan's runs take on this machine: a step-time model calibrated by timing a few real steps.

A training step of a model with M FLOPs per token (``flops_per_token(cfg)["matmul"]``: every matmul of the
forward and backward pass, head and attention included) on a batch of B sequences of n_ctx tokens takes

    t_step = t0 + M * B * n_ctx / R

seconds: t0 is the per-step overhead (Python, kernel launches, the optimiser), which dominates tiny
models, and R the FLOP rate the matmuls reach. ``calibrate`` times a few optimiser steps of the plan's
smallest and largest shapes (random tokens, AdamW, the threads a run gets) and solves for t0 and R. A
run's time is its steps times t_step plus
its evaluations (a forward pass, a third of a step, per validation batch); the study's wall time divides
the runs among the executor's parallel slots, longest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepModel:
    """t_step = t0 + flops_per_step / rate (seconds; FLOPs per second)."""

    t0: float
    rate: float
    threads: int
    source: str

    def step_s(self, flops_per_step: float) -> float:
        return self.t0 + flops_per_step / self.rate


def _probe(cfg_dict: dict[str, Any], vocab_size: int, threads: int, steps: int = 8) -> tuple[float, float]:
    """(FLOPs per step, seconds per step) of a few AdamW steps of one shape on random tokens."""
    import torch

    from scalinglab.model.counting import flops_per_token
    from scalinglab.model.lstm import build_model
    from scalinglab.train.config import TrainConfig

    tc = TrainConfig.make(**{k: v for k, v in cfg_dict.items() if k in TrainConfig.model_fields})
    gcfg = tc.arch_config(vocab_size)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        model = build_model(gcfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randint(0, vocab_size, (tc.batch_size, tc.n_ctx), generator=g)
        y = torch.randint(0, vocab_size, (tc.batch_size, tc.n_ctx), generator=g)
        times = []
        for i in range(steps + 2):
            t = time.perf_counter()
            _, loss = model(x, y, return_logits=False)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 2:  # the first steps allocate
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    times.sort()
    per_step = times[len(times) // 2]
    return float(flops_per_token(gcfg)["matmul"]) * tc.batch_size * tc.n_ctx, per_step


def calibrate(configs: list[dict[str, Any]], vocab_size: int, threads: int) -> StepModel:
    """The step-time model from timing the cheapest and the most expensive of ``configs`` (trainer config
    dicts) on this machine, now (a loaded machine gives a longer estimate, as it will train slower)."""
    from scalinglab.model.counting import flops_per_token
    from scalinglab.train.config import TrainConfig

    def cost(c):
        tc = TrainConfig.make(**{k: v for k, v in c.items() if k in TrainConfig.model_fields})
        return flops_per_token(tc.arch_config(vocab_size))["matmul"] * tc.batch_size * tc.n_ctx

    ordered = sorted(configs, key=cost)
    picks = [ordered[0], ordered[-1]] if len(ordered) > 1 else ordered
    pts = [_probe(c, vocab_size, threads) for c in picks]
    if len(pts) == 2 and pts[1][0] > pts[0][0] * 1.5 and pts[1][1] > pts[0][1]:
        (f1, t1), (f2, t2) = pts
        rate = (f2 - f1) / (t2 - t1)
        t0 = max(t1 - f1 / rate, 0.0)
    else:  # one shape (or timings too noisy to separate): all of the step time is FLOPs
        f1, t1 = pts[-1]
        t0, rate = 0.0, f1 / t1
    return StepModel(t0, rate, threads, "timed now")


def run_seconds(cfg: dict[str, Any], vocab_size: int, model: StepModel) -> float:
    """Estimated seconds of one run: steps x t_step plus its evaluations."""
    from scalinglab.model.counting import flops_per_token
    from scalinglab.train.config import TrainConfig

    tc = TrainConfig.make(**{k: v for k, v in cfg.items() if k in TrainConfig.model_fields})
    m = flops_per_token(tc.arch_config(vocab_size))["matmul"]
    tokens_per_step = tc.batch_size * tc.n_ctx
    steps = tc.planned_steps
    train = steps * model.step_s(m * tokens_per_step)
    evals = steps / tc.eval_every if tc.eval_every else 10
    fwd = model.step_s(m * tc.batch_size * tc.n_ctx / 3)  # a forward pass: a third of the step's FLOPs
    return float(train + (evals + 1) * tc.eval_batches * fwd)


def wall_seconds(seconds: list[float], slots: int) -> float:
    """Wall time of runs of these durations on ``slots`` parallel workers (longest first, greedy)."""
    loads = [0.0] * max(1, slots)
    for s in sorted(seconds, reverse=True):
        i = loads.index(min(loads))
        loads[i] += s
    return max(loads)
