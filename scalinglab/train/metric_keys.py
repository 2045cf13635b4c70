"""The keys of a trainer metrics row (``metrics.jsonl``, one row per log step), torch-free.

The trainer writes them and the study store keeps one column per key; units: tokens, FLOPs (cumulative, one
column per counting convention), losses in nats/token, bits per byte, tokens/s, B_simple in tokens.
"""

from __future__ import annotations

from scalinglab.model.counting import FLOP_CONVENTIONS

VALUE_KEYS = (
    "tokens",
    *(f"flops_{c}" for c in FLOP_CONVENTIONS),
    "train_loss",
    "val_loss",
    "val_bpb",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "mfu",
    "gns_g2",
    "gns_trace",
    "gns_b_simple_tokens",
)
METRIC_KEYS = ("step", *VALUE_KEYS)
