"""Few-shot accuracy vs N per K (GPT-3 Fig. 3.x style), and the fit diagnostics: residuals of L(N, D) and the
back-test (fit without the largest runs, predict them, with intervals)."""

from __future__ import annotations

import numpy as np

from scalinglab.report import derive, style
from scalinglab.report.context import Context

MAX_TASKS = 3


def fig_fewshot(ctx: Context):
    name = "fewshot"
    ev = derive.eval_points(ctx.data)
    if len(ev) == 0:
        return ctx.skip(name, "no few-shot evaluations in the store")
    tasks = sorted(ev["series"].unique())  # a task, or a task and one of the ways it was scored
    if len(tasks) > MAX_TASKS:
        ctx.note(
            name, f"Showing {MAX_TASKS} of {len(tasks)} panels: {', '.join(tasks[MAX_TASKS:])} not drawn."
        )
        tasks = tasks[:MAX_TASKS]
    fig, axes = style.figure(len(tasks), sharey=True)
    axes = axes if isinstance(axes, list) else [axes]
    shots = sorted(ev["shots"].unique())
    cols, _, _ = style.n_colors(np.asarray(shots, float) + 1)
    for ax, task in zip(axes, tasks, strict=True):
        ax.set_xscale("log")
        for k, col in zip(shots, cols, strict=True):
            g = ev[(ev["series"] == task) & (ev["shots"] == k)]
            if len(g) == 0:
                continue
            g = g.groupby("N", as_index=False).agg(acc=("acc", "mean"), sem=("sem", "max"))
            ax.errorbar(
                g["N"],
                g["acc"],
                yerr=g["sem"],
                fmt="o-",
                ms=3.5,
                lw=1.0,
                capsize=2,
                color=col,
                label=f"K = {k}",
            )
        ax.set_title(task)
        ax.set_xlabel(ctx.n_label.split(",")[0] + ", parameters")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("accuracy (fraction correct)")
    axes[-1].legend(loc="lower right", title="shots")
    n_seeds = int(ev["n_seeds"].max())
    how = (
        f"standard error over {n_seeds} few-shot seeds"
        if n_seeds > 1
        else "binomial standard error over the evaluated documents (one seed)"
    )
    ctx.note(name, f"Error bars: {how}; one point per model size (runs of equal N averaged).")
    return fig


def fig_residuals(ctx: Context):
    name = "residuals"
    f = ctx.fit("lnd", name)
    if f is None:
        return ctx.skip(name, "no L(N, D) fit: " + ctx.fit_why.get("lnd", "not available"))
    p = ctx.pts
    pred = f.predict(N=p["N"].to_numpy(), D=p["D"].to_numpy())
    res = p["loss"].to_numpy() - pred
    bt = _backtest(ctx, f)
    fig, axes = style.figure(2) if bt is not None else style.figure(cbar=True)
    ax = axes[0] if isinstance(axes, list) else axes
    ax.set_xscale("log")
    cols, norm, cmap = style.n_colors(p["N"].to_numpy())
    ax.scatter(p["C"], res, c=cols, s=14)
    ctx.note(name, "Points coloured by log10 N (viridis, as elsewhere).")
    ax.axhline(0, color="black", lw=0.8)
    rmse = float(np.sqrt(np.mean(res**2)))
    ax.set_xlabel("C, training compute (FLOPs)")
    ax.set_ylabel("observed - fitted loss, nats/token")
    ax.set_title(f"Residuals of the L(N, D) fit (RMSE {rmse:.4f})")
    if bt is None:
        style.colorbar(fig, ax, norm, cmap, "log10 N")
    ctx.cache["lnd_rmse"] = rmse
    if bt is not None:
        ax2 = axes[1]
        obs, prd, lo, hi = bt
        lim = [min(obs.min(), prd.min()) * 0.98, max(obs.max(), prd.max()) * 1.02]
        ax2.plot(lim, lim, color="0.5", lw=0.8)
        if lo is not None:
            ax2.errorbar(
                obs,
                prd,
                yerr=np.vstack([prd - lo, hi - prd]).clip(0),
                fmt="o",
                color="C3",
                ms=4,
                capsize=2,
                label="held-out runs, 95% interval",
            )
        else:
            ax2.plot(obs, prd, "o", color="C3", ms=4, label="held-out runs")
        ax2.set_xlabel("observed loss, nats/token")
        ax2.set_ylabel("predicted loss, nats/token")
        ax2.set_title("Back-test: fit without the largest runs")
        ax2.legend(loc="upper left")
        ctx.note(name, "Right: the law refitted without the largest runs, predicting them"
                 + (" (bars: 95% prediction intervals)." if lo is not None else "."))
    else:
        ctx.note(name, "No back-test: " + ctx.cache.get("backtest_why", "not available") + ".")
    return fig


def _backtest(ctx: Context, f):
    """(observed, predicted, low, high) of the held-out runs: the stored back-test, or
    ``laws.fit.backtest`` holding out the largest 10% of runs by compute."""
    if "backtest" in ctx.cache:
        return ctx.cache["backtest"]
    out = None
    try:
        d = f.backtest
        if d is None:
            from scalinglab.laws.fit import backtest
            from scalinglab.report.fits import STARTS

            table = ctx.pts[["N", "D", "loss"]].assign(C=ctx.pts["C"])
            bt = backtest(
                f.form, table, holdout=max(2, len(table) // 10), by="C", bootstrap=100, seed=0, starts=STARTS
            )
            d = dict(observed=bt.observed, predicted=bt.predicted, low=bt.low, high=bt.high)
        if "error" in d:  # the study's back-test could not run
            raise ValueError(d["error"])
        obs = np.asarray(d["observed"], float)
        prd = np.asarray(d["predicted"], float)
        lo = np.asarray(d["low"], float) if d.get("low") is not None else None
        hi = np.asarray(d["high"], float) if d.get("high") is not None else None
        out = (obs, prd, lo, hi)
        covered = (obs >= lo) & (obs <= hi) if lo is not None else np.ones(len(obs), bool)
        ctx.cache["backtest_dict"] = {"rel_error": (prd - obs) / obs, "covered": covered}
    except Exception as e:  # too few runs, laws failing: the panel is left out and the caption says why
        ctx.cache["backtest_why"] = f"{type(e).__name__}: {e}"
    ctx.cache["backtest"] = out
    return out
