"""Architecture figures (Kaplan et al. 2020): loss vs shape at fixed N (Fig. 5), loss by position in the
context (Fig. 20), LSTM vs transformer (Fig. 7) and transfer to other distributions (Fig. 8).

The numbers come from ``scalinglab.study.findings.summarize`` (one computation per report, cached in the
context), the same code `study run` prints its headlines with. Axes: N parameters (the study's count), loss
nats/token, t the token position in the context (1 = the first predicted token), log scales as in the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.report import style
from scalinglab.report.context import Context

LOSS = "loss, nats/token"
FAMILY = {"gpt": dict(color="C0", marker="o", label="transformer"), "lstm": dict(color="C3", marker="s",
                                                                                  label="LSTM")}


def findings(ctx: Context):
    """The study's architecture findings (cached): ``study.findings.Findings``."""
    if "findings" not in ctx.cache:
        from scalinglab.study.findings import summarize

        d = ctx.data
        r = d.runs
        r = r[(r["status"] == "done") & np.isfinite(r["loss"].astype(float)) & r[d.n_col].notna()]
        r = r[r["roles"].map(lambda x: set(x) != {"pilot"})]  # the noise-scale rule's short pilots
        runs = pd.DataFrame({"run_id": r["run_id"], "arch": r["arch"], "N": r[d.n_col].astype(float),
                             "loss": r["loss"].astype(float), "roles": r["roles"].map(set),
                             "n_layer": r["n_layer"], "d_model": r["d_model"], "n_head": r["n_head"],
                             "d_ff": r["d_ff"]})
        ctx.cache["findings"] = summarize(runs, d.positions, d.eval_sets)
    return ctx.cache["findings"]


def fig_shape(ctx: Context):
    from scalinglab.study.shape import KINDS

    name = "shape"
    groups = findings(ctx).shape
    if not groups:
        return ctx.skip(name, 'no shape sweep (a design = "shape" study: three or more shapes per fixed N)')
    kinds = [k for k in KINDS if any(g.kind == k for g in groups)]
    fig, axes = style.figure(len(kinds), sharey=True, cbar=True)
    axes = axes if isinstance(axes, list) else [axes]
    targets = sorted({g.n_target for g in groups})
    cols, norm, cmap = style.n_colors(targets)
    col = dict(zip(targets, cols, strict=True))
    tol = 100 * groups[0].result.tolerance
    for ax, kind in zip(axes, kinds, strict=True):
        ax.set_xscale("log")
        ax.axhline(tol, **style.PUBLISHED)
        for g in (g for g in groups if g.kind == kind):
            t, r = g.table, g.result
            ax.plot(t["ratio"], 100 * t["increase"], "o-", color=col[g.n_target], ms=4, lw=1.0,
                    label=f"N = {style.fmt_si(np.mean(g.n_measured))}")
            ax.axvspan(r.lo, r.hi, color=col[g.n_target], alpha=0.08, lw=0)
            ctx.note(name, g.describe() + ".")
        ax.set_xlabel(f"{KINDS[kind]} ({'aspect ratio' if kind == 'aspect' else 'ratio'})")
        what = {"aspect": "aspect ratio", "ff": "feed-forward ratio", "head": "head dimension"}[kind]
        single = f"Loss vs {what} at fixed N and D (Kaplan Fig. 5)"
        ax.set_title(single if len(kinds) == 1 else what.capitalize())
        ax.legend(loc="upper center")
    axes[0].set_ylabel("loss increase over the best shape at that N, %")
    ax0 = axes[-1]
    style.colorbar(fig, ax0, norm, cmap, "log10 N (target)")
    ax0.text(1.0, tol, f" {tol:g}%", transform=ax0.get_yaxis_transform(), va="bottom", ha="right",
             fontsize=7, color="0.4")
    ctx.note(name, f"Shaded: the range within {tol:g}% of the best (to where the line to the next point "
             "crosses it); every run at one N trains on the same tokens D.")
    return fig


def fig_position_loss(ctx: Context):
    name = "position_loss"
    f = findings(ctx)
    pos = ctx.data.positions
    pos = pos[pos["eval_set"] == "val"]
    cs = f.context
    if cs is None or len(cs.table) == 0:
        return ctx.skip(name, "no final loss by position in the store (runs record it from this version on)")
    table = cs.table.sort_values("N")
    fig, (ax, ax2) = style.figure(2, cbar=True)
    mixed = table["arch"].nunique() > 1
    curves = table[table["arch"] == "gpt"] if mixed else table  # LSTM curves: the LSTM figure
    cols, norm, cmap = style.n_colors(curves["N"].to_numpy())
    for (_, r), c in zip(curves.iterrows(), cols, strict=True):
        g = pos[pos["run_id"] == r["run_id"]].sort_values("position")
        ax.plot(g["position"], g["loss"], color=c, lw=1.0, alpha=0.9)
        t = g["position"].to_numpy(float)
        ax.plot(t, cs.fits[r["run_id"]].predict(t=t), "--", color="black", lw=0.7, alpha=0.8)
    ax.plot([], [], "-", color="0.3", label="measured" + (" (transformers)" if mixed else ""))
    ax.plot([], [], "--", color="black", lw=0.7, label="fit L_inf + (t/t_c)^-a")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t, token position in the context")
    ax.set_ylabel(f"final {LOSS} at position t")
    ax.set_title("Loss by position in the context (Kaplan Fig. 20)")
    ax.legend(loc="upper right")
    ax2.set_xscale("log")
    for arch, g in table.groupby("arch"):
        fam = FAMILY.get(arch, FAMILY["gpt"])
        err = np.vstack([g["a"] - g["a_lo"], g["a_hi"] - g["a"]]).clip(min=0)
        ok = (g["converged"] & ~g["at_bound"]).to_numpy()
        label = fam["label"]
        for sel, face in ((ok, fam["color"]), (~ok, "white")):  # open markers: at a bound, not converged
            if sel.any():
                ax2.errorbar(g["N"][sel], g["a"][sel], yerr=err[:, sel], fmt=fam["marker"],
                             color=fam["color"], mfc=face, ms=4, lw=0.8, capsize=2, label=label)
                label = None  # one legend entry per family
        tr = cs.trend.get(arch)
        if tr is not None:
            n = np.geomspace(g["N"].min(), g["N"].max(), 50)
            ax2.plot(n, tr.intercept + tr.slope * np.log10(n), "--", color=fam["color"], lw=1.0)
            ctx.note(name, f"a(N), {fam['label']}: {tr.describe()} (dashed).")
    ax2.set_xlabel(ctx.n_label)
    ax2.set_ylabel("a, power of the context dependence")
    ax2.set_title("Its power a vs model size")
    ax2.legend(loc="best")
    style.colorbar(fig, ax2, norm, cmap, "log10 N (curves)")
    bad = table[~table["converged"]]
    warned = int((table["warnings"] > 0).sum())
    ctx.note(name, "Per run (dashed: its fit) on the same validation tokens as its final loss; bars: 95% "
             "bootstrap intervals over positions (an interval ending at 5 is cut by the search bound of a); "
             "open markers: fits with a parameter at its bound or not converged, left out of the a(N) line."
             + (f" {len(bad)} fit(s) did not converge." if len(bad) else "")
             + (f" {warned} fit(s) carry warnings (see the study's output)." if warned else ""))
    return fig


def fig_lstm(ctx: Context):
    name = "lstm_vs_transformer"
    fam = findings(ctx).families
    if fam is None:
        return ctx.skip(name, 'no LSTM runs beside transformer runs (a study with [model] arch = ["gpt", '
                              '"lstm"])')
    d = ctx.data
    r = d.runs[(d.runs["status"] == "done") & np.isfinite(d.runs["loss"].astype(float))]
    fig, (ax, ax2) = style.figure(2)
    for ax_ in (ax, ax2):
        ax_.set_yscale("log")
    ax.set_xscale("log")
    for arch in ("gpt", "lstm"):
        g = r[r["arch"] == arch]
        st = FAMILY[arch]
        ax.plot(g[d.n_col], g["loss"], st["marker"], color=st["color"], ms=4, label=st["label"])
        f = fam.ln.get(arch)
        if f is not None:
            n = np.geomspace(g[d.n_col].min() / 1.5, g[d.n_col].max() * 3, 100)
            ax.plot(n, f.predict(N=n), "--", color=st["color"], lw=1.0)
            ctx.note(name, f"{st['label']}: L(N) = (N_c/N)^alpha_N with alpha_N = {f.params['alpha']:.3f} "
                     f"(dashed).")
    ax.set_xlabel(ctx.n_label)
    ax.set_ylabel(f"final {LOSS}")
    ax.set_title("Loss vs N by model family (Kaplan Fig. 7 left)")
    ax.legend(loc="upper right")
    b = fam.best
    if b is None:
        ax2.text(0.5, 0.5, "no loss by position", transform=ax2.transAxes, ha="center")
    else:
        pos = d.positions[d.positions["eval_set"] == "val"]
        for arch, rid, n in (("gpt", b["run_gpt"], b["N_gpt"]), ("lstm", b["run_lstm"], b["N_lstm"])):
            g = pos[pos["run_id"] == rid].sort_values("position")
            st = FAMILY[arch]
            ax2.plot(g["position"], g["loss"], color=st["color"], lw=1.1,
                     label=f"{st['label']}, N = {style.fmt_si(n)}")
        ax2.set_xscale("log")
        ctx.note(name, f"Right, at matched N: the LSTM's loss is {b['gap_early']:+.4f} nats/token above "
                 f"the transformer's at positions {b['early']} and {b['gap_late']:+.4f} at positions "
                 f"{b['late']}.")
    ax2.set_xlabel("t, token position in the context")
    ax2.set_ylabel(f"final {LOSS} at position t")
    ax2.set_title("Loss by position at matched N (Kaplan Fig. 7 right)")
    ax2.legend(loc="upper right")
    ctx.note(name, "The other figures and fits of this report use the transformer runs only.")
    return fig


def fig_transfer(ctx: Context):
    name = "transfer"
    tr = findings(ctx).transfer
    if not tr:
        return ctx.skip(name, "no extra evaluation sets ([eval] sets = [\"text:xz-docs\", ...] in the plan)")
    d = ctx.data
    archs = {a for by in tr.values() for a in by}
    arch = "gpt" if "gpt" in archs else sorted(archs)[0]
    r = d.runs[(d.runs["status"] == "done") & (d.runs["arch"] == arch)]
    r = r[np.isfinite(r["loss"].astype(float)) & r["run_id"].isin(d.eval_sets["run_id"])]
    fig, (ax, ax2) = style.figure(2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax2.set_xscale("log")
    ax.plot(r[d.n_col], r["loss"], "o", color="black", ms=4, label="training distribution (validation)")
    n_all = np.geomspace(r[d.n_col].min() / 1.5, r[d.n_col].max() * 3, 100)
    sets = d.eval_sets
    first = True
    for i, (set_name, by) in enumerate(sorted(tr.items())):
        if arch not in by:
            continue
        res, c = by[arch], f"C{i + 1}"
        g = sets[(sets["eval_set"] == set_name) & sets["run_id"].isin(r["run_id"])].merge(
            r[["run_id", d.n_col, "loss"]].rename(columns={"loss": "train"}), on="run_id")
        ax.plot(g[d.n_col], g["loss"], "s", color=c, ms=4, label=set_name)
        if res.other is not None:
            ax.plot(n_all, res.other.predict(N=n_all), "--", color=c, lw=1.0)
        if first and res.train is not None:
            ax.plot(n_all, res.train.predict(N=n_all), **style.FIT, label="power-law fits")
            first = False
        ax2.plot(g[d.n_col], np.log(g["loss"] / g["train"]), "s", color=c, ms=4, label=set_name)
        ax2.axhspan(*res.offset_ci, color=c, alpha=0.15, lw=0)
        ax2.axhline(res.offset, color=c, lw=0.9)
        ctx.note(name, f"{res.describe(set_name)}.")
    ax.set_xlabel(ctx.n_label)
    ax.set_ylabel(f"final {LOSS}")
    ax.set_title("Loss on other distributions vs N (Kaplan Fig. 8)")
    ax.legend(loc="upper right")
    ax2.set_xlabel(ctx.n_label)
    ax2.set_ylabel("log(L_other / L_train)")
    ax2.set_title("Offset in log space (flat: parallel lines)")
    ax2.legend(loc="best")
    ctx.note(name, f"Runs of the {FAMILY.get(arch, FAMILY['gpt'])['label']} family; right: the mean offset "
             "(line) and its 95% bootstrap interval over runs (band).")
    return fig
