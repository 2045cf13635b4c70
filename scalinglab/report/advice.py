"""'What should I train next?': plain sentences from the fits, the isoFLOP minima and the back-test.

Rules (each fires only when its evidence is on the page):
1. the next run: the compute-optimal (N, D) at 10x the largest run, its predicted loss and interval, and a
   batch size from the fitted B_crit(L) at that loss;
2. an isoFLOP minimum at the edge of its set: the set does not bracket the optimum, extend it;
3. a wide N_opt interval at 10x (more than 3x from low to high): more isoFLOP runs at the largest budget;
4. a back-test that misses (held-out runs outside their intervals, or error above 2%): fit less far;
5. fits that did not converge or were not possible.
"""

from __future__ import annotations

import numpy as np

from scalinglab.report import alloc
from scalinglab.report.context import Context
from scalinglab.report.style import fmt_si
from scalinglab.report.tables import predictions


def advice(ctx: Context) -> list[str]:
    out: list[str] = []
    pred = predictions(ctx)
    if len(pred.table):
        r = pred.table.iloc[0]
        s = (
            f"Train next at {r['C']:.3g} FLOPs (10x the largest run): N = {fmt_si(r['N_opt'])} parameters on "
            f"D = {fmt_si(r['D_opt'])} tokens (D/N = {r['D_opt'] / r['N_opt']:.3g}), predicted loss "
            f"{r['loss']:.3f} nats/token"
        )
        if np.isfinite(r.get("loss_lo", np.nan)):
            s += f" (95% interval {r['loss_lo']:.3f} to {r['loss_hi']:.3f})"
        bc = ctx.fits.get("bcrit")
        if bc is not None:
            b = float(bc.predict(L=np.array([r["loss"]]))[0])
            s += (
                f"; at that loss the fitted critical batch is about {fmt_si(b)} tokens, "
                f"i.e. about {fmt_si(r['D_opt'] / b)} steps at B = B_crit"
            )
        out.append(s + ".")
        if np.isfinite(r.get("N_lo", np.nan)) and r["N_hi"] / r["N_lo"] > 3:
            out.append(
                f"N_opt at 10x is uncertain by {r['N_hi'] / r['N_lo']:.2g}x (95% interval "
                f"{fmt_si(r['N_lo'])} to {fmt_si(r['N_hi'])}): add isoFLOP runs at the largest budget "
                "before committing compute."
            )
    elif pred.why_not:
        out.append(f"No compute-optimal recommendation: {pred.why_not}.")
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
