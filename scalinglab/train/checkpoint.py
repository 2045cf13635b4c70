"""Atomic run-folder files (temporary file, fsync, rename) and loading a trained model back.

``ckpt.pt`` holds: model weights, optimiser state, step and tokens done, wall time, the data cursor
(``Sampler.state_dict()``), every RNG state (python, numpy, torch CPU and CUDA), the noise-scale meter
state, the training config and ``meta`` (model shape, data spec and dataset facts for evals).
A process killed at any point leaves either the previous or the new complete file.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from scalinglab.errors import InputError
from scalinglab.io import atomic_write_bytes, atomic_write_json  # noqa: F401  (re-exported)

CKPT_NAME = "ckpt.pt"


def rng_state() -> dict:
    """Every RNG state the process holds (python, numpy, torch CPU, all CUDA devices)."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` into memory, then an atomic write (never a half-written checkpoint)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CKPT_NAME
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ck, dict) or not {"model", "meta", "step", "config"} <= set(ck):
        raise InputError(f"{path}: not a scalinglab checkpoint (expected model, meta, step and config)")
    return ck


def load_model(run_dir_or_ckpt: str | Path, device: str | torch.device = "cpu"):
    """Load a trained model for evaluation: ``(model in eval mode, meta)``: a ``GPT``, or an ``LSTMLM`` for an
    LSTM run.

    ``meta`` has ``model`` (GPTConfig or LSTMConfig dict), ``data`` (the spec trained on), ``dataset_path``,
    ``vocab_size``,
    ``fingerprint``, ``domain``, ``bytes_per_token``, ``step``, ``tokens``, ``train_config``. Tokenizer:
    ``scalinglab.data.open_dataset(meta["dataset_path"]).tokenizer`` (or ``ensure_dataset(meta["data"])``).
    """
    from scalinglab.model.config import model_config_from_dict
    from scalinglab.model.lstm import build_model

    ck = load_checkpoint(Path(run_dir_or_ckpt), map_location=device)
    meta = dict(ck["meta"])
    meta.update(step=ck["step"], tokens=ck["tokens"], train_config=ck["config"])
    model = build_model(model_config_from_dict(meta["model"]))
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return model, meta
