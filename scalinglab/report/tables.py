"""The report's tables: every fit (parameters with 95% intervals, convergence, warnings) and the predictions
for compute budgets 10x, 100x and 1000x the largest run (N_opt, D_opt, D/N, loss with intervals) from the
study's one answer (``report.answer``), or its refusal."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from scalinglab.report import derive
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


PRED_COLUMNS = ["factor", "C", "N_opt", "N_lo", "N_hi", "D_opt", "D_lo", "D_hi", "tpp", "tpp_lo", "tpp_hi",
                "loss", "loss_lo", "loss_hi", "loss_refused"]


@dataclass
class Predictions:
    """N_opt, D_opt, D/N (``tpp``) and loss at compute budgets, each with its 95 % interval (``*_lo``,
    ``*_hi``; NaN where none), from the study's answer (``report.answer``): its allocation at its target and
    the chosen approach at the other budgets. ``loss_refused``: why a row's loss is not given (below a
    fitted irreducible loss). An empty table with ``why_not`` when the answer is refused or missing."""

    table: pd.DataFrame
    largest: dict  # the largest run: C, N, D, loss
    sentence: str
    why_not: str = ""
    source: str = ""  # the approach the numbers come from
    notes: list[str] = field(default_factory=list)


def _row(factor: float, a: dict) -> dict:
    """A Predictions row from an allocation dict (``laws.consensus``/``Allocation.to_dict()`` keys)."""
    loss = a.get("loss")
    row = dict(factor=factor, C=float(a["C"]), N_opt=float(a["N_opt"]), D_opt=float(a["D_opt"]),
               tpp=float(a["D_opt"]) / float(a["N_opt"]), loss=math.nan if loss is None else float(loss),
               loss_refused=a.get("loss_refused") or "")
    keys = (("N", "N_opt_ci"), ("D", "D_opt_ci"), ("tpp", "tokens_per_param_ci"), ("loss", "loss_ci"))
    for col, key in keys:
        ci = a.get(key) if key != "loss_ci" or loss is not None else None
        lo, hi = (float(ci[0]), float(ci[1])) if ci is not None else (math.nan, math.nan)
        row[f"{col}_lo"], row[f"{col}_hi"] = lo, hi
    return row


def predictions(ctx: Context, factors: tuple[int, ...] = (10, 100, 1000)) -> Predictions:
    """The answer's allocation at ``factors`` x the largest run's compute (and at the answer's own target):
    refused, with the reason and what to add, when the answer is (``report.answer``)."""
    if "predictions" in ctx.cache:
        return ctx.cache["predictions"]
    ctx.cache["predictions"] = out = _predictions(ctx, factors)
    return out


def _predictions(ctx: Context, factors: tuple[int, ...]) -> Predictions:
    from scalinglab.report.answer import get_answer

    pts = ctx.pts
    if len(pts) == 0:
        return Predictions(pd.DataFrame(), {}, "", "no finished runs")
    big = pts.loc[pts["C"].idxmax()]
    largest = dict(
        C=float(big["C"]), N=float(pts["N"].max()), D=float(pts["D"].max()), loss=float(pts["loss"].min())
    )
    ans = get_answer(ctx)
    if ans.result is None:
        return Predictions(pd.DataFrame(), largest, "", ans.why_not)
    if ans.refused:
        return Predictions(pd.DataFrame(), largest, "", f"the answer is refused: {ans.refused}")
    budgets = dict(derive.budgets(pts, factors))
    target = float(ans.result["allocation"]["C"])
    if not any(math.isclose(c, target, rel_tol=1e-3) for c in budgets.values()):
        budgets[target / largest["C"]] = target  # the study's own target budget
    rows, notes = [], []
    for f, c in sorted(budgets.items(), key=lambda x: x[1]):
        try:
            a = ans.allocation_at(c)
        except Exception as e:  # an approach failing at one budget: that row says so, the others stay
            notes.append(f"{f:.4g}x: {ans.chosen_label()} failed there ({type(e).__name__}: {e})")
            continue
        if a.get("refused"):
            notes.append(f"{f:.4g}x: refused: {a['refused']}")
            continue
        rows.append(_row(f, a))
    if not rows:
        return Predictions(pd.DataFrame(), largest, "", "; ".join(notes) or "no budget could be predicted")
    table = pd.DataFrame(rows).reindex(columns=PRED_COLUMNS)
    top = table.iloc[-1]
    c_pf = largest["C"] / PF_DAY
    src = ans.chosen_label()
    sentence = (
        f"From {src}, the approach the answer uses. The largest run used C = {largest['C']:.3g} FLOPs "
        f"({c_pf:.3g} PF-days); the study's models span N up to {fmt_si(largest['N'])} parameters and D up "
        f"to {fmt_si(largest['D'])} tokens. The {top['factor']:.4g}x row extrapolates "
        f"{math.log10(top['factor']):.0f} orders of magnitude in compute beyond the data, to a model "
        f"{top['N_opt'] / largest['N']:.3g}x the largest trained and {top['D_opt'] / largest['D']:.3g}x the "
        f"most tokens used: treat it as a hypothesis to test, and the first row as the next experiment."
    )
    return Predictions(table, largest, sentence, source=src, notes=notes)
