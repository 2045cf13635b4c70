"""Batch-size figures: the gradient noise scale vs loss with the B_crit(L) fit (Kaplan Fig. 10), and the
steps / examples trade-off of a batch sweep (McCandlish Fig. 3; Kaplan eq. 5.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.report import derive, style
from scalinglab.report.bands import draw_fit
from scalinglab.report.context import Context

N_BINS = 8


def _binned(pts):
    """Median B_simple and loss per run in N_BINS log-loss bins (thousands of noisy points -> a few
    hundred)."""
    ll = np.log(pts["loss"].to_numpy(float))
    g = pd.Series(ll).groupby(pts["run_id"].to_numpy())
    lo, hi = g.transform("min").to_numpy(), g.transform("max").to_numpy()
    b = np.minimum((N_BINS * (ll - lo) / np.maximum(hi - lo, 1e-12)).astype(int), N_BINS - 1)
    keyed = pts[["loss", "B_simple", "N"]].assign(_r=pts["run_id"].to_numpy(), _b=b)
    return keyed.groupby(["_r", "_b"], sort=False).median().reset_index(drop=True)


def fig_noise_scale(ctx: Context):
    name = "noise_scale"
    pts = derive.noise_points(ctx.data)
    if len(pts) == 0:
        return ctx.skip(name, "no gradient noise scale measurements (gns_b_simple_tokens) in the metrics")
    fig, ax = style.figure(cbar=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    med = _binned(pts)
    cols, norm, cmap = style.n_colors(med["N"].to_numpy())
    ax.scatter(med["loss"], med["B_simple"], c=cols, s=9, alpha=0.8, lw=0)
    lgrid = np.geomspace(pts["loss"].min() * 0.9, pts["loss"].max() * 1.05, 100)
    f = ctx.fit("bcrit", name)
    if f is not None:
        ctx.note(name, "Dashed: B_crit(L) = B_star / L^(1/alpha_B) fitted to every measurement.")
        draw_fit(ctx, name, ax, f, lgrid, "L", label=f.label("fit B_crit = B_star / L^(1/alpha_B)"))
    from scalinglab.laws.presets import get_preset

    kap = get_preset("kaplan2020-Bcrit")
    ax.plot(
        lgrid,
        kap.predict(L=lgrid),
        **style.PUBLISHED,
        label=f"Kaplan 2020: {kap.params['B_star']:.2g} / L^(1/{kap.params['alpha_B']:g})",
    )
    ax.set_xlabel("L, training loss at the measurement, nats/token")
    ax.set_ylabel("B_simple, gradient noise scale (tokens)")
    ax.set_title("Noise scale vs loss, with the B_crit(L) fit")
    ax.invert_xaxis()
    style.colorbar(fig, ax, norm, cmap, "log10 N")
    ax.legend(loc="upper left")
    ctx.note(
        name,
        f"Points: the median B_simple of each run in {N_BINS} log-loss bins over the run's range "
        f"({len(pts)} measurements; the fit uses them all).",
    )
    ctx.note(
        name,
        "Loss decreases to the right (axis inverted), as in Kaplan Fig. 10. The Kaplan line is for "
        "WebText2 BPE tokens: compare the slope, not the level.",
    )
    return fig


def fig_steps_examples(ctx: Context):
    name = "steps_examples"
    sweep = derive.batch_sweeps(ctx.pts)
    if len(sweep) == 0:
        return ctx.skip(name, "no batch sweep (one N and D trained at three or more batch sizes)")
    tab = derive.steps_to_targets(ctx.cur, sweep)
    if tab["target"].nunique() == 0:
        return ctx.skip(name, "the batch sweep's runs reach no common target loss")
    fig, ax = style.figure()
    ax.set_xscale("log")
    ax.set_yscale("log")
    targets = sorted(tab["target"].unique())
    cols, _, _ = style.n_colors(targets)
    fits = derive.sweep_fits(tab).set_index("target")
    for t, col in zip(targets, cols, strict=True):
        g = tab[tab["target"] == t].sort_values("B")
        ax.plot(g["E"], g["S"], "o", color=col, ms=4, label=f"L = {t:.3f}")
        if t in fits.index:
            s_min, e_min, bc = fits.loc[t, ["S_min", "E_min", "B_crit"]]
            b = np.geomspace(g["B"].min() / 4, g["B"].max() * 4, 100)
            ax.plot(e_min * (1 + b / bc), s_min * (1 + bc / b), color=col, lw=0.9)
            ax.plot([2 * e_min], [2 * s_min], "D", color=col, mec="black", mew=0.5, ms=4)
    if len(fits):
        ctx.note(
            name,
            "B_crit = E_min/S_min at L = "
            + ", ".join(f"{t:.3f}: {style.fmt_si(b)}" for t, b in fits["B_crit"].items())
            + " tokens.",
        )
    ax.set_xlabel("E, training tokens to reach the loss")
    ax.set_ylabel("S, optimizer steps to reach the loss")
    ax.set_title("Steps vs examples across batch sizes")
    ax.legend(loc="upper right")
    if len(fits):
        ctx.note(
            name,
            "Curves: (S/S_min - 1)(E/E_min - 1) = 1 fitted through each target's points (no band: "
            "laws.batch.fit_tradeoff gives no interval); diamonds: B = B_crit (S = 2 S_min, E = 2 E_min).",
        )
    return fig
