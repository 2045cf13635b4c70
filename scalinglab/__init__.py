"""scalinglab: empirical neural scaling-law science.

The package mirrors the five capabilities: ``model``/``train``/``data`` train a ladder, ``train.noise_scale``
measures the gradient noise scale, ``laws`` fits the laws (pure maths, never imports torch), ``evals``
runs few-shot evaluation, ``report`` draws the figures; ``study`` ties them into one resumable job.

The top-level names are imported lazily so that ``import scalinglab`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "fit": ("scalinglab.laws.fit", "fit"),
    "backtest": ("scalinglab.laws.fit", "backtest"),
    "allocate": ("scalinglab.laws.allocate", "allocate"),
    "presets": ("scalinglab.laws", "presets"),
    "forms": ("scalinglab.laws", "forms"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'scalinglab' has no attribute {name!r}")
