"""Allocation figures: isoFLOP curves with their minima (Hoffmann Fig. 3), N_opt(C) and D_opt(C) with
intervals and the published Kaplan and Hoffmann lines."""

from __future__ import annotations

import numpy as np

from scalinglab.report import alloc, style
from scalinglab.report.context import Context

LOSS = "loss, nats/token"


def _parabola(res, budget: float):
    """The (c2, c1, c0) of the isoFLOP parabola at ``budget`` when the laws result exposes them (``coef``)."""
    coef = getattr(res, "coef", None)
    if coef is None or res is None:
        return None
    i = int(np.argmin(np.abs(np.log(np.asarray(res.budgets)) - np.log(budget))))
    if not np.isclose(res.budgets[i], budget, rtol=0.06):
        return None
    return np.asarray(coef[i], float)


def fig_isoflop(ctx: Context):
    name = "isoflop"
    sets = alloc.isoflop_table(ctx)
    if len(sets) == 0:
        return ctx.skip(name, "no isoFLOP set (three or more model sizes trained at one compute budget)")
    minima, res = alloc.isoflop_minima(ctx)
    fig, ax = style.figure()
    ax.set_xscale("log")
    budgets = sorted(sets["budget"].unique())
    cols, _, _ = style.n_colors(budgets)
    drew = {"parabola": False, "star": False, "bar": False}
    for b, col in zip(budgets, cols, strict=True):
        s = sets[sets["budget"] == b].sort_values("N")
        ax.plot(s["N"], s["loss"], "o", color=col, ms=4, label=f"C = {b:.2g} FLOPs")
        m = minima[np.isclose(minima["budget"].astype(float), b, rtol=0.06)] if len(minima) else minima
        coef = _parabola(res, b)
        if coef is not None:  # loss = c2 (log N)^2 + c1 log N + c0, as fitted by laws.allocate.isoflop
            n = np.geomspace(s["N"].min(), s["N"].max(), 100)
            ax.plot(n, np.polyval(coef, np.log(n)), color=col, lw=1.0)
            drew["parabola"] = True
        if len(m):
            r = m.iloc[0]
            ax.plot(
                [r["N_opt"]], [r["loss_opt"]], marker="*", ms=10, color=col, mec="black", mew=0.6, zorder=4
            )
            drew["star"] = True
            if np.isfinite(r.get("N_lo", np.nan)):
                ax.hlines(r["loss_opt"], r["N_lo"], r["N_hi"], color=col, lw=2.5, alpha=0.5)
                drew["bar"] = True
    if len(minima) == 0:
        ctx.note(name, f"No minima: {ctx.cache.get('isoflop_why', 'the parabola fits failed')}.")
    ax.set_xlabel(ctx.n_label)
    ax.set_ylabel(LOSS)
    ax.set_title("IsoFLOP curves, one colour per compute budget")
    ax.legend(loc="upper right", ncols=1, fontsize=6.5)
    if drew["parabola"]:
        ctx.note(name, "Curves: a parabola in log N fitted to each budget (Hoffmann Approach 2; no band: its "
                       "coefficients' bootstrap is not kept, the minimum's interval is drawn instead).")
    if drew["star"]:
        bars = f"; bars: its {ctx.cache.get('isoflop_interval', '95% interval')}." if drew["bar"] else "."
        ctx.note(name, "Stars: each parabola's minimum" + bars)
    return fig


def fig_optimal_allocation(ctx: Context):
    from scalinglab.report.answer import get_answer

    name = "optimal_allocation"
    minima, _ = alloc.isoflop_minima(ctx) if len(alloc.isoflop_table(ctx)) else (None, None)
    ans = get_answer(ctx)
    chosen = ans.allocation
    cmin, cmax = ctx.pts["C"].min(), ctx.pts["C"].max()
    c = np.geomspace(cmin, cmax * 1000, 40)
    curve = alloc.allocation_curve(ctx, c)
    a1 = alloc.approach1(ctx)
    has_min = minima is not None and len(minima) > 0
    if curve is None and not has_min and chosen is None and a1 is None:
        why = ctx.cache.get("alloc_why") or ctx.fit_why.get("lnd") or "no L(N, D) fit"
        return ctx.skip(name, f"no approach to compute-optimal allocation has anything to draw ({why})")
    fig, (axn, axd) = style.figure(2)
    pub = alloc.published_allocation(c)
    for ax, col, lab in ((axn, "N_opt", "N_opt, parameters"), (axd, "D_opt", "D_opt, tokens")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        if curve is not None:
            ax.plot(curve["C"], curve[col], **style.FIT, label="L(N, D) fit (Approach 3)")
            lo, hi = curve[f"{col[0]}_lo"], curve[f"{col[0]}_hi"]
            if lo.notna().any():
                ax.fill_between(curve["C"], lo, hi, color="black", alpha=0.12, lw=0, label="95% bootstrap")
        if has_min:
            y = minima["N_opt"] if col == "N_opt" else minima["budget"] / (6 * minima["N_opt"])
            if "N_lo" in minima:
                lo, hi = (minima["N_lo"], minima["N_hi"]) if col == "N_opt" else (
                    minima["budget"] / (6 * minima["N_hi"]), minima["budget"] / (6 * minima["N_lo"]))
                err = np.nan_to_num(np.vstack([y - lo, hi - y]), nan=0.0).clip(0)
                ax.errorbar(minima["budget"], y, yerr=err, fmt="*", ms=9, color="C3",
                            label="isoFLOP minima (Approach 2)")
            else:
                ax.plot(minima["budget"], y, "*", ms=9, color="C3", label="isoFLOP minima (Approach 2)")
        if col == "N_opt" and a1 is not None:
            ax.plot(a1.x, a1.y, ".", ms=3, color="C2", alpha=0.6, label="envelope points (Approach 1)")
        if chosen is not None:
            ci = chosen.get(f"{col}_ci")
            v = float(chosen[col])
            err = None if ci is None else [[v - ci[0]], [ci[1] - v]]
            ax.errorbar([chosen["C"]], [v], yerr=err, fmt="D", ms=6, color="C1", mec="black", mew=0.6,
                        capsize=3, zorder=5, label=f"the answer ({ans.chosen_label()})")
        for (pname, df), ls in zip(pub.items(), (":", "-."), strict=False):
            ax.plot(df["C"], df[col], color="0.45", ls=ls, lw=1.3, label=f"{pname} (published)")
        ax.axvspan(cmin, cmax, color="C0", alpha=0.06, lw=0)
        ax.set_xlabel("C, training compute (FLOPs)")
        ax.set_ylabel(lab)
    axn.set_title("Compute-optimal model size")
    axd.set_title("Compute-optimal tokens")
    axn.legend(loc="upper left")
    if curve is not None:
        ctx.note(name, "Dashed: N_opt(C) and D_opt(C) of the L(N, D) fit (Approach 3)"
                 + ("; shaded: 95% over its bootstrap refits (each refit's own optimum)."
                    if curve["N_lo"].notna().any() else "; no band: the fit has no bootstrap samples."))
    elif "lnd" in ctx.fits:
        ctx.note(name, f"No L(N, D) line: {ctx.cache.get('alloc_why', 'the fit cannot support one')}.")
    if has_min:
        ctx.note(name, "Stars: the isoFLOP parabola minima (Approach 2), with their 95% intervals.")
    if a1 is not None:
        ctx.note(name, "Green dots: the sizes on the lower envelope of the learning curves (Approach 1).")
    if chosen is not None:
        ctx.note(name, f"Diamond: the answer at C = {chosen['C']:.3g} FLOPs, from {ans.chosen_label()}, "
                       "with its 95% interval (see Answer).")
    elif ans.refused:
        ctx.note(name, "No answer is marked: it is refused (see Answer).")
    ctx.note(
        name,
        "Shaded blue: the compute range of the study's runs; right of it is extrapolation. Published lines "
        "use their papers' parameter counts (Kaplan: non-embedding; Hoffmann: all parameters).",
    )
    return fig
