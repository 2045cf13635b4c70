"""Compute-optimal allocation for the figures: isoFLOP minima (Approach 2, the parabolas drawn), N_opt(C) and
D_opt(C) from the fitted L(N, D) (Approach 3) with bootstrap intervals, the envelope points (Approach 1),
and the published Kaplan and Hoffmann lines. The exponents, their agreement and the allocation a researcher
acts on are the study's one answer (``report.answer``), not recomputed here.

All maths is ``scalinglab.laws`` (``allocate``, ``isoflop``, ``presets``); this module only tabulates.
C in FLOPs, N parameters, D tokens, loss nats/token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scalinglab.report import derive
from scalinglab.report.context import Context

ALLOC_COLUMNS = ["C", "N_opt", "N_lo", "N_hi", "D_opt", "D_lo", "D_hi", "loss", "loss_lo", "loss_hi"]


def isoflop_table(ctx: Context) -> pd.DataFrame:
    """Runs in isoFLOP sets (column ``budget``), cached on the context."""
    if "isoflop_sets" not in ctx.cache:
        ctx.cache["isoflop_sets"] = derive.isoflop_sets(ctx.pts)
    return ctx.cache["isoflop_sets"]


def isoflop_minima(ctx: Context) -> tuple[pd.DataFrame, Any]:
    """Per budget: the minimum of the parabola in log N (laws.allocate.isoflop) with its 95 % interval.

    Returns (table with columns budget, N_opt, N_lo, N_hi, loss_opt; the laws IsoFlopResult or None)."""
    if "isoflop_minima" in ctx.cache:
        return ctx.cache["isoflop_minima"]
    sets = isoflop_table(ctx)
    out = (pd.DataFrame(columns=["budget", "N_opt", "N_lo", "N_hi", "loss_opt"]), None)
    if len(sets):
        try:
            from scalinglab.errors import FitError
            from scalinglab.laws.allocate import isoflop
            from scalinglab.report.fits import BANDS

            table = sets[["N", "D", "C", "loss"]].assign(C=sets["budget"])
            try:  # the answer's intervals: the pooled-residual bootstrap (laws.consensus uses the same)
                res = isoflop(table, min_budgets=1, bootstrap=BANDS, seed=0)
                ctx.cache["isoflop_interval"] = f"95% pooled-residual bootstrap interval ({BANDS} resamples)"
            except FitError:  # 3 sizes per budget: no residuals to resample; the delta method's interval
                res = isoflop(table, min_budgets=1)
                ctx.cache["isoflop_interval"] = "95% delta-method interval (where a budget has > 4 sizes)"
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
    """N_opt, D_opt and the predicted loss at each compute C (FLOPs) from the L(N, D) fit
    (``laws.allocate.allocate``), with its 95 % intervals (each bootstrap sample's own optimum; the loss of
    a new run at (N_opt, D_opt)). None when there is no L(N, D) fit or it cannot support an allocation
    (``FitResult.support_problems``: the reason is in ``ctx.cache["alloc_why"]``)."""
    view = ctx.fits.get("lnd")
    if view is None:
        return None
    problems = view.support_problems()
    if problems:
        ctx.cache["alloc_why"] = "the L(N, D) fit cannot support an allocation: " + "; ".join(problems)
        return None
    from scalinglab.laws.allocate import allocate

    rows = []
    for ci in np.atleast_1d(np.asarray(c, float)):
        a = allocate(float(ci), view.result)
        (n_lo, n_hi), (d_lo, d_hi), (l_lo, l_hi) = (
            v if v is not None else (np.nan, np.nan) for v in (a.N_opt_ci, a.D_opt_ci, a.loss_ci)
        )
        rows.append(dict(C=float(ci), N_opt=a.N_opt, N_lo=n_lo, N_hi=n_hi, D_opt=a.D_opt, D_lo=d_lo,
                         D_hi=d_hi, loss=a.loss, loss_lo=l_lo, loss_hi=l_hi))
    return pd.DataFrame(rows).reindex(columns=ALLOC_COLUMNS)


def published_allocation(c: np.ndarray) -> dict[str, pd.DataFrame]:
    """Published N_opt(C), D_opt(C) at C FLOPs: Kaplan 2020 Table 6 (``presets.KAPLAN_FRONTIER``, C_min in
    PF-days) and Hoffmann 2022 Approach 3 (``presets.get_preset("hoffmann2022")`` through ``allocate``)."""
    from scalinglab.laws.presets import KAPLAN_FRONTIER, PF_DAY, get_preset

    c = np.asarray(c, float)
    k = [KAPLAN_FRONTIER.at(x / PF_DAY) for x in c]
    out = {
        "Kaplan 2020": pd.DataFrame(
            {"C": c, "N_opt": [r["N_opt"] for r in k], "D_opt": [r["D_opt"] for r in k]}
        )
    }
    try:
        from scalinglab.laws.allocate import allocate
    except ImportError:
        return out
    law = get_preset("hoffmann2022")
    al = [allocate(float(x), law) for x in c]
    out["Hoffmann 2022"] = pd.DataFrame(
        {"C": c, "N_opt": [a.N_opt for a in al], "D_opt": [a.D_opt for a in al]}
    )
    return out


def approach1(ctx: Context) -> Any:
    """Hoffmann Approach 1's envelope points on the study's learning curves (``laws.allocate.approach1``,
    no bootstrap: the figure draws its points; the exponent is the answer's), or None."""
    if "approach1" not in ctx.cache:
        ctx.cache["approach1"] = None
        if len(ctx.cur):
            try:
                from scalinglab.laws.allocate import approach1 as a1

                ctx.cache["approach1"] = a1(ctx.cur[["C", "loss", "N", "run_id"]])
            except Exception as e:  # too few envelope points, laws missing: the table says why
                ctx.cache["approach1_why"] = f"{type(e).__name__}: {e}"
    return ctx.cache["approach1"]
