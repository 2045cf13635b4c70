"""'What should I train next?': plain sentences from the study's answer, the isoFLOP minima and the back-test.

Rules (each fires only when its evidence is on the page):
1. the next run: the answer's allocation (``report.answer``; 10x the largest run unless the study set its
   own target) with the interval of every number, from the approach the answer chose, and a batch size from
   the fitted B_crit(L) at its loss; or, when the answer is refused, why and what runs would fix it;
2. the approaches disagree (their intervals of a do not overlap): say so, and which one back-tests best;
3. an L(N, D) fit that cannot support an allocation (``FitResult.support_problems``) while another
   approach answers: why, and what to add;
4. an isoFLOP minimum at the edge of its set: the set does not bracket the optimum, extend it;
5. a wide N_opt interval (more than 3x from low to high): more isoFLOP runs at the largest budget;
6. a back-test that misses (held-out runs outside their intervals, or error above 2%): fit less far;
7. fits that did not converge or were not possible.

No loss is given that the answer does not give (none below a fitted irreducible loss, none from a refused
fit).
"""

from __future__ import annotations

import numpy as np

from scalinglab.report import alloc
from scalinglab.report.answer import get_answer
from scalinglab.report.context import Context
from scalinglab.report.style import fmt_si
from scalinglab.report.tables import predictions


def _iv(x: float, lo: float, hi: float, fmt) -> str:
    return fmt(x) + (f" [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "")


def _loss(x: float) -> str:
    return f"{x:.3f}"


def _tpp(x: float) -> str:
    return f"{x:.3g}"


def _next_run(ctx: Context, out: list[str]) -> None:
    ans = get_answer(ctx)
    pred = predictions(ctx)
    res = ans.result or {}
    if res.get("overlap") is None and len(res.get("approaches") or {}) >= 2 and res.get("comparable", True):
        from scalinglab.laws.consensus import APPROACHES

        best = res.get("best_backtest")
        out.append(
            "The approaches disagree: their 95 % intervals of a (N_opt ~ C^a) do not overlap; "
            + (f"{APPROACHES[best]} back-tests best, and the numbers here come from it."
               if best else "none could be back-tested (it needs two or more isoFLOP budgets).")
        )
    if ans.refused:
        out.append(f"No compute-optimal recommendation: {ans.refused}.")
        return
    if len(pred.table) == 0:
        out.append(f"No compute-optimal recommendation: {pred.why_not}.")
        return
    r = pred.table.iloc[0]
    s = (
        f"Train next at {r['C']:.3g} FLOPs ({r['factor']:.4g}x the largest run; from {pred.source}): "
        f"N = {_iv(r['N_opt'], r['N_lo'], r['N_hi'], fmt_si)} parameters on "
        f"D = {_iv(r['D_opt'], r['D_lo'], r['D_hi'], fmt_si)} tokens "
        f"(D/N = {_iv(r['tpp'], r['tpp_lo'], r['tpp_hi'], _tpp)}; [low, high]: 95 % intervals)"
    )
    if np.isfinite(r["loss"]):
        s += f", predicted loss {_iv(r['loss'], r['loss_lo'], r['loss_hi'], _loss)} nats/token"
        bc = ctx.fits.get("bcrit")
        if bc is not None:
            b = float(bc.predict(L=np.array([r["loss"]]))[0])
            s += (
                f"; at that loss the fitted critical batch is about {fmt_si(b)} tokens, "
                f"i.e. about {fmt_si(r['D_opt'] / b)} steps at B = B_crit"
            )
    elif r["loss_refused"]:
        s += f"; no loss is predicted: {r['loss_refused']}"
    out.append(s + ".")
    if np.isfinite(r["N_lo"]) and r["N_hi"] / r["N_lo"] > 3:
        out.append(
            f"N_opt there is uncertain by {r['N_hi'] / r['N_lo']:.2g}x (95% interval "
            f"{fmt_si(r['N_lo'])} to {fmt_si(r['N_hi'])}): add isoFLOP runs at the largest budget "
            "before committing compute."
        )
    problems = [] if ans.lnd is None else ans.lnd.support_problems()
    if ans.chosen != "3" and problems:
        from scalinglab.laws.consensus import allocation_at

        try:  # consensus's wording, with what runs would fix it
            why = allocation_at("3", float(r["C"]), lnd=ans.lnd)["refused"]
        except Exception:  # no optimum at all (an exponent or coefficient at 0)
            why = "; ".join(problems)
        out.append(f"The L(N, D) fit gives no allocation or loss here: {why}.")


def advice(ctx: Context) -> list[str]:
    out: list[str] = []
    _next_run(ctx, out)
    sets = alloc.isoflop_table(ctx)
    if len(sets):
        try:
            minima, _ = alloc.isoflop_minima(ctx)
        except Exception:  # laws.allocate.isoflop missing: the isoFLOP figure says so
            minima = sets.iloc[0:0]
        for _, m in minima.iterrows():
            s = sets[np.isclose(sets["budget"], m["budget"], rtol=0.06)]
            if len(s) and (m["N_opt"] >= s["N"].max() or m["N_opt"] <= s["N"].min()):
                side = "larger" if m["N_opt"] >= s["N"].max() else "smaller"
                out.append(
                    f"The isoFLOP set at C = {m['budget']:.2g} FLOPs does not bracket its minimum: "
                    f"add {side} models to it."
                )
    bt = ctx.cache.get("backtest_dict")
    if bt:
        err = np.abs(np.asarray(bt.get("rel_error", []), float))
        cov = np.asarray(bt.get("covered", []), bool)
        if (len(cov) and not cov.all()) or (len(err) and err.max() > 0.02):
            out.append(
                "The back-test misses: fitted without the largest runs, the law mispredicts them "
                f"(max relative error {err.max():.1%}). Extrapolate less far, or add runs between the "
                "largest and the target."
            )
    for v in ctx.fits.values():
        if not v.converged:
            out.append(f"The {v.title} fit did not converge: its numbers above are not reliable.")
    if "lnd" not in ctx.fits:
        out.append(
            "There is no L(N, D) fit: train at least 6 finished runs over 2+ model sizes and 2+ token "
            "budgets."
        )
    return out
