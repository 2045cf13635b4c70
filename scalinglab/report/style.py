"""One matplotlib style for every figure of the report (Agg backend, imported lazily).

Figures are 5 x 3.4 in (wide ones 8.6 x 3.4), saved as PNG at 200 dpi (1000 px wide and more, sharp when a
reader zooms) and as vector PDF. Colours: runs
are coloured by N on a log scale (viridis); fits are black dashed lines; published laws grey dotted.
"""

from __future__ import annotations

from typing import Any

DPI = 110  # the figures' own dpi (layout); PNGs are written at PNG_DPI
PNG_DPI = 200  # 5 in -> 1000 px, 8.6 in -> 1720 px
SIZE = (5.0, 3.4)
WIDE = (8.6, 3.4)
FIT = dict(color="black", ls="--", lw=1.3)
PUBLISHED = dict(color="0.45", ls=":", lw=1.4)
RC = {
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
    "pdf.fonttype": 3,
    "path.simplify": True,  # Type 3 fonts: PDFs save ~3x faster than embedded TrueType
}
PF_DAY = 8.64e19  # FLOPs in one PF-day (display only)


def mpl() -> Any:
    """matplotlib with the Agg backend and the report's rcParams (idempotent)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update(RC)
    return matplotlib


def figure(ncols: int = 1, *, wide: bool | None = None, sharey: bool = False, cbar: bool = False):
    """A new Figure with ``ncols`` axes side by side and fixed margins (no pyplot state, no layout engine:
    constrained layout costs a full extra draw per save). ``cbar`` leaves room for a colour bar on the
    right."""
    mpl()
    from matplotlib.figure import Figure

    size = WIDE if (wide if wide is not None else ncols > 1) else SIZE
    fig = Figure(figsize=size, dpi=DPI)
    left, bottom, top = 0.75 / size[0], 0.13, 0.91
    right = 1 - (0.95 if cbar else 0.15) / size[0]
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top, wspace=0.28 if not sharey else 0.08)
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, (axes[0] if ncols == 1 else list(axes))


def finish(fig) -> None:
    """Drop minor ticks on log axes spanning more than two decades (dozens of Tick objects, slow to draw,
    and the major grid reads better); narrow log axes keep their labelled minor ticks."""
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    pow10 = FuncFormatter(_pow10)
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log" or min(lim) <= 0:
                continue
            decades = abs(np.log10(max(lim) / min(lim)))
            if decades > 2:
                axis.set_minor_locator(NullLocator())
            if decades >= 1.2:
                axis.set_major_formatter(pow10)
                # matplotlib labels every minor tick here (2x10^3 3x10^3 ... overlap): 2x and 5x only, below
                # two decades (above, there are no minor ticks)
                axis.set_minor_formatter(FuncFormatter(_minor25) if decades <= 2 else NullFormatter())
            elif decades < 0.6 and max(lim) < 1e4:  # a loss axis: 2, 2.5, 3 evenly, plain numbers
                axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
                axis.set_minor_locator(NullLocator())
                axis.set_major_formatter(FormatStrFormatter("%g"))
            elif decades < 1.2 and max(lim) < 1e4:  # plain numbers, not 3.8 x 10^0
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(FormatStrFormatter("%g"))
            elif decades < 1.2:  # a narrow axis of big numbers: 40k, 60k rather than 4 x 10^4
                si = FuncFormatter(lambda v, _p=None: fmt_si(v) if v > 0 else "")
                axis.set_major_formatter(si)
                axis.set_minor_formatter(si)


_SUP = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _minor25(v: float, _pos=None) -> str:
    """A minor log tick's label only at 2 and 5 times a power of ten ('2×10³'), else none."""
    import math

    if v <= 0:
        return ""
    e = math.floor(math.log10(v) + 1e-9)
    m = v / 10**e
    if min(abs(m - 2), abs(m - 5)) > 1e-6:
        return ""
    return f"{m:.0f}×" + _pow10(10.0**e)


def _pow10(v: float, _pos=None) -> str:
    """'10\u2075' with Unicode superscripts: mathtext would be parsed per label, slow to draw."""
    import math

    if v <= 0:
        return ""
    e = math.log10(v)
    if abs(e - round(e)) > 1e-6:
        return ""
    return "10" + str(int(round(e))).translate(_SUP)


def n_colors(values):
    """(colour per value, norm, cmap): viridis on log10 of N (or any positive quantity)."""
    import numpy as np

    matplotlib = mpl()
    from matplotlib import colors

    v = np.asarray(values, float)
    lo, hi = np.log10(np.nanmin(v)), np.log10(np.nanmax(v))
    norm = colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(norm(np.log10(x))) for x in v], norm, cmap


def colorbar(fig, ax, norm, cmap, label: str) -> None:
    """A colour bar for log10(N) next to ``ax``."""
    from matplotlib import cm

    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    box = ax.get_position()
    cax = fig.add_axes((box.x1 + 0.015, box.y0, 0.018, box.height))
    cb = fig.colorbar(sm, cax=cax)
    cb.set_label(label)
    cb.ax.tick_params(labelsize=7)


def fmt_si(x: float, unit: str = "") -> str:
    """1.2e9 -> '1.2G' style compact numbers for labels and tables."""
    import math

    if x is None or not math.isfinite(x):
        return "n/a"
    for div, suf in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}{unit}"
    return f"{x:.3g}{unit}"


def fmt_num(x: float, digits: int = 3) -> str:
    """A number for tables: plain for ordinary magnitudes, scientific otherwise."""
    import math

    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"
