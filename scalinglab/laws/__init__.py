"""Scaling laws: forms, fitting, published presets, compute-optimal allocation, noise-scale maths.

Pure numpy/scipy (never torch). Submodules load on first use so that ``import scalinglab.laws`` is cheap:
``forms`` (the law shapes), ``fit`` (``fit``, ``backtest``, ``FitResult``), ``presets`` (published laws),
``allocate`` (``allocate``, ``isoflop``, ``frontier``, ``approach1``), ``batch`` (gradient noise scale),
``context`` (loss by position in the context), ``transfer`` (offset to another distribution), ``shape``
(loss vs model shape at fixed N).
"""

from __future__ import annotations

import importlib

_SUBMODULES = (
    "forms", "fit", "presets", "allocate", "batch", "optim", "data", "context", "transfer", "shape"
)
_NAMES = {
    "get_form": "forms",
    "FitResult": "fit",
    "backtest": "fit",
    "get_preset": "presets",
    "PRESETS": "presets",
    "Allocation": "allocate",
    "isoflop": "allocate",
    "frontier": "allocate",
    "approach1": "allocate",
    "noise_scale_estimates": "batch",
    "NoiseScaleEMA": "batch",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"scalinglab.laws.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"scalinglab.laws.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'scalinglab.laws' has no attribute {name!r}")


__all__ = list(_SUBMODULES) + list(_NAMES)
