"""Open a model for evaluation from a path: a scalinglab run folder (``ckpt.pt``) or a local HF directory."""

from __future__ import annotations

import os
from pathlib import Path

from scalinglab.errors import InputError
from scalinglab.evals.lm import TokenLM


def set_threads() -> None:
    """Apply ``SCALINGLAB_THREADS`` (torch intra-op threads), as the trainer does."""
    n = os.environ.get("SCALINGLAB_THREADS")
    if n:
        import torch

        torch.set_num_threads(max(1, int(n)))


def load_lm(path: str | Path, *, batch_size: int = 16, device: str = "cpu",
            dtype: str = "float32") -> TokenLM:
    """``ScalingLabLM`` for a run folder or ``.pt`` checkpoint; ``HFLM`` for a folder with ``config.json``."""
    p = Path(path).expanduser()
    if (p / "ckpt.pt").is_file() or (p.is_file() and p.suffix == ".pt"):
        from scalinglab.evals.native import ScalingLabLM

        return ScalingLabLM.from_run(p, batch_size=batch_size, device=device)
    if (p / "config.json").is_file():
        from scalinglab.evals.hf import HFLM

        return HFLM.from_pretrained(p, batch_size=batch_size, device=device, dtype=dtype)
    raise InputError(f"{p}: not a scalinglab run (no ckpt.pt) nor a Hugging Face model directory "
                     "(no config.json)")
