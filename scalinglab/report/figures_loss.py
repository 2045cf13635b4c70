"""Loss figures: loss vs compute (Kaplan Fig. 1 left), vs D and vs N, the L(N, D) family, learning curves.

Each ``fig_*(ctx) -> Figure | None``; None means the study lacks the data (the reason is in ctx.skipped).
Axes: loss in nats/token, N parameters, D tokens, C FLOPs, S optimizer steps; log scales as in the papers.
"""

from __future__ import annotations

import numpy as np

from scalinglab.report import derive, style
from scalinglab.report.bands import draw_fit
from scalinglab.report.context import Context

LOSS = "loss, nats/token"


def _curve_lines(ax, cur, x: str, colors_by_run: dict):
    """All learning curves as one LineCollection (fast to draw and to save as PDF)."""
    from matplotlib.collections import LineCollection

    segs, cols = [], []
    for rid, g in cur.groupby("run_id", sort=False):
        segs.append(np.column_stack([g[x].to_numpy(float), g["loss"].to_numpy(float)]))
        cols.append(colors_by_run[rid])
    ax.add_collection(LineCollection(segs, colors=cols, linewidths=0.9, alpha=0.8))
    ax.autoscale_view()


def _run_colors(ctx: Context):
    n = ctx.pts.set_index("run_id")["N"]
    cols, norm, cmap = style.n_colors(n.to_numpy())
    return dict(zip(n.index, cols, strict=True)), norm, cmap


def _no_curves(ctx: Context) -> str:
    """Why there are no learning curves to draw: no finished run, or no validation rows."""
    if len(ctx.pts) == 0:
        return "no finished run (done, with a finite final loss), and only finished runs' curves are drawn"
    return "no learning curves (metrics rows with val_loss) of the finished runs in the store"


def fig_loss_vs_compute(ctx: Context):
    name = "loss_vs_compute"
    if len(ctx.cur) == 0:
        return ctx.skip(name, _no_curves(ctx))
    fig, ax = style.figure(cbar=True)
    by_run, norm, cmap = _run_colors(ctx)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _curve_lines(ax, ctx.cur, "C", by_run)
    env = derive.envelope(ctx.cur)
    ax.plot(env["C"], env["loss"], "o", ms=2.5, color="black", label="frontier (lowest loss at C)")
    f = ctx.fit("frontier", name)
    if f is not None:
        c = np.geomspace(ctx.cur["C"].min(), ctx.cur["C"].max() * 10, 200)
        ctx.note(name, "Dashed: L(C) = L_inf + (C_0/C)^alpha fitted to the frontier, extended 10x beyond the "
                       "largest run (grey vertical line).")
        draw_fit(ctx, name, ax, f, c, "C", label=f.label("frontier fit"))
        ax.axvline(ctx.cur["C"].max(), color="0.6", lw=0.6)
    ax.set_xlabel("C, training compute (FLOPs, 6ND)")
    ax.set_ylabel(LOSS)
    ax.set_title("Loss vs compute, every finished run's learning curve")
    style.colorbar(fig, ax, norm, cmap, "log10 N")
    ax.legend(loc="upper right")
    return fig


def fig_loss_vs_tokens(ctx: Context):
    name = "loss_vs_tokens"
    if len(ctx.pts) < 2:
        return ctx.skip(name, "fewer than two finished runs")
    fig, ax = style.figure(cbar=True)
    by_run, norm, cmap = _run_colors(ctx)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.scatter(ctx.pts["D"], ctx.pts["loss"], c=[by_run[r] for r in ctx.pts["run_id"]], s=14, zorder=3)
    f = ctx.fit("ld", name)
    if f is not None:
        d = np.geomspace(ctx.pts["D"].min(), ctx.pts["D"].max() * 3, 200)
        ctx.note(name, "Dashed: a power law plus constant fitted to the best loss reached with at most D "
                       "tokens, extended 3x beyond the most tokens used.")
        draw_fit(ctx, name, ax, f, d, "D", label=f.label("data-frontier fit"))
        ax.legend(loc="upper right")
    ax.set_xlabel("D, training tokens")
    ax.set_ylabel(LOSS)
    ax.set_title("Final loss vs data (Kaplan Fig. 1, middle)")
    style.colorbar(fig, ax, norm, cmap, "log10 N")
    return fig


def fig_loss_vs_params(ctx: Context):
    name = "loss_vs_params"
    if ctx.pts["N"].nunique() < 2:
        return ctx.skip(name, "fewer than two model sizes")
    fig, ax = style.figure()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.scatter(ctx.pts["N"], ctx.pts["loss"], s=10, color="0.7", label="every run", zorder=2)
    best = ctx.pts.groupby("N", as_index=False)["loss"].min()
    ax.plot(best["N"], best["loss"], "o", color="C0", ms=5, label="best run per N", zorder=3)
    f = ctx.fit("ln", name)
    if f is not None:
        n = np.geomspace(best["N"].min(), best["N"].max() * 10, 200)
        ctx.note(name, "Dashed: a power law plus constant fitted to the best run per size, extended 10x "
                       "beyond the largest model.")
        draw_fit(ctx, name, ax, f, n, "N", label=f.label("fit"))
    ax.set_xlabel(ctx.n_label)
    ax.set_ylabel(LOSS)
    ax.set_title("Loss vs model size (Kaplan Fig. 1, right)")
    ax.legend(loc="upper right")
    return fig


def fig_lnd_family(ctx: Context):
    name = "lnd_family"
    p = ctx.pts.assign(Dg=np.round(np.log10(ctx.pts["D"]), 2))
    sizes = p.groupby("Dg")["N"].nunique()
    groups = sizes[sizes >= 3].index
    if len(groups) == 0:
        return ctx.skip(name, "no token budget D was trained at three or more model sizes")
    fig, ax = style.figure()
    ax.set_xscale("log")
    ax.set_yscale("log")
    cols, norm, cmap = style.n_colors(10.0 ** np.asarray(groups, float))
    f = ctx.fit("lnd", name)
    n_all = np.geomspace(p["N"].min() / 1.5, p["N"].max() * 3, 150)
    if f is not None:
        ctx.note(name, "Dashed, in each line's colour: the Chinchilla form L = E + A/N^alpha + B/D^beta "
                       "fitted to every finished run, drawn at that D.")
    for g, col in zip(groups, cols, strict=True):
        s = p[p["Dg"] == g].sort_values("N")
        d = float(s["D"].median())
        ax.plot(s["N"], s["loss"], "o-", color=col, ms=4, lw=0.8, label=f"D = {style.fmt_si(d)} tokens")
        if f is not None:
            draw_fit(ctx, name, ax, f, n_all, "N", color=col, light=True, D=d)
    if f is not None:
        bad = f.unidentified()
        if "E" in bad:
            why = "; ".join(x for x in f.support_problems() if x.startswith("E")) or "E is not pinned down"
            ctx.note(name, f"No D -> infinity line: {why}, so the fit says nothing about the loss with "
                           "unlimited data.")
        else:
            ctx.note(name, "Black dashed: the fit with D -> infinity (E + A/N^alpha).")
            draw_fit(ctx, name, ax, f, n_all, "N", label="fit, D -> infinity", D=1e30)
        if bad:
            ctx.note(name, f"The fit does not pin down {', '.join(bad)}: its curves describe these runs, "
                           "not an extrapolation.")
    ax.set_xlabel(ctx.n_label)
    ax.set_ylabel(LOSS)
    ax.set_title("The L(N, D) family: loss vs N, one line per D")
    ax.legend(loc="upper right", ncols=2 if len(groups) > 4 else 1)
    return fig


def fig_learning_curves(ctx: Context):
    name = "learning_curves"
    if len(ctx.cur) == 0:
        return ctx.skip(name, _no_curves(ctx))
    fig, ax = style.figure(cbar=True)
    by_run, norm, cmap = _run_colors(ctx)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _curve_lines(ax, ctx.cur, "step", by_run)
    f = ctx.fit("ns", name)
    if f is not None:
        how = (
            "; the study fitted it on S_min = S/(1 + B_crit/B), so the curves sit left of the data"
            if f.source.startswith("stored")
            else " (the report's own fit, on raw steps)"
        )
        ctx.note(name, f"Dashed: the fitted L(N, S) at each N, drawn against raw steps{how}.")
        for n, g in ctx.cur.groupby("N"):
            s = np.geomspace(max(1.0, g["step"].min()), g["step"].max(), 80)
            draw_fit(ctx, name, ax, f, s, "S", color=by_run[g["run_id"].iloc[0]], light=True, N=n)
        ax.plot([], [], **style.FIT, label=f.label("L(N, S) fit"))
        ax.legend(loc="upper right")
    ax.set_xlabel("S, optimizer steps")
    ax.set_ylabel(LOSS)
    ax.set_title("Learning curves vs steps")
    style.colorbar(fig, ax, norm, cmap, "log10 N")
    return fig
