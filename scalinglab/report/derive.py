"""Tables the figures draw from, derived from ``StudyData`` (pandas/numpy only; no fitting here).

Units: N parameters (the study's chosen count), D tokens, C training FLOPs (6ND, or the trainer's
cumulative ``flops_6n``), loss nats/token, B tokens per step, S optimizer steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.report.data import StudyData

DONE = ("done",)


def final_points(data: StudyData) -> pd.DataFrame:
    """One row per finished run: run_id, N, D, C, loss, B (batch tokens), S (steps).
    Diverged, failed and unfinished runs are left out; so are the LSTMs of a study with both model families
    (the laws are the transformer's; the LSTM comparison figure draws both)."""
    r = data.runs
    ok = r["status"].isin(DONE) & np.isfinite(r["loss"].astype(float)) & r[data.n_col].notna()
    if "arch" in r.columns and r["arch"].nunique() > 1:
        ok &= r["arch"] == "gpt"
    r = r[ok]
    c = 6.0 * r[data.n_col] * r["tokens"]
    if data.param_count == "kaplan":  # the trainer's 6N count, where the store has it
        c = r["flops"].where(r["flops"].notna() & (r["flops"] > 0), c)
    out = pd.DataFrame(
        {
            "run_id": r["run_id"],
            "N": r[data.n_col],
            "D": r["tokens"],
            "C": c,
            "loss": r["loss"],
            "B": r["batch_tokens"],
        }
    )
    out["S"] = out["D"] / out["B"]
    out["roles"] = r["roles"]
    return out.reset_index(drop=True)


def curves(data: StudyData, loss: str = "val_loss") -> pd.DataFrame:
    """Learning curves of finished runs: run_id, step, tokens, C (cumulative FLOPs), loss, N, D, B."""
    pts = final_points(data)
    m = data.metrics
    if len(m) == 0 or m[loss].notna().sum() == 0:
        return pd.DataFrame(columns=["run_id", "step", "tokens", "C", "loss", "N", "D", "B"])
    m = m[m[loss].notna() & (m["tokens"] > 0) & (m["step"] > 0)]
    m = m.merge(pts[["run_id", "N", "D", "B"]], on="run_id", how="inner")
    c = 6.0 * m["N"] * m["tokens"]
    if data.param_count == "kaplan" and m["flops_6n"].notna().all():
        c = m["flops_6n"]
    return pd.DataFrame(
        {
            "run_id": m["run_id"],
            "step": m["step"],
            "tokens": m["tokens"],
            "C": c,
            "loss": m[loss],
            "N": m["N"],
            "D": m["D"],
            "B": m["B"],
        }
    ).reset_index(drop=True)


def envelope(cur: pd.DataFrame, n_bins: int = 40) -> pd.DataFrame:
    """The compute frontier (Kaplan Fig. 1 left; Hoffmann Approach 1): the lowest loss reached by any run at
    each compute, as the lower-left Pareto set of all (C, loss) points thinned to ``n_bins`` log-C bins.
    Columns C, loss, run_id, N."""
    if len(cur) == 0:
        return pd.DataFrame(columns=["C", "loss", "run_id", "N"])
    s = cur.sort_values("C", kind="stable")
    best = np.minimum.accumulate(s["loss"].to_numpy())
    keep = s["loss"].to_numpy() <= best  # a new running minimum: on the frontier
    f = s[keep]
    bins = np.linspace(np.log10(f["C"].min()), np.log10(f["C"].max()) + 1e-9, n_bins + 1)
    idx = np.digitize(np.log10(f["C"]), bins)
    f = f.assign(_bin=idx).sort_values("loss").groupby("_bin", as_index=False).first()
    return f[["C", "loss", "run_id", "N"]].sort_values("C").reset_index(drop=True)


def isoflop_sets(pts: pd.DataFrame, rel_tol: float = 0.06, min_size: int = 3) -> pd.DataFrame:
    """Runs grouped into isoFLOP sets: equal C within ``rel_tol`` and at least ``min_size`` distinct N.
    Adds column ``budget`` (the set's median C); runs in no set are dropped."""
    if len(pts) == 0:
        return pts.assign(budget=[])
    s = pts.sort_values("C").reset_index(drop=True)
    group, start, gid = np.zeros(len(s), int), float(s["C"].iloc[0]), 0
    for i, c in enumerate(s["C"]):
        if c > start * (1 + rel_tol):
            gid, start = gid + 1, float(c)
        group[i] = gid
    s["group"] = group
    sizes = s.groupby("group")["N"].nunique()
    s = s[s["group"].isin(sizes[sizes >= min_size].index)]
    s["budget"] = s.groupby("group")["C"].transform("median")
    return s.drop(columns="group").reset_index(drop=True)


def batch_sweeps(pts: pd.DataFrame, min_size: int = 3) -> pd.DataFrame:
    """Runs of one N and (nearly) one D at several batch sizes: the data of the steps/examples trade-off."""
    if len(pts) == 0 or pts["B"].isna().all():
        return pts.iloc[0:0]
    p = pts.dropna(subset=["B"]).assign(
        _n=lambda d: d["N"].round(), _d=lambda d: np.round(np.log10(d["D"]), 1)
    )
    sizes = p.groupby(["_n", "_d"])["B"].nunique()
    good = sizes[sizes >= min_size].index
    return p.set_index(["_n", "_d"]).loc[list(good)].reset_index(drop=True) if len(good) else pts.iloc[0:0]


def steps_to_targets(cur: pd.DataFrame, sweep: pd.DataFrame, n_targets: int = 4) -> pd.DataFrame:
    """For each target loss reached by every run of a sweep: steps S and examples E (tokens) to reach it.
    Columns target, run_id, B, S, E. The first crossing is interpolated in log steps."""
    if len(sweep) == 0:
        return pd.DataFrame(columns=["target", "run_id", "B", "S", "E"])
    c = cur[cur["run_id"].isin(sweep["run_id"])]
    worst_final = c.groupby("run_id")["loss"].min().max()
    best_start = c.groupby("run_id")["loss"].first().min()
    targets = np.geomspace(worst_final * 1.01, min(best_start, worst_final * 1.25), n_targets)
    rows = []
    for rid, g in c.groupby("run_id"):
        g = g.sort_values("step")
        run_min = np.minimum.accumulate(g["loss"].to_numpy())
        ls = np.log(g["step"].to_numpy(float))
        b = float(g["B"].iloc[0])
        for t in targets:
            hit = np.nonzero(run_min <= t)[0]
            if len(hit) == 0 or hit[0] == 0:
                continue
            j = hit[0]
            l0, l1 = run_min[j - 1], run_min[j]
            w = (l0 - t) / (l0 - l1) if l0 > l1 else 1.0
            s = float(np.exp(ls[j - 1] + w * (ls[j] - ls[j - 1])))
            rows.append(dict(target=float(t), run_id=rid, B=b, S=s, E=s * b))
    return pd.DataFrame(rows, columns=["target", "run_id", "B", "S", "E"])


def sweep_fits(tab: pd.DataFrame) -> pd.DataFrame:
    """Per target loss: S_min, E_min and B_crit = E_min/S_min from S = S_min (1 + B_crit/B) (McCandlish 2018
    eq. 2.11; Kaplan eq. 5.1), fitted by ``scalinglab.laws.batch.fit_tradeoff``. Needs three batch sizes per
    target; targets without a positive (S_min, E_min) are dropped."""
    from scalinglab.errors import InputError
    from scalinglab.laws.batch import fit_tradeoff

    rows = []
    for t, g in tab.groupby("target"):
        if g["B"].nunique() < 3:
            continue
        try:
            f = fit_tradeoff(g["B"].to_numpy(float), g["S"].to_numpy(float))
        except InputError:
            continue
        rows.append(dict(target=float(t), S_min=float(f["S_min"]), E_min=float(f["E_min"]),
                         B_crit=float(f["B_crit"])))
    return pd.DataFrame(rows, columns=["target", "S_min", "E_min", "B_crit"])


def noise_points(data: StudyData) -> pd.DataFrame:
    """Gradient noise scale measurements: run_id, step, loss (train loss at the step), B_simple (tokens),
    N."""
    m = data.metrics
    if len(m) == 0 or m["gns_b_simple_tokens"].notna().sum() == 0:
        return pd.DataFrame(columns=["run_id", "step", "loss", "B_simple", "N"])
    from scalinglab.laws.batch import past_warmup

    m = m[(m["gns_b_simple_tokens"] > 0) & m["train_loss"].notna() & (m["train_loss"] > 0)]
    m = m[past_warmup(m["step"], m.groupby("run_id")["step"].transform("max"))]  # the study's rule
    pts = final_points(data)[["run_id", "N"]]
    m = m.merge(pts, on="run_id", how="inner")
    return pd.DataFrame(
        {
            "run_id": m["run_id"],
            "step": m["step"],
            "loss": m["train_loss"],
            "B_simple": m["gns_b_simple_tokens"],
            "N": m["N"],
        }
    ).reset_index(drop=True)


def eval_points(data: StudyData) -> pd.DataFrame:
    """Few-shot accuracy per (task, scorer, preset, shots, run): the mean over seeds and its standard error
    (over seeds when there are several, else the binomial error over documents, ``se_docs``), with N and
    loss. ``series`` names what one panel shows: the task, with the scorer and preset added when the task
    was scored more than one way."""
    e = data.evals
    if len(e) == 0:
        cols = ["task", "scorer", "preset", "series", "shots", "run_id", "acc", "sem", "n_seeds", "N", "loss"]
        return pd.DataFrame(columns=cols)
    g = e.groupby(["task", "scorer", "preset", "shots", "run_id"])
    out = pd.DataFrame(
        {
            "acc": g["accuracy"].mean(),
            "sd": g["accuracy"].std(ddof=1),
            "n_seeds": g["accuracy"].count(),
            "se_docs": g["se_docs"].mean(),
        }
    ).reset_index()
    over_seeds = out["sd"] / np.sqrt(out["n_seeds"])
    out["sem"] = over_seeds.where(out["n_seeds"] > 1, out["se_docs"]).fillna(0.0)
    out = out.merge(final_points(data)[["run_id", "N", "loss"]], on="run_id", how="inner")
    ways = out.groupby("task")[["scorer", "preset"]].apply(lambda d: len(d.drop_duplicates()))
    out["series"] = [
        t if ways[t] == 1 else f"{t} [{', '.join(x for x in (sc, pr) if x)}]"
        for t, sc, pr in zip(out["task"], out["scorer"], out["preset"], strict=True)
    ]
    return out.drop(columns=["sd", "se_docs"])


def budgets(pts: pd.DataFrame, factors: tuple[int, ...] = (10, 100, 1000)) -> list[tuple[int, float]]:
    """(factor, C) for compute budgets ``factor`` x the largest run's training FLOPs."""
    if len(pts) == 0:
        return []
    cmax = float(pts["C"].max())
    return [(f, f * cmax) for f in factors]
