"""A fitted line and its 95 % band, drawn the one way every figure draws them, with the caption note.

The band is the 95 % interval of the mean curve over the fit's bootstrap refits (``FitView.interval``
with ``noise=False``; percentiles of each refit's curve). It never stretches the axes: a band that widens
far beyond the data (an extrapolation, a poorly identified fit) runs out of the frame instead of squeezing
the data into a corner. A fit without bootstrap samples gets its line and a note saying it has no band.
"""

from __future__ import annotations

import numpy as np

from scalinglab.report import style
from scalinglab.report.context import Context
from scalinglab.report.fits import FitView

LEVEL = 0.95


def draw_fit(
    ctx: Context,
    figure: str,
    ax,
    view: FitView,
    x: np.ndarray,
    var: str,
    *,
    label: str | None = None,
    color="black",
    light: bool = False,
    **fixed,
) -> bool:
    """Draw ``view`` over ``x`` (its variable ``var``; the other variables at the values in ``fixed``) and
    its 95 % band; returns whether a band was drawn. ``light``: a thinner line in ``color`` (a family of
    curves), else the fit style (black dashed)."""
    x = np.asarray(x, float)
    variables = {var: x, **{k: np.broadcast_to(np.asarray(v, float), x.shape) for k, v in fixed.items()}}
    line = dict(color=color, ls="--", lw=1.0) if light else dict(style.FIT, color=color)
    ax.plot(x, view.predict(**variables), label=label, **line)
    band = view.interval(LEVEL, noise=False, **variables)
    if band is not None:
        lo, hi = band
        ok = np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        band = (x[ok], lo[ok], hi[ok]) if ok.sum() >= 2 else None
    if band is None:
        _note_once(ctx, figure, f"nb:{view.key}",
                   f"No band around the {view.title} fit: it has no bootstrap samples.")
        return False
    from matplotlib.collections import PolyCollection

    xs, lo, hi = band
    verts = np.concatenate([np.column_stack([xs, lo]), np.column_stack([xs[::-1], hi[::-1]])])
    ax.add_collection(
        PolyCollection([verts], facecolors=[color], alpha=0.1 if light else 0.15, linewidths=0, zorder=1),
        autolim=False,
    )
    samples = getattr(view.result, "samples", None)
    n = 0 if samples is None else len(samples)
    _note_once(ctx, figure, "band",
               f"Shaded around each fitted line: its 95 % band (percentiles of the curves of the fit's {n} "
               "bootstrap refits; the mean curve, not a new run's scatter).")
    return True


def _note_once(ctx: Context, figure: str, key: str, text: str) -> None:
    seen = ctx.cache.setdefault(("noted", figure), set())
    if key not in seen:
        seen.add(key)
        ctx.note(figure, text)
