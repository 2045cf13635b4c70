"""After the runs: build each law's table from the store, fit it with `scalinglab.laws`, store the result.

Laws (names as in the plan's `fit.laws`):
- `L(N)`: final validation loss vs N (plan.params convention) of the L(N) runs (or, without them, the grid
  runs at the token budget that covers the most sizes); seeds averaged. Back-test: hold out the largest.
- `L(D)`: final loss vs tokens of the L(D) runs (or the grid runs of the largest model).
- `L(C_min)`: Kaplan's envelope / Hoffmann's Approach 1: the lower envelope of every learning curve (val
  loss vs C = 6 N tokens, C_min = C / (1 + B / B_crit) when B_crit(L) is fitted), with N_opt(C).
- `isoflop`: Hoffmann's Approach 2: per budget a parabola in log N, its minimum, N_opt ~ C^a.
- `L(N,D)`: Hoffmann's Approach 3 (Chinchilla form) on every finished run; N_opt ~ C^(beta/(alpha+beta)).
- `L(N,S)`: Kaplan eq. 1.6 on the learning curves of the L(N) runs (S_min when B_crit(L) is known).
- `B_crit(L)`: Kaplan eq. 1.4 on the measured noise scale B_simple (tokens) vs training loss.

A fit is stored with the hash of the table it was fitted on: an unchanged table is not re-fitted, so a
study killed while fitting re-fits only what it had not stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.study.plan import Plan
from scalinglab.study.store import Store

Echo = Callable[[str], None]
CURVE_SKIP = 0.1  # learning-curve points before this fraction of a run are left out (warmup, transients)


def _as_dict(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


FIT_VERSION = 2  # bump when a law's fitting changes: stored fits of another version are redone


def data_hash(law: str, df: pd.DataFrame, extra: Any = None) -> str:
    """Hash of what a fit depends on: the law, its table, its options (`extra`) and FIT_VERSION."""
    blob = json.dumps(
        {
            "law": law,
            "version": FIT_VERSION,
            "rows": np.round(df.to_numpy(dtype=float), 12).tolist(),
            "cols": list(df.columns),
            "extra": extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- tables


def finished_runs(store: Store, plan: Plan, ids: list[str]) -> pd.DataFrame:
    """Done runs of the plan with a finite final validation loss; N under plan.params; seeds kept."""
    runs = store.runs_frame()
    runs = runs[runs["run_id"].isin(ids) & (runs["status"] == "done")].copy()
    runs = runs[np.isfinite(runs["final_val_loss"].astype(float))]
    runs["N"] = runs[f"n_{plan.params}"].astype(float)
    runs["D"] = runs["tokens"].astype(float)
    runs["C"] = 6.0 * runs["N"] * runs["D"]
    runs["loss"] = runs["final_val_loss"].astype(float)
    runs["roles"] = runs["roles"].map(lambda r: set(json.loads(r)))
    cfg = runs["config"].map(json.loads)
    runs["group"] = cfg.map(lambda c: json.dumps({k: v for k, v in c.items() if k != "seed"}, sort_keys=True))
    arch = cfg.map(lambda c: c.get("arch", "gpt"))
    if arch.nunique() > 1:  # one law per model family: the transformer's (LSTMs: study.findings)
        runs = runs[arch == "gpt"]
    return runs


def seed_mean(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per config (seeds averaged): N, D, C, loss, the roles of its runs and the seed spread."""
    if runs.empty:
        return pd.DataFrame(columns=["N", "D", "C", "loss", "loss_std", "n_seeds", "roles", "batch_size"])
    g = runs.groupby("group", sort=False)
    out = g.agg(
        N=("N", "first"),
        D=("D", "first"),
        C=("C", "first"),
        loss=("loss", "mean"),
        loss_std=("loss", "std"),
        n_seeds=("loss", "size"),
        batch_size=("batch_size", "first"),
    )
    out["roles"] = g["roles"].agg(lambda s: set().union(*s))
    return out.reset_index(drop=True).sort_values(["N", "D"]).reset_index(drop=True)


def table_l_n(points: pd.DataFrame) -> pd.DataFrame:
    pts = points[points["roles"].map(lambda r: "L(N)" in r)]
    if pts.empty:  # the grid's token budget with the most sizes (ties: the largest budget)
        grid = points[points["roles"].map(lambda r: "grid" in r)]
        if grid.empty:
            return grid[["N", "loss"]]
        cover = grid.groupby("D")["N"].nunique()
        d = max(cover.index, key=lambda x: (cover[x], x))
        pts = grid[grid["D"] == d]
    return pts[["N", "loss"]].sort_values("N").reset_index(drop=True)


def table_l_d(points: pd.DataFrame) -> pd.DataFrame:
    pts = points[points["roles"].map(lambda r: "L(D)" in r)]
    if pts.empty:
        grid = points[points["roles"].map(lambda r: "grid" in r)]
        if grid.empty:
            return grid[["D", "loss"]]
        pts = grid[grid["N"] == grid["N"].max()]
    return pts[["D", "loss"]].sort_values("D").reset_index(drop=True)


def table_isoflop(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, p in points.iterrows():
        for role in p["roles"]:
            if role.startswith("isoflop:"):
                rows.append({"C": float(role.split(":", 1)[1]), "N": p["N"], "D": p["D"], "loss": p["loss"]})
    return pd.DataFrame(rows, columns=["C", "N", "D", "loss"])


def table_l_nd(points: pd.DataFrame) -> pd.DataFrame:
    keep = points["roles"].map(lambda r: bool(r - {"extra", "pilot"}))
    return points[keep][["N", "D", "loss"]].reset_index(drop=True)


def curves(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """Validation learning curves of the given runs: run_id, N, B (tokens/step), step, S, tokens, C, loss."""
    m = store.metrics_frame()
    m = m[m["run_id"].isin(runs["run_id"]) & m["val_loss"].notna()].copy()
    info = runs.set_index("run_id")
    m["N"] = m["run_id"].map(info["N"])
    m["B"] = m["run_id"].map(
        info["batch_size"].astype(float) * info["config"].map(lambda c: json.loads(c)["n_ctx"])
    )
    m["steps"] = m["run_id"].map(info["steps"].astype(float))
    m["C"] = 6.0 * m["N"] * m["tokens"].astype(float)
    m["loss"] = m["val_loss"].astype(float)
    m["S"] = m["step"].astype(float)
    m = m[(m["step"] >= CURVE_SKIP * m["steps"]) & np.isfinite(m["loss"])]
    return m[["run_id", "N", "B", "step", "S", "tokens", "C", "loss"]].reset_index(drop=True)


def table_noise(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    n = store.noise_frame()
    n = n[n["run_id"].isin(runs["run_id"])].copy()
    steps = n["run_id"].map(runs.set_index("run_id")["steps"].astype(float))
    n = n[(n["step"] >= CURVE_SKIP * steps) & (n["b_simple_tokens"] > 0) & (n["train_loss"] > 0)]
    return pd.DataFrame(
        {"L": n["train_loss"].astype(float), "B": n["b_simple_tokens"].astype(float)}
    ).dropna()


# ---------------------------------------------------------------------------------------------- fitting


def backtest_dict(bt: Any) -> dict[str, Any]:
    """A BacktestResult as JSON: `rel_error` and `covered` of the largest held-out run (scalars), every
    held-out run's values (`observed`, `predicted`, `low`, `high`: the 95 % prediction interval, `rel_errors`,
    `covered_all`), and the parameters fitted on the rest."""
    order = np.argsort(np.asarray(bt.variables[bt.by] if bt.by in bt.variables else bt.observed))
    last = int(order[-1]) if len(order) else 0
    rel = np.asarray(bt.rel_error, dtype=float)
    cov = np.asarray(bt.covered, dtype=bool)
    return {
        "by": bt.by,
        "holdout": int(rel.size),
        "rel_error": float(rel[last]),
        "covered": bool(cov[last]),
        "mean_abs_rel_error": float(bt.mean_abs_rel_error),
        "coverage": float(bt.coverage),
        "observed": [float(x) for x in bt.observed],
        "predicted": [float(x) for x in bt.predicted],
        "low": [float(x) for x in bt.low],
        "high": [float(x) for x in bt.high],
        "rel_errors": [float(x) for x in rel],
        "covered_all": [bool(x) for x in cov],
        "variables": {k: [float(x) for x in v] for k, v in bt.variables.items()},
        "fit_params": dict(bt.fit.params),
        "fit_converged": bool(bt.fit.converged),
    }


def _fit_form(
    form_name: str,
    var: str | None,
    df: pd.DataFrame,
    plan: Plan,
    *,
    target: str = "loss",
    holdout: bool = True,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from scalinglab.laws.fit import backtest, fit
    from scalinglab.laws.forms import get_form

    form = get_form(form_name, var)
    res = fit(form, df, loss=target, bootstrap=plan.fit.bootstrap, seed=0)
    bt = None
    if holdout:
        by = "N" if "N" in form.variables else form.variables[0]
        try:
            bt = backtest_dict(backtest(form, df, holdout=plan.fit.backtest_holdout, by=by, loss=target))
        except Exception as e:  # a back-test that cannot run (too few points) is reported, not fatal
            bt = {"error": f"{type(e).__name__}: {e}"}
    return res.to_dict(samples=res.samples is not None), bt


def _l_cmin(store: Store, runs: pd.DataFrame, bcrit: dict | None) -> pd.DataFrame:
    """Learning-curve points (run_id, N, C, loss); C becomes C_min = C / (1 + B / B_crit(L)) if fitted."""
    cv = curves(store, runs)
    if bcrit is not None and len(cv):
        from scalinglab.laws.batch import c_min
        from scalinglab.laws.forms import get_form

        bc = get_form("bcrit").predict(bcrit["params"], L=cv["loss"].to_numpy())
        cv["C"] = c_min(cv["C"].to_numpy(), cv["B"].to_numpy(), np.asarray(bc))
    return cv[["run_id", "N", "C", "loss"]]


def _envelope(cv: pd.DataFrame, plan: Plan) -> tuple[dict[str, Any], None]:
    """Kaplan's L(C_min) (a power law in C on the lower envelope) with Approach 1's N_opt ~ C^a."""
    from scalinglab.laws.allocate import approach1, frontier
    from scalinglab.laws.fit import fit

    env = frontier(cv, C="C", loss="loss", N="N", run="run_id")
    res = fit("power", env[["C", "loss"]], var="C", loss="loss").to_dict()
    res["approach1"] = approach1(cv, C="C", loss="loss", N="N", run="run_id").to_dict()
    res["envelope"] = {k: [float(x) for x in env[k]] for k in ("C", "loss", "N")}
    return res, None


def _isoflop(df: pd.DataFrame) -> tuple[dict[str, Any], None]:
    """Approach 2 as a fit row: params {a, k} of N_opt = k C^a, r2_log of that log-log line."""
    from scalinglab.laws.allocate import isoflop

    r = isoflop(df).to_dict()
    return {
        "law": "isoflop",
        "params": {"a": r["a"], "k": r["k"]},
        "converged": True,
        "r2_log": r["r2"],
        **r,
    }, None


def fit_study(store: Store, plan: Plan, ids: list[str], echo: Echo = print) -> list[dict[str, Any]]:
    """Fit every law the plan asks for on the study's finished runs; returns the stored fit rows."""
    runs = finished_runs(store, plan, ids)
    points = seed_mean(runs)
    sleep = float(os.environ.get("SCALINGLAB_STUDY_FIT_SLEEP", "0") or 0)  # test hook: a slow fitting phase
    laws = list(plan.fit.laws)
    order = sorted(laws, key=lambda x: x != "B_crit(L)")  # B_crit first: L(C_min) and L(N,S) use it
    fitted: dict[str, dict] = {}
    for law in order:
        try:
            out = None if len(runs) == 0 else _fit_one(law, store, plan, runs, points, fitted)
            if out is None:
                # a fit stored earlier (other runs, other options) would be shown as this study's: drop it
                gone = " (its earlier fit removed)" if store.drop_fit(law) else ""
                echo(f"fit {law}: skipped (too few finished runs for it){gone}")
                continue
            df, thunk, extra = out
            # the plan's [fit] options (bootstrap, forms, hold-outs) are part of what a stored fit depends on
            h = data_hash(law, df, [extra, plan.fit.model_dump(mode="json")])
            if store.fit_hash(law) == h:  # fitted before on the same table (e.g. before a kill)
                fitted[law] = next(f for f in store.fits() if f["law"] == law)
                continue
            if sleep:
                time.sleep(sleep)
            with warnings.catch_warnings(), np.errstate(all="ignore"):  # overflow in far-off starts: harmless
                warnings.simplefilter("ignore", RuntimeWarning)
                res, bt = thunk()
        except Exception as e:  # one law failing never stops the others
            gone = " (its earlier fit removed)" if store.drop_fit(law) else ""
            echo(f"fit {law}: failed ({type(e).__name__}: {e}){gone}")
            continue
        store.put_fit(law, h, res, bt)
        fitted[law] = {"law": law, "result": res, "backtest": bt}
    return [f for f in store.fits() if f["law"] in laws]


def _fit_one(law, store, plan, runs, points, fitted):
    """(table, thunk giving (result dict, backtest dict), extra) for one law, or None to skip it."""
    min_pts = 3
    if law == "L(N)":
        df = table_l_n(points)
        if len(df) < min_pts:
            return None
        return df, lambda: _fit_form(plan.fit.l_n_form, "N", df, plan), plan.fit.l_n_form
    if law == "L(D)":
        df = table_l_d(points)
        if len(df) < min_pts:
            return None
        return df, lambda: _fit_form(plan.fit.l_d_form, "D", df, plan), plan.fit.l_d_form
    if law == "L(N,D)":
        df = table_l_nd(points)
        if len(df) < 6 or df["D"].nunique() < 2:
            return None
        return df, lambda: _fit_form("chinchilla", None, df, plan), None
    if law == "isoflop":
        df = table_isoflop(points)
        if df.empty:
            return None
        return df, lambda: _isoflop(df), None
    if law == "L(C_min)":
        bc = fitted.get("B_crit(L)")
        cv = _l_cmin(store, runs, bc["result"] if bc else None)
        if cv["run_id"].nunique() < 2:
            return None
        return cv[["N", "C", "loss"]], lambda: _envelope(cv, plan), bool(bc)
    if law == "L(N,S)":
        pts = runs[runs["roles"].map(lambda r: "L(N)" in r)]
        cv = curves(store, pts if len(pts) else runs)
        bc = fitted.get("B_crit(L)")
        if bc is not None and len(cv):
            from scalinglab.laws.batch import s_min
            from scalinglab.laws.forms import get_form

            b = get_form("bcrit").predict(bc["result"]["params"], L=cv["loss"].to_numpy())
            cv["S"] = s_min(cv["S"].to_numpy(), cv["B"].to_numpy(), np.asarray(b))
        df = cv[["N", "S", "loss"]]
        if cv["N"].nunique() < 2 or len(df) < 8:
            return None
        return df, lambda: _fit_form("kaplan-ns", None, df, plan, holdout=False), bool(bc)
    if law == "B_crit(L)":
        df = table_noise(store, runs)
        if len(df) < min_pts:
            return None
        return df, lambda: _fit_form("bcrit", None, df, plan, target="B", holdout=False), None
    raise ValueError(f"unknown law {law!r}")


# ---------------------------------------------------------------------------------------------- summary


def fit_rows(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pinned `study fit --json` rows: law, params, converged, r2_log, backtest {rel_error, covered}."""
    out = []
    for f in fits:
        r = f["result"] or {}
        bt = f.get("backtest") or {}
        out.append(
            {
                "law": f["law"],
                "params": r.get("params", {}),
                "converged": r.get("converged"),
                "r2_log": r.get("r2_log"),
                "warnings": list(r.get("warnings") or []),
                "backtest": {
                    "rel_error": bt.get("rel_error"),
                    "covered": bt.get("covered"),
                    **{k: v for k, v in bt.items() if k not in ("rel_error", "covered")},
                }
                if bt
                else None,
            }
        )
    return out


def nopt_exponents(fits: list[dict[str, Any]]) -> dict[str, float | None]:
    """N_opt ~ C^a of Hoffmann's three approaches, from the stored fits (None where not fitted)."""
    by = {f["law"]: f["result"] or {} for f in fits}
    a3 = None
    p = by.get("L(N,D)", {}).get("params")
    if p and p.get("alpha") and p.get("beta"):
        a3 = p["beta"] / (p["alpha"] + p["beta"])
    a1 = (by.get("L(C_min)") or {}).get("approach1", {}).get("a")
    a2 = (by.get("isoflop") or {}).get("params", {}).get("a")
    return {"approach1_envelope": a1, "approach2_isoflop": a2, "approach3_parametric": a3}


def allocation(store: Store, plan: Plan, ids: list[str], fits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The compute-optimal allocation for 10x the largest run's compute, from the L(N,D) fit."""
    by = {f["law"]: f for f in fits}
    if "L(N,D)" not in by:
        return None
    from scalinglab.laws.allocate import allocate

    runs = finished_runs(store, plan, ids)
    if runs.empty:
        return None
    c = 10.0 * float(runs["C"].max())
    a = allocate(c, by["L(N,D)"]["result"]).to_dict()
    return {k: v for k, v in a.items() if not isinstance(v, (dict, list))}


def allocation_caveats(fits: list[dict[str, Any]]) -> list[str]:
    """What limits the allocation: the verdict of the L(N, D) fit it comes from."""
    lnd = next((f["result"] or {} for f in fits if f["law"] == "L(N,D)"), {})
    if lnd.get("converged", True) and not lnd.get("warnings"):
        return []
    return [f"the L(N,D) fit it comes from has {len(lnd.get('warnings', []))} warning(s) (above)"
            + ("" if lnd.get("converged", True) else " and did not converge") + ": treat it as indicative"]


def print_summary(store: Store, plan: Plan, ids: list[str], fits: list[dict[str, Any]], echo: Echo) -> None:
    """The fits, the three approaches' N_opt(C) exponents, the allocation for 10x the largest run."""
    if not fits:
        echo("fits: none (too few finished runs for the laws asked)")
        return
    echo("fits:")
    for row in fit_rows(fits):
        ps = ", ".join(f"{k}={v:.4g}" for k, v in row["params"].items() if isinstance(v, (int, float)))
        r2 = f", R2(log)={row['r2_log']:.4f}" if isinstance(row["r2_log"], (int, float)) else ""
        bt = row["backtest"]
        btxt = ""
        if bt and isinstance(bt.get("rel_error"), (int, float)):
            btxt = f", back-test rel. error {100 * bt['rel_error']:+.2f}% (covered: {bt.get('covered')})"
        echo(
            f"  {row['law']:10s} {ps}{r2}{btxt}"
            + ("" if row["converged"] in (True, None) else "  [NOT CONVERGED]")
        )
        for w in row["warnings"]:
            echo(f"      warning: {w}")
    ex = nopt_exponents(fits)
    if any(v is not None for v in ex.values()):
        a1, a2, a3 = ("-" if v is None else f"{v:.3f}" for v in ex.values())
        echo(f"N_opt ~ C^a: Approach 1 (envelope) {a1} | 2 (isoFLOP) {a2} | 3 (parametric L(N,D)) {a3}")
    try:
        a = allocation(store, plan, ids, fits)
    except Exception as e:  # the allocation is a summary line, never fatal
        echo(f"allocation: not computed ({type(e).__name__}: {e})")
        a = None
    if a:
        parts = ", ".join(
            f"{k}={v:.4g}" for k, v in a.items() if isinstance(v, (int, float)) and math.isfinite(v)
        )
        echo(f"allocation for 10x the largest run: {parts}")
        for line in allocation_caveats(fits):
            echo(f"      caution: {line}")
