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

            res = isoflop(sets[["N", "D", "C", "loss"]].assign(C=sets["budget"]), min_budgets=1)
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
    (``laws.allocate.allocate``). Intervals (95%): N_opt and D_opt from the fit's bootstrap parameter samples
    (each sample's own optimum), the loss from ``FitResult.predict_interval`` at (N_opt, D_opt), i.e. the
    loss a new run of that size would reach. None when there is no L(N, D) fit."""
    view = ctx.fits.get("lnd")
    if view is None:
        return None
    try:
        from scalinglab.laws.allocate import allocate
    except ImportError as e:
        ctx.cache["alloc_why"] = f"scalinglab.laws.allocate is not usable ({e})"
        return None
    res = view.result
    rows = []
    for ci in np.atleast_1d(np.asarray(c, float)):
        a = allocate(float(ci), res)
        row = dict(C=float(ci), N_opt=float(a.N_opt), D_opt=float(a.D_opt), loss=float(a.loss))
        n_s = _sample_optima(res, float(ci))
        if n_s is not None:
            row["N_lo"], row["N_hi"] = np.nanpercentile(n_s, [2.5, 97.5])
            row["D_lo"], row["D_hi"] = float(ci) / (6 * row["N_hi"]), float(ci) / (6 * row["N_lo"])
        if getattr(res, "samples", None) is not None and len(res.samples):
            lo, hi = res.predict_interval(level=0.95, N=np.array([a.N_opt]), D=np.array([a.D_opt]))
            row["loss_lo"], row["loss_hi"] = float(lo[0]), float(hi[0])
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=ALLOC_COLUMNS)


def _sample_optima(res: Any, c: float) -> np.ndarray | None:
    """N_opt at C under every bootstrap parameter sample of the fit (None without samples)."""
    samples = getattr(res, "samples", None)
    if samples is None or len(samples) == 0:
        return None
    from scalinglab.laws.allocate import allocate, chinchilla_optimal
    from scalinglab.laws.forms import ChinchillaND

    names = res.form.param_names
    if isinstance(res.form, ChinchillaND):  # closed form per sample
        return np.array([chinchilla_optimal(c, dict(zip(names, s, strict=True)))[0] for s in samples])
    law = {"law": res.form.name, "var": getattr(res.form, "var", None)}
    return np.array([allocate(c, {**law, "params": dict(zip(names, s, strict=True))}).N_opt for s in samples])


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
    """Hoffmann Approach 1 on the study's learning curves (``laws.allocate.approach1``), or None."""
    if "approach1" not in ctx.cache:
        ctx.cache["approach1"] = None
        if len(ctx.cur):
            try:
                from scalinglab.laws.allocate import approach1 as a1

                ctx.cache["approach1"] = a1(ctx.cur[["C", "loss", "N", "run_id"]])
            except Exception as e:  # too few envelope points, laws missing: the table says why
                ctx.cache["approach1_why"] = f"{type(e).__name__}: {e}"
    return ctx.cache["approach1"]


def exponents(ctx: Context) -> list[dict]:
    """N_opt ~ C^a from the three Chinchilla approaches, with 95% intervals, and the published values.
    Rows: approach, a, lo, hi, note."""
    rows = []
    a1 = approach1(ctx)
    if a1 is not None:
        rows.append(
            dict(
                approach="1: envelope of learning curves",
                a=a1.a,
                lo=a1.a_ci95[0],
                hi=a1.a_ci95[1],
                note=f"{a1.n} envelope points",
            )
        )
    if len(isoflop_table(ctx)):
        _, res = isoflop_minima(ctx)
        if res is not None and res.fit is not None:  # the exponent needs 3 budgets; the minima do not
            rows.append(
                dict(
                    approach="2: isoFLOP minima",
                    a=res.a,
                    lo=res.a_ci95[0],
                    hi=res.a_ci95[1],
                    note=f"{len(res.budgets)} budgets",
                )
            )
    v = ctx.fits.get("lnd")
    if v is not None and {"alpha", "beta"} <= set(v.params):
        a = v.params["beta"] / (v.params["alpha"] + v.params["beta"])
        lo = hi = float("nan")
        s = getattr(v.result, "samples", None)
        if s is not None and len(s):
            names = list(v.form.param_names)
            al, be = s[:, names.index("alpha")], s[:, names.index("beta")]
            lo, hi = np.percentile(be / (al + be), [2.5, 97.5])
        rows.append(dict(approach="3: L(N, D) fit, beta/(alpha+beta)", a=a, lo=lo, hi=hi, note=v.source))
    rows.append(dict(approach="Kaplan 2020 (published)", a=0.73, lo=np.nan, hi=np.nan, note="Table 6"))
    rows.append(
        dict(
            approach="Hoffmann 2022 (published)",
            a=0.49,
            lo=np.nan,
            hi=np.nan,
            note="Table 2: Approaches 1, 2, 3 gave 0.50, 0.49, 0.46",
        )
    )
    return rows
