"""The study's one compute-optimal answer, as the report shows it: Hoffmann's three approaches to
N_opt ~ C^a with their intervals and back-tests, whether they agree, and the allocation (or its refusal).

It is the answer ``study fit`` prints: the store's "compute-optimal" row (``study.fitting.ANSWER``, a
``laws.consensus.Consensus.to_dict()``) used as is when the study holds one made with the N the report
draws with; otherwise (a synthetic study, frames from elsewhere, a study fitted without it)
``laws.consensus.consensus`` on the report's own tables: the finished runs with their isoFLOP budget
(the plan's ``isoflop:C`` roles, else ``derive.isoflop_sets``), the learning curves past the study's
warm-up cut (``fitting.CURVE_SKIP``), the L(N, D) ``FitView``'s FitResult (refitted the same way for its
back-test) and the irreducible-loss floors of the report's identified fits. The advice, the Predictions
table and the allocation figure all read this one answer. C in FLOPs, N parameters, D tokens, loss
nats/token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.report.context import Context

STORED = "stored by `scalinglab study fit` (the same answer it prints)"
COMPUTED = (
    "computed by the report with scalinglab.laws.consensus on this page's tables (the store holds no "
    "compute-optimal answer{why}; `study fit` stores one)"
)


@dataclass
class Answer:
    """``result``: the Consensus dict (None when there is none: ``why_not``); ``source``: where it came from.
    ``runs``, ``curves``, ``lnd``, ``floors``: the inputs, for the same approach at other budgets."""

    result: dict[str, Any] | None
    source: str = ""
    why_not: str = ""
    runs: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    lnd: Any = None
    floors: list = field(default_factory=list)
    stored: bool = False

    @property
    def refused(self) -> str | None:
        return None if self.result is None else self.result.get("refused")

    @property
    def chosen(self) -> str | None:
        return None if self.result is None else self.result.get("chosen")

    @property
    def allocation(self) -> dict[str, Any] | None:
        """The allocation a researcher may act on: None when there is none or it is refused."""
        if self.result is None or self.refused:
            return None
        return self.result.get("allocation")

    def chosen_label(self) -> str:
        from scalinglab.laws.consensus import APPROACHES

        return APPROACHES.get(self.chosen or "", "no approach")

    def lines(self) -> list[str]:
        """The answer as ``study fit`` prints it (``Consensus.lines_of``)."""
        from scalinglab.laws.consensus import Consensus

        return [] if self.result is None else Consensus.lines_of(self.result)

    def allocation_at(self, C: float) -> dict[str, Any]:
        """The chosen approach's allocation dict at ``C`` FLOPs (the answer's own at its target C), with the
        answer's floors; ``refused`` set when it cannot be supported there."""
        a = self.result.get("allocation") if self.result else None
        if a is not None and math.isclose(float(a["C"]), C, rel_tol=1e-3):
            return {**a, "refused": self.refused or a.get("refused")}
        from scalinglab.laws.consensus import allocation_at

        return allocation_at(self.chosen, C, runs=self.runs, curves=self.curves, lnd=self.lnd,
                             floors=self.floors, bootstrap=_bootstrap(), seed=0)


def _bootstrap() -> int:
    from scalinglab.report.fits import BANDS

    return BANDS


def get_answer(ctx: Context) -> Answer:
    """The study's answer (cached on the context): stored, else computed unless ``ctx.fit_missing`` is
    False (module docstring)."""
    if "answer" not in ctx.cache:
        ctx.cache["answer"] = _answer(ctx)
    return ctx.cache["answer"]


def _answer(ctx: Context) -> Answer:
    from scalinglab.laws.consensus import Floor
    from scalinglab.study.fitting import ANSWER, answer

    runs, curves = answer_tables(ctx)
    view = ctx.fits.get("lnd")
    lnd = None if view is None else view.result
    stored = answer(ctx.data.fits)
    other_n = ctx.data.fits_params is not None and ctx.data.fits_params != ctx.data.param_count
    why = ""
    if stored is not None and other_n:
        why = (f" made with N = {ctx.data.param_count} parameters; its stored answer uses "
               f"N = {ctx.data.fits_params}")
    elif stored is not None:
        floors = [Floor(**f) for f in stored.get("floors") or []]
        return Answer(stored, STORED, runs=runs, curves=curves, lnd=lnd, floors=floors, stored=True)
    if not ctx.fit_missing:
        return Answer(None, why_not=f"no stored '{ANSWER}' answer{why} (the report ran without fitting)")
    if len(runs) == 0:
        return Answer(None, why_not="no finished runs")
    from scalinglab.laws.consensus import consensus
    from scalinglab.laws.fit import fit
    from scalinglab.report.fits import STARTS

    def refit(df: pd.DataFrame):
        return fit("chinchilla", df[["N", "D", "loss"]], bootstrap=_bootstrap(), seed=0, starts=STARTS)

    floors = report_floors(ctx)
    target = 10.0 * float(ctx.pts["C"].max())
    try:
        c = consensus(runs, curves if len(curves) else None, target_C=target, lnd=lnd,
                      fit_lnd=refit, floors=floors, bootstrap=_bootstrap(), seed=0)
    except Exception as e:  # an input the laws reject: the page says why, nothing else is lost
        return Answer(None, why_not=f"the three approaches could not be compared ({type(e).__name__}: {e})")
    return Answer(c.to_dict(), COMPUTED.format(why=why), runs=runs, curves=curves, lnd=lnd, floors=floors)


def answer_tables(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs: run, N, D, C = 6ND, loss, budget (the isoFLOP budget in FLOPs, NaN for none); curves: run, N,
    C, loss past the first ``fitting.CURVE_SKIP`` of each run) for ``laws.consensus``."""
    from scalinglab.study.fitting import CURVE_SKIP

    p = ctx.pts
    runs = pd.DataFrame({"run": p["run_id"], "N": p["N"].astype(float), "D": p["D"].astype(float),
                         "loss": p["loss"].astype(float)})
    runs["C"] = 6.0 * runs["N"] * runs["D"]
    runs["budget"] = _budgets(ctx)
    c = ctx.cur
    if len(c):
        c = c[c["step"] >= CURVE_SKIP * c.groupby("run_id")["step"].transform("max")]
    curves = pd.DataFrame({"run": c["run_id"], "N": c["N"], "C": c["C"], "loss": c["loss"]})
    return runs.reset_index(drop=True), curves.reset_index(drop=True)


def _budgets(ctx: Context) -> np.ndarray:
    """Each finished run's isoFLOP budget (FLOPs): the plan's ``isoflop:C`` role, else its set among runs of
    equal compute (``derive.isoflop_sets``); NaN for a run in none."""
    roles = ctx.pts["roles"] if "roles" in ctx.pts else pd.Series([[]] * len(ctx.pts))
    planned = [next((float(r.split(":", 1)[1]) for r in sorted(rs or []) if r.startswith("isoflop:")), np.nan)
               for rs in roles]
    if np.isfinite(planned).any():
        return np.asarray(planned, float)
    from scalinglab.report import alloc

    sets = alloc.isoflop_table(ctx)
    by_run = dict(zip(sets["run_id"], sets["budget"], strict=True))
    return np.array([by_run.get(r, np.nan) for r in ctx.pts["run_id"]], float)


def report_floors(ctx: Context) -> list:
    """Irreducible losses of the study's identified fits (``laws.consensus.Floor``) where the fitted
    constant is one: E of L(N, D) everywhere; L_inf of L(N) for runs with no more data than its points,
    when those share one D (the study's L(N) table, for a stored fit; for the report's own, the best run per
    N when every one has the same D), so that L_inf = E + B/D^beta; L_inf of L(D) likewise at one N.

    Left out: the report's L(N) and L(D) over mixed D (or N), and the compute frontier: their constants
    are where a finite set of sizes saturates over the range fitted, not a loss no run can beat (on the
    synthetic study the frontier's 95 % low end is above the true loss at 100x the largest run)."""
    from scalinglab.laws.consensus import Floor

    out = []
    for key, par in (("ln", "L_inf"), ("ld", "L_inf"), ("lnd", "E")):
        v = ctx.fits.get(key)
        if v is None or not v.converged or par in v.unidentified():
            continue
        ci = v.ci95.get(par)
        scope = _floor_scope(ctx, key, v.source.startswith("stored"))
        if ci is None or not np.isfinite(ci[0]) or scope is None:
            continue
        out.append(Floor(low=float(ci[0]), source=f"{par} of {v.title}", **scope))
    return out


def _floor_scope(ctx: Context, key: str, stored: bool) -> dict | None:
    """Where a fit's constant is a floor (``Floor`` max_D / max_N), None where it is not one."""
    if key == "lnd":
        return {}
    from scalinglab.report.fits import best_per

    p = ctx.pts
    if len(p) == 0:
        return None
    col, scope = ("D", "max_D") if key == "ln" else ("N", "max_N")
    if stored:  # the study's table: runs of its L(N) (L(D)) role, else the grid at one D (one N)
        from scalinglab.study.fitting import table_l_d, table_l_n

        pts = p.assign(roles=p["roles"].map(lambda r: set(r or [])))
        t = (table_l_n if key == "ln" else table_l_d)(pts)
    else:
        t = p.loc[p.groupby("N")["loss"].idxmin()] if key == "ln" else best_per(p, "D")
    if len(t) == 0 or t[col].max() > 1.01 * t[col].min():
        return None
    return {scope: float(t[col].max())}


PUBLISHED = [
    dict(approach="Kaplan 2020 (published)", a=0.73, lo=np.nan, hi=np.nan, note="Table 6"),
    dict(approach="Hoffmann 2022 (published)", a=0.49, lo=np.nan, hi=np.nan,
         note="Table 2: Approaches 1, 2, 3 gave 0.50, 0.49, 0.46"),
]


def exponent_rows(ans: Answer) -> list[dict]:
    """N_opt ~ C^a by approach from the answer (rows: approach "k: label", a, lo, hi, note), then the
    published values: ``ReportResult.exponents``."""
    from scalinglab.laws.consensus import APPROACHES

    res = ans.result or {}
    rows = []
    for k, label in APPROACHES.items():
        ap = (res.get("approaches") or {}).get(k)
        if ap is None:
            continue
        lo, hi = (np.nan if x is None else float(x) for x in ap["a_ci"])
        rows.append(dict(approach=f"{k}: {label}", a=float(ap["a"]), lo=lo, hi=hi,
                         note=f"{ap.get('interval', '')} interval"))
    return rows + [dict(r) for r in PUBLISHED]
