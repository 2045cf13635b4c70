"""The final validation's extras: the loss at every position of the context, and extra evaluation sets.

Kaplan et al. 2020 (Fig. 20, App. D.5) plot the loss per token position t = 1..n_ctx (later tokens, more
context, lower loss, following L(t) = L_inf + (t/t_c)^-a); Fig. 8 the loss on other text distributions. After
its last step a run evaluates both:

- ``val``: the validation batches of ``val_loss`` (the same windows, so the per-position mean weighted by the
  counts is the final ``val_loss`` up to float rounding), as per-position sums and counts;
- each ``eval_sets`` spec (``scalinglab.data.evalsets``), encoded with the run's tokenizer, the same number
  of windows (``eval_batches`` x ``batch_size``, spread over the set): loss, bits per byte, per position.

Losses in nats/token; position t = 1 is the first predicted token (it sees one token of context). Results go
into the run summary under ``val_loss_by_position``, ``val_tokens_by_position`` and ``eval_sets``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LOGIT_BUDGET = 1 << 25  # logits held at once when forming per-token losses (128 MiB of fp32)


@dataclass
class PositionLoss:
    """Per-position loss sums (nats) and target counts over some windows of n_ctx tokens."""

    sums: np.ndarray  # float64 [n_ctx]
    counts: np.ndarray  # float64 [n_ctx]

    @property
    def mean(self) -> float | None:
        n = float(self.counts.sum())
        return float(self.sums.sum() / n) if n > 0 else None

    @property
    def by_position(self) -> list[float | None]:
        """Mean loss at each position (nats/token); None where no target was counted."""
        return [float(s / c) if c > 0 else None for s, c in zip(self.sums, self.counts, strict=True)]

    def to_dict(self, bytes_per_token: float | None = None) -> dict:
        loss = self.mean
        bpb = None if (loss is None or not bytes_per_token) else loss / math.log(2) / bytes_per_token
        return {"loss": loss, "bpb": bpb, "tokens": int(self.counts.sum()),
                "loss_by_position": self.by_position, "tokens_by_position": [int(c) for c in self.counts]}


@torch.no_grad()
def position_losses(model: torch.nn.Module, batches, micro: int, device: torch.device, amp: bool,
                    n_ctx: int) -> PositionLoss:
    """Sum the per-token cross-entropy of ``model`` over ``batches`` (``data.Batch``) by position."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(n_ctx, dtype=torch.float64)
    counts = torch.zeros(n_ctx, dtype=torch.float64)
    try:
        for b in batches:
            for i in range(0, len(b.x), micro):
                x = torch.from_numpy(np.asarray(b.x[i : i + micro])).to(device)
                y = torch.from_numpy(np.asarray(b.y[i : i + micro])).to(device)
                m = None if b.mask is None else torch.from_numpy(np.asarray(b.mask[i : i + micro]))
                rows = max(1, LOGIT_BUDGET // (x.size(1) * model.cfg.vocab_size))
                for r in range(0, len(x), rows):
                    with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                        logits, _ = model(x[r : r + rows])
                    per = F.cross_entropy(logits.float().flatten(0, 1), y[r : r + rows].flatten(),
                                          reduction="none").view(-1, x.size(1)).double().cpu()
                    w = torch.ones_like(per) if m is None else m[r : r + rows].double()
                    t = per.size(1)
                    sums[:t] += (per * w).sum(0)
                    counts[:t] += w.sum(0)
    finally:
        model.train(was_training)
    return PositionLoss(sums.numpy(), counts.numpy())


def final_evaluation(model: torch.nn.Module, ds, *, batch_size: int, n_ctx: int, eval_batches: int,
                     micro: int, device: torch.device, amp: bool, eval_sets: list[str]) -> dict:
    """The summary keys of the final validation's extras (see the module docstring)."""
    import scalinglab.data as data
    from scalinglab.data.evalsets import load_eval_set

    val = position_losses(model, data.eval_batches(ds, "val", batch_size, n_ctx, eval_batches), micro,
                          device, amp, n_ctx)
    out: dict = {"val_loss_by_position": val.by_position,
                 "val_tokens_by_position": [int(c) for c in val.counts], "eval_sets": {}}
    for spec in eval_sets:
        stream = load_eval_set(spec, ds)
        batches = data.token_batches(stream.tokens, batch_size, n_ctx, eval_batches)
        res = position_losses(model, batches, micro, device, amp, n_ctx)
        out["eval_sets"][spec] = {**res.to_dict(stream.bytes_per_token), "documents": stream.documents,
                                  "set_tokens": int(len(stream.tokens))}
    return out


def evaluate_run(run_dir: str | Path, eval_sets: list[str], device: str = "cpu") -> dict:
    """``final_evaluation`` of a finished run folder from its checkpoint (with its own batch size, context and
    ``eval_batches``): for sets a study adds after the run trained, or runs older than per-position
    records."""
    from scalinglab.data import ensure_dataset, open_dataset
    from scalinglab.train.checkpoint import load_model

    model, meta = load_model(run_dir, device=device)
    tc = meta["train_config"]
    path = meta.get("dataset_path")
    ds = open_dataset(path if path and Path(path).is_dir() else ensure_dataset(meta["data"]))
    b = int(tc["batch_size"])
    return final_evaluation(model, ds, batch_size=b, n_ctx=int(tc["n_ctx"]),
                            eval_batches=int(tc["eval_batches"]), micro=int(tc.get("micro_batch_size") or b),
                            device=torch.device(device), amp=False, eval_sets=list(eval_sets))
