"""Learning-rate schedules as pure functions of the step (no torch): linear warmup, then cosine decay to a
floor
(GPT-3), constant, or warmup-stable-decay (WSD)."""

from __future__ import annotations

import math

from scalinglab.errors import ConfigError

SCHEDULES = ("cosine", "constant", "wsd")


def lr_at(
    step: int,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> float:
    """LR used for optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup: peak * (step + 1) / warmup_steps for step < warmup_steps. Then
    ``cosine``: floor + (peak - floor) (1 + cos(pi p)) / 2 with p the fraction of the post-warmup steps done,
    reaching floor = min_lr_ratio * peak at the last step; ``constant``: peak; ``wsd``: peak until the last
    ``decay_frac`` of the steps, then linear to the floor.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    floor = min_lr_ratio * peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = total_steps - 1 - warmup_steps  # post-warmup steps after the first; 0: one step, the last
        p = 1.0 if span <= 0 else min(1.0, (step - warmup_steps) / span)
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    decay_steps = max(1, round(decay_frac * total_steps))
    start = max(warmup_steps, total_steps - decay_steps)
    if step < start:
        return peak
    p = min(1.0, (step - start + 1) / max(1, total_steps - start))
    return peak + (floor - peak) * p
