"""Compute-optimal allocation for the report: isoFLOP minima (Approach 2), N_opt(C) and D_opt(C) from the
fitted L(N, D) (Approach 3) with bootstrap intervals, and the published Kaplan and Hoffmann lines.

All maths is ``scalinglab.laws`` (``allocate``, ``isoflop``, ``presets``); this module only tabulates.
C in FLOPs, N parameters, D tokens, loss nats/token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scalinglab.report import derive
from scalinglab.report.context import Context
from scalinglab.report.style import PF_DAY

ALLOC_COLUMNS = ["C", "N_opt", "N_lo", "N_hi", "D_opt", "D_lo", "D_hi", "loss", "loss_lo", "loss_hi"]


def isoflop_table(ctx: Context) -> pd.DataFrame:
    """Runs in isoFLOP sets (column ``budget``), cached on the context."""
    if "isoflop_sets" not in ctx.cache:
        ctx.cache["isoflop_sets"] = derive.isoflop_sets(ctx.pts)
    return ctx.cache["isoflop_sets"]


def isoflop_minima(ctx: Context) -> tuple[pd.DataFrame, Any]:
    """Per budget: the minimum of the parabola in log N (laws.allocate.isoflop) with its interval.

    Returns (table with columns budget, N_opt, N_lo, N_hi, loss_opt; the laws IsoFlopResult or None)."""
    if "isoflop_minima" in ctx.cache:
        return ctx.cache["isoflop_minima"]
    sets = isoflop_table(ctx)
    out = (pd.DataFrame(columns=["budget", "N_opt", "N_lo", "N_hi", "loss_opt"]), None)
    if len(sets):
        try:
            from scalinglab.laws.allocate import isoflop

            res = isoflop(sets[["N", "D", "C", "loss"]].assign(C=sets["budget"]))
            out = (_minima_frame(res), res)
        except Exception as e:  # laws missing or the parabolas failing: the figure shows the data alone
            ctx.cache["isoflop_why"] = f"{type(e).__name__}: {e}"
    ctx.cache["isoflop_minima"] = out
    return out


def _minima_frame(res: Any) -> pd.DataFrame:
    """The IsoFlopResult's per-budget minima as a frame (tolerant of attribute or table layout)."""
    tab = getattr(res, "minima", None)
    if tab is None and hasattr(res, "table"):
        tab = res.table
    df = pd.DataFrame(tab)
    ren = {"C": "budget", "n_opt": "N_opt", "loss": "loss_opt"}
    return df.rename(columns={k: v for k, v in ren.items() if k in df.columns and v not in df.columns})


def allocation_curve(ctx: Context, c: np.ndarray) -> pd.DataFrame | None:
    """N_opt, D_opt and the loss at each compute C from the L(N, D) fit, with 95% bootstrap intervals
    where the fit carries bootstrap samples. None when there is no L(N, D) fit."""
    view = ctx.fits.get("lnd")
    if view is None:
        return None
    try:
        from scalinglab.laws.allocate import allocate
    except ImportError as e:
        ctx.cache["alloc_why"] = f"scalinglab.laws.allocate is not usable ({e})"
        return None

    rows = []
    samples = _bootstrap_laws(view)
    for ci in np.atleast_1d(c):
        a = allocate(float(ci), view.result)
        row = dict(C=float(ci), N_opt=float(a.N_opt), D_opt=float(a.D_opt), loss=float(a.loss))
        if samples:
            sa = [allocate(float(ci), s) for s in samples]
            for k, lab in (("N_opt", "N"), ("D_opt", "D"), ("loss", "loss")):
                v = np.array([float(getattr(x, k)) for x in sa])
                row[f"{lab}_lo"], row[f"{lab}_hi"] = np.nanpercentile(v, [2.5, 97.5])
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=ALLOC_COLUMNS)


def _bootstrap_laws(view) -> list:
    """Bootstrap refits of the L(N, D) law as objects ``allocate`` accepts (empty when none were kept)."""
    res = view.result
    fn = getattr(res, "bootstrap_results", None)
    if callable(fn):
        return list(fn())
    return []


def published_allocation(c: np.ndarray) -> dict[str, pd.DataFrame]:
    """Published N_opt(C), D_opt(C): Kaplan 2020 Table 6 (C_min in PF-days) and Hoffmann 2022 Approach 3."""
    c = np.asarray(c, float)
    out = {}
    pf = c / PF_DAY
    out["Kaplan 2020"] = pd.DataFrame({"C": c, "N_opt": 1.3e9 * pf**0.73, "D_opt": 2e10 * pf**0.27})
    try:
        from scalinglab.laws.allocate import allocate
        from scalinglab.laws.presets import get_preset

        law = get_preset("hoffmann2022")
        al = [allocate(float(x), law) for x in c]
        out["Hoffmann 2022"] = pd.DataFrame({"C": c, "N_opt": [a.N_opt for a in al], "D_opt": [a.D_opt for a in al]})
    except ImportError:
        pass
    return out
