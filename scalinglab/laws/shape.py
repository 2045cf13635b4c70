"""Shape sensitivity (Kaplan et al. 2020 Fig. 5): the loss increase of each shape over the best one at fixed
N and D, and the range of a shape ratio (aspect d_model/n_layer, d_ff/d_model, d_model/n_head) within a
tolerance of the best. Pure numpy.

The range is read off the measured points, not a fitted curve: starting at the best ratio it extends over
every neighbour (in ratio order) whose increase is at most ``tolerance``; past the last such point it
continues to where the straight line in (log ratio, increase) to the first point above the tolerance crosses
it. When the range reaches a tested end it is *open* there (the true range may be wider than tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalinglab.errors import InputError


@dataclass
class ShapeSensitivity:
    """``increase[i]`` = loss[i] / best - 1 (a fraction) at ``x`` sorted ascending; [lo, hi] the range within
    ``tolerance``; ``lo_open`` / ``hi_open``: the range reaches the smallest / largest tested ratio."""

    x: np.ndarray
    loss: np.ndarray
    increase: np.ndarray
    best_x: float
    best_loss: float
    lo: float
    hi: float
    lo_open: bool
    hi_open: bool
    tolerance: float

    @property
    def decades(self) -> float:
        """Width of the range in decades of the ratio."""
        return float(np.log10(self.hi / self.lo))

    def to_dict(self) -> dict:
        return {"x": self.x.tolist(), "loss": self.loss.tolist(), "increase": self.increase.tolist(),
                "best_x": self.best_x, "best_loss": self.best_loss, "lo": self.lo, "hi": self.hi,
                "lo_open": self.lo_open, "hi_open": self.hi_open, "tolerance": self.tolerance}


def shape_sensitivity(x, loss, tolerance: float = 0.03) -> ShapeSensitivity:
    """Loss increase over the best shape and the ratio range within ``tolerance`` (see the module docstring).
    ``x``: the shape ratios (> 0, distinct); ``loss``: final losses (nats/token, > 0) of one N and D."""
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    if x.shape != loss.shape or x.size < 2:
        raise InputError("shape_sensitivity needs two or more (ratio, loss) pairs of equal length")
    if not (np.all(x > 0) and np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise InputError("shape_sensitivity: ratios and losses must be positive and finite")
    if not 0 < tolerance < 1:
        raise InputError(f"tolerance={tolerance}: a fraction in (0, 1)")
    order = np.argsort(x)
    x, loss = x[order], loss[order]
    if np.any(np.diff(x) <= 0):
        raise InputError("shape_sensitivity: the ratios must be distinct (average repeated shapes first)")
    b = int(np.argmin(loss))
    inc = loss / loss[b] - 1.0
    lx = np.log(x)

    def edge(step: int) -> tuple[float, bool]:
        i = b
        while 0 <= i + step < len(x) and inc[i + step] <= tolerance:
            i += step
        j = i + step
        if not 0 <= j < len(x):
            return float(x[i]), True
        w = (tolerance - inc[i]) / (inc[j] - inc[i])  # inc[i] <= tol < inc[j]
        return float(np.exp(lx[i] + w * (lx[j] - lx[i]))), False

    lo, lo_open = edge(-1)
    hi, hi_open = edge(+1)
    return ShapeSensitivity(x, loss, inc, float(x[b]), float(loss[b]), lo, hi, lo_open, hi_open, tolerance)
