"""A model shape for a target parameter count: (n_layer, d_model, n_head) under the aspect rule, with its
exact count. The one shape search of the project (study plans size their ladders with it, ``allocate --shape``
turns N_opt into a model to build, ``config_for_target`` sizes a GPT). Pure Python (no torch).

The rule (Kaplan et al. 2020 sec. 3.1: loss depends weakly on shape at fixed N over a wide range of
aspect ratios d_model / n_layer): start from n_layer = round((N / (12 aspect^2))^(1/3)), try two layers
either side, and for each the multiples of ``head_dim`` around d_model = sqrt(N / (12 n_layer)) (below
4 head_dim also multiples of 4 that the head count divides, so tiny targets keep distinct sizes); keep the
shape whose exact count (under the chosen convention) is nearest to N in log, plus 0.05 x |log(aspect /
target aspect)| (a tie-break) and, more than 4x off the aspect ratio, the excess in full.
n_head = d_model // head_dim (at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scalinglab.errors import ConfigError

ARCHS = ("gpt", "llama")


@dataclass
class ShapeSuggestion:
    """A shape for ``target`` parameters: its exact count ``n_params`` under ``convention``, every count
    (``counts``), the relative miss ``rel_error`` = n_params / target - 1 and the aspect d_model / n_layer."""

    target: float
    n_layer: int
    d_model: int
    n_head: int
    n_params: int
    convention: str
    arch: str
    config: Any
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rel_error(self) -> float:
        return self.n_params / self.target - 1.0

    @property
    def aspect(self) -> float:
        return self.d_model / self.n_layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "n_layer": self.n_layer,
            "d_model": self.d_model,
            "n_head": self.n_head,
            "n_params": self.n_params,
            "convention": self.convention,
            "arch": self.arch,
            "rel_error": self.rel_error,
            "aspect": self.aspect,
            "counts": dict(self.counts),
            "config": self.config.to_dict(),
        }


def build_config(
    arch: str, n_layer: int, d_model: int, n_head: int, *, vocab_size: int, n_ctx: int, **kw: Any
):
    """The GPTConfig (``gpt``: the trainer's model) or DecoderConfig (``llama``) of a shape."""
    if arch == "gpt":
        from scalinglab.model.config import GPTConfig

        return GPTConfig(
            n_layer=n_layer, d_model=d_model, n_head=n_head, vocab_size=vocab_size, n_ctx=n_ctx, **kw
        )
    if arch == "llama":
        from scalinglab.model.arch import DecoderConfig

        return DecoderConfig(
            n_layer=n_layer, d_model=d_model, n_head=n_head, vocab_size=vocab_size, n_ctx=n_ctx, **kw
        )
    raise ConfigError(f"arch {arch!r}: use one of {', '.join(ARCHS)}")


def suggest_shape(
    n_target: float,
    *,
    aspect: float = 64.0,
    head_dim: int = 64,
    params: str = "kaplan",
    vocab_size: int = 50257,
    n_ctx: int = 1024,
    arch: str = "gpt",
    **config: Any,
) -> ShapeSuggestion:
    """The shape whose ``params`` count (``kaplan``, ``non_embedding``, ``total``, ...; see
    ``scalinglab.model.counting``) is nearest to ``n_target`` parameters under the aspect rule (module
    docstring). ``config``: further fields of the built config (``tied``, ``n_kv_head``, ...)."""
    from scalinglab.model.counting import count_params

    if not (n_target > 0 and math.isfinite(n_target) and aspect > 0 and head_dim >= 1):
        raise ConfigError(
            f"shape search: need N > 0, aspect > 0 and head_dim >= 1 (got {n_target}, {aspect}, {head_dim})"
        )
    if arch not in ARCHS:
        raise ConfigError(f"arch {arch!r}: use one of {', '.join(ARCHS)}")
    r, h = float(aspect), int(head_dim)
    best: tuple[float, int, int, Any, dict] | None = None
    guess = max(1, round((n_target / (12 * r * r)) ** (1 / 3)))
    for n_layer in range(max(1, guess - 2), guess + 3):
        d0 = math.sqrt(max(n_target, 1.0) / (12 * n_layer))
        cands = {max(h, round(d0 / h) * h), max(h, math.floor(d0 / h) * h), max(h, math.ceil(d0 / h) * h)}
        if d0 < 4 * h:  # tiny models: multiples of 4 too, so that small targets keep distinct sizes
            cands |= {max(4, q * 4) for q in (math.floor(d0 / 4), math.ceil(d0 / 4))}
        for d in sorted(cands):
            if d % max(1, d // h):  # the head count d // h must divide d_model
                continue
            try:
                cfg = build_config(
                    arch, n_layer, d, max(1, d // h), vocab_size=vocab_size, n_ctx=n_ctx, **config
                )
            except ConfigError:  # e.g. n_kv_head does not divide this n_head
                continue
            counts = count_params(cfg)
            if params not in counts:
                raise ConfigError(f"parameter convention {params!r}: one of {', '.join(counts)}")
            off = abs(math.log((d / n_layer) / r))
            err = abs(math.log(counts[params] / n_target)) + 0.05 * off + max(0.0, off - math.log(4.0))
            if best is None or err < best[0]:
                best = (err, n_layer, d, cfg, counts)
    if best is None:
        raise ConfigError(f"no shape near N = {n_target:g} satisfies the config {config}")
    _, n_layer, d, cfg, counts = best
    return ShapeSuggestion(
        target=float(n_target),
        n_layer=n_layer,
        d_model=d,
        n_head=cfg.n_head,
        n_params=int(counts[params]),
        convention=params,
        arch=arch,
        config=cfg,
        counts=counts,
    )
