"""The report's tables: every fit (parameters with 95% intervals, convergence, warnings) and the predictions
for compute budgets 10x, 100x and 1000x the largest run (N_opt, D_opt, loss with intervals)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.report import alloc, derive
from scalinglab.report.context import Context
from scalinglab.report.style import PF_DAY, fmt_num, fmt_si


@dataclass
class FitRow:
    title: str
    form: str
    params: list[tuple[str, str]]  # (name, "value [lo, hi]")
    n_points: int
    r2_log: str
    verdict: str  # "converged" / "NOT converged" / "not fitted"
    source: str
    warnings: list[str]


def fit_rows(ctx: Context) -> list[FitRow]:
    from scalinglab.report.fits import SPECS

    rows = []
    for spec in SPECS:
        v = ctx.fits.get(spec.key)
        if v is None:
            rows.append(
                FitRow(
                    spec.title,
                    spec.form,
                    [],
                    0,
                    "",
                    "not fitted",
                    "",
                    [ctx.fit_why.get(spec.key, "not available")],
                )
            )
            continue
        ps = []
        for k, val in v.params.items():
            ci = v.ci95.get(k)
            s = fmt_num(val)
            if ci is not None and all(math.isfinite(x) for x in ci):
                s += f" [{fmt_num(ci[0])}, {fmt_num(ci[1])}]"
            ps.append((k, s))
        r2 = fmt_num(float(v.r2_log)) if v.r2_log is not None else ""
        rows.append(
            FitRow(
                spec.title,
                getattr(v.form, "description", spec.form),
                ps,
                v.n_points,
                r2,
                "converged" if v.converged else "NOT converged",
                v.source,
                list(v.warnings),
            )
        )
    return rows


@dataclass
class Predictions:
    table: pd.DataFrame  # factor, C, N_opt, N_lo, N_hi, D_opt, D_lo, D_hi, loss, loss_lo, loss_hi
    largest: dict  # the largest run: C, N, D, loss
    sentence: str
    why_not: str = ""


def predictions(ctx: Context, factors: tuple[int, ...] = (10, 100, 1000)) -> Predictions:
    """N_opt, D_opt and loss at ``factors`` x the largest run's compute, from the L(N, D) fit."""
    if "predictions" in ctx.cache:
        return ctx.cache["predictions"]
    pts = ctx.pts
    if len(pts) == 0:
        out = Predictions(pd.DataFrame(), {}, "", "no finished runs")
        ctx.cache["predictions"] = out
        return out
    big = pts.loc[pts["C"].idxmax()]
    largest = dict(
        C=float(big["C"]), N=float(pts["N"].max()), D=float(pts["D"].max()), loss=float(pts["loss"].min())
    )
    b = derive.budgets(pts, factors)
    curve = None
    why = ""
    try:
        curve = alloc.allocation_curve(ctx, np.array([c for _, c in b]))
    except Exception as e:  # laws.allocate missing or failing: the section says so
        why = f"allocation failed: {type(e).__name__}: {e}"
    if curve is None:
        why = (
            why
            or ctx.cache.get("alloc_why")
            or ("no L(N, D) fit: " + ctx.fit_why.get("lnd", "not available"))
        )
        out = Predictions(pd.DataFrame(), largest, "", why)
        ctx.cache["predictions"] = out
        return out
    curve.insert(0, "factor", [f for f, _ in b])
    top = curve.iloc[-1]
    c_pf = largest["C"] / PF_DAY
    sentence = (
        f"The largest run used C = {largest['C']:.3g} FLOPs ({c_pf:.3g} PF-days); the study's models span N "
        f"up to {fmt_si(largest['N'])} parameters and D up to {fmt_si(largest['D'])} tokens. The "
        f"{int(top['factor'])}x row extrapolates {math.log10(top['factor']):.0f} orders of magnitude in "
        f"compute beyond the data, to a model {top['N_opt'] / largest['N']:.3g}x the largest trained and "
        f"{top['D_opt'] / largest['D']:.3g}x the most tokens used: treat it as a hypothesis to test, and "
        f"the 10x row as the next experiment."
    )
    out = Predictions(curve, largest, sentence)
    ctx.cache["predictions"] = out
    return out
