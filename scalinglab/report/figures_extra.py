"""Figures of the study's `downstream` (accuracy from loss, OLMo ladder) and `repeat` (repeated data) laws,
drawn from their stored fits (``scalinglab.study.fitting_extra``)."""

from __future__ import annotations

import numpy as np

from scalinglab.report import style
from scalinglab.report.context import Context

MAX_TASKS = 2


def _stored(ctx: Context, law: str) -> dict | None:
    return next((f.get("result") for f in ctx.data.fits if f.get("law") == law and f.get("result")), None)


def _downstream_now(ctx: Context) -> dict | None:
    """No stored `downstream` fit: fit it here from the evaluations (at most MAX_TASKS (task, K), a 50-draw
    bootstrap, no back-test), predicting the largest run scaled by sqrt(10) in N and D."""
    import pandas as pd

    from scalinglab.report import derive
    from scalinglab.study.fitting_extra import downstream_result

    e = ctx.data.evals
    if len(e) == 0:
        return None
    g = e.groupby(["task", "shots", "run_id"], as_index=False).agg(
        acc=("accuracy", "mean"), task_loss=("task_loss", "mean")
    )
    pts = derive.final_points(ctx.data)[["run_id", "N", "D", "loss"]]
    df = g.merge(pts, on="run_id", how="inner")
    if len(df) < 4:
        return None
    big = pts.assign(C=6.0 * pts["N"] * pts["D"]).sort_values("C").iloc[-1]
    target = (
        float(big["N"]) * 10**0.5,
        float(big["D"]) * 10**0.5,
        "the largest run scaled by sqrt(10) in N and D",
    )
    res, _ = downstream_result(
        pd.DataFrame(df), target, bootstrap=50, starts=300, backtest=False, max_groups=MAX_TASKS
    )
    ctx.note(
        "downstream",
        "Fitted for this report (no stored downstream fit): a 50-draw bootstrap, no "
        'back-test; `study fit` with "downstream" in fit.laws stores the full one.',
    )
    return res


def fig_downstream(ctx: Context):
    """Per task (at most two): task loss against compute (step 1) and accuracy against task loss (step 2),
    with the predicted target and its 95 % interval; the back-test on the largest rung in the caption."""
    from scalinglab.laws.downstream import sigmoid
    from scalinglab.laws.forms import get_form

    name = "downstream"
    res = _stored(ctx, "downstream")
    if res is None:
        try:
            res = _downstream_now(ctx)
        except ValueError as e:  # no (task, K) with enough evaluated runs
            return ctx.skip(name, f"no downstream fit: {e}")
    if res is None:
        return ctx.skip(name, "no few-shot evaluations of finished runs to fit accuracy against loss")
    tasks = res.get("tasks") or []
    if len(tasks) > MAX_TASKS:
        rest = ", ".join(f"{t['task']}@K{t['shots']}" for t in tasks[MAX_TASKS:])
        ctx.note(name, f"Showing {MAX_TASKS} of {len(tasks)} tasks: {rest} not drawn.")
        tasks = tasks[:MAX_TASKS]
    fig, axes = style.figure(2 * len(tasks), wide=True)
    for i, t in enumerate(tasks):
        ax1, ax2 = axes[2 * i], axes[2 * i + 1]
        pts = t["points"]
        n, d, L, acc = (np.asarray(pts[k], float) for k in ("N", "D", "L", "acc"))
        c = 6.0 * n * d
        tg = t["target"]
        s1 = t["step1"]
        form = get_form(s1["law"], var=s1.get("var"))
        cols, _, _ = style.n_colors(n)
        ax1.set_xscale("log")
        ax1.scatter(c, L, c=cols, s=14, zorder=3)
        ct = 6.0 * tg["N"] * tg["D"]
        grid_c = np.geomspace(c.min(), ct, 60)
        ratio = float(np.median(d / n))  # the curve at the runs' median tokens per parameter
        grid_n = np.sqrt(grid_c / (6.0 * ratio))
        var = {"C": grid_c} if set(form.variables) == {"C"} else {"N": grid_n, "D": ratio * grid_n}
        ax1.plot(grid_c, form.predict(s1["params"], **var), "--", color="0.3", lw=1.0)
        ax1.plot([ct], [tg["task_loss"]], "*", color="C3", ms=10, zorder=4, label="target")
        ax1.set_xlabel("C = 6ND, FLOPs")
        ax1.set_ylabel(
            f"{'task loss, nats/byte' if t['x'] == 'task_loss' else 'validation loss, nats/token'}"
        )
        ax1.set_title(f"{t['task']} K={t['shots']}: step 1")
        ax1.legend(loc="upper right")
        grid_l = np.linspace(0.0, max(L.max(), tg["task_loss"]) * 1.2, 200)
        ax2.plot(grid_l, sigmoid(grid_l, **t["params"]), "--", color="0.3", lw=1.0)
        ax2.scatter(L, acc, c=cols, s=14, zorder=3)
        ax2.errorbar(
            [tg["task_loss"]],
            [tg["acc"]],
            yerr=[[tg["acc"] - tg["low"]], [tg["high"] - tg["acc"]]],
            fmt="*",
            color="C3",
            ms=10,
            capsize=3,
            zorder=4,
            label="target, 95 % interval",
        )
        bt = t.get("backtest") or {}
        ax2.set_xlabel(ax1.get_ylabel())
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_title(f"{t['task']} K={t['shots']}: step 2")
        ax2.legend(loc="lower left")
        note = (
            f"{t['task']} K={t['shots']}: predicted accuracy {100 * tg['acc']:.1f} % "
            f"[{100 * tg['low']:.1f}, {100 * tg['high']:.1f}] at N = {style.fmt_si(tg['N'])}, "
            f"D = {style.fmt_si(tg['D'])} ({tg['how']})"
        )
        if "abs_error" in bt:
            note += (
                f"; back-test on the largest rung: {100 * bt['abs_error']:+.1f} points "
                f"({'inside' if bt['covered'] else 'outside'} its interval)"
            )
        ctx.note(name, note + ".")
    return fig


def fig_repeat(ctx: Context):
    """Loss against epochs over each unique-token subset, with the fitted data-constrained law."""
    from scalinglab.laws.repeat import repeat_loss

    name = "repeat"
    res = _stored(ctx, "repeat")
    if res is None:
        return ctx.skip(name, 'no repeat fit (plan a [repeat] design and add "repeat" to fit.laws)')
    pts = {k: np.asarray(v, float) for k, v in res["points"].items()}
    p = res["params"]
    fig, ax = style.figure()
    ax.set_xscale("log")
    cols, _, _ = style.n_colors(pts["N"])
    ep = pts["D"] / pts["U"]
    ax.scatter(ep, pts["loss"], c=cols, s=16, zorder=3)
    for n in np.unique(pts["N"]):
        for u in np.unique(pts["U"][pts["N"] == n]):
            e = np.geomspace(1.0, ep.max() * 1.5, 60)
            ax.plot(e, repeat_loss(n, e * u, u, p, rn_star=p.get("rn_star")), "--", color="0.4", lw=0.8)
    ax.set_xlabel("epochs over the unique tokens (D / U)")
    ax.set_ylabel("validation loss, nats/token")
    ax.set_title(f"Repeated data: R_D* = {p['rd_star']:.3g}")
    ci = (res.get("ci95") or {}).get("rd_star")
    ctx.note(
        name,
        f"Dashed: the data-constrained law with R_D* = {p['rd_star']:.3g}"
        + (f" (95 % interval {ci[0]:.3g} to {ci[1]:.3g})" if ci else "")
        + "; no band (the stored fit keeps no bootstrap curves); points coloured by model size.",
    )
    return fig
