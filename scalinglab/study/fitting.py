"""After the runs: build each law's table from the store, fit it with `scalinglab.laws`, store the result.

Which laws there are, their tables, forms and order come from ``scalinglab.study.laws.LAWS`` (one row per
law); this module holds the tables and the fitting steps they use. Laws (names as in the plan's `fit.laws`):
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
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.faults import point
from scalinglab.study import laws as study_laws
from scalinglab.study.laws import ANSWER, ANSWER_FROM  # noqa: F401  (re-exported)
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


FIT_VERSION = 4  # bump when a law's fitting changes: stored fits of another version are redone


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
        return pd.DataFrame(
            columns=["group", "N", "D", "C", "loss", "loss_std", "n_seeds", "roles", "batch_size"]
        )
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
    return out.reset_index().sort_values(["N", "D"]).reset_index(drop=True)


def table_l_n(points: pd.DataFrame) -> pd.DataFrame:
    pts = points[points["roles"].map(lambda r: "L(N)" in r)]
    if pts.empty:  # the grid's token budget with the most sizes (ties: the largest budget)
        grid = points[points["roles"].map(lambda r: "grid" in r)]
        if grid.empty:
            return grid[["N", "loss", "D"]]
        cover = grid.groupby("D")["N"].nunique()
        d = max(cover.index, key=lambda x: (cover[x], x))
        pts = grid[grid["D"] == d]
    return pts[["N", "loss", "D"]].sort_values("N").reset_index(drop=True)  # D: where it was measured


def table_l_d(points: pd.DataFrame) -> pd.DataFrame:
    pts = points[points["roles"].map(lambda r: "L(D)" in r)]
    if pts.empty:
        grid = points[points["roles"].map(lambda r: "grid" in r)]
        if grid.empty:
            return grid[["D", "loss", "N"]]
        pts = grid[grid["N"] == grid["N"].max()]
    return pts[["D", "loss", "N"]].sort_values("D").reset_index(drop=True)  # N: where it was measured


def table_isoflop(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, p in points.iterrows():
        for role in p["roles"]:
            if role.startswith("isoflop:"):
                rows.append({"C": float(role.split(":", 1)[1]), "N": p["N"], "D": p["D"], "loss": p["loss"]})
    return pd.DataFrame(rows, columns=["C", "N", "D", "loss"])


def table_l_nd(points: pd.DataFrame) -> pd.DataFrame:
    # repeated-data runs (roles "repeat:U") are the `repeat` law's: their D is not unique tokens
    keep = points["roles"].map(lambda r: any(not x.startswith("repeat:") for x in r - {"extra", "pilot"}))
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
    from scalinglab.laws.batch import past_warmup

    n = n[past_warmup(n["step"], steps) & (n["b_simple_tokens"] > 0) & (n["train_loss"] > 0)]
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
    res = fit(form, df, loss=target, bootstrap=plan.fit.bootstrap, seed=0,
              bootstrap_method=plan.fit.bootstrap_method)
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


def _envelope(cv: pd.DataFrame, plan: Plan) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Kaplan's L(C_min) (a power law in C on the lower envelope) with Approach 1's N_opt ~ C^a, both with
    the plan's bootstrap. Back-test: the runs that own the envelope's largest-C points are removed
    entirely (their earlier points too), the envelope of the other runs is refitted, and it predicts the
    held-out points."""
    from scalinglab.laws.allocate import approach1, frontier
    from scalinglab.laws.fit import BacktestResult, fit

    b = plan.fit.bootstrap
    env = frontier(cv, C="C", loss="loss", N="N", run="run_id")
    res_fit = fit("power", env[["C", "loss"]], var="C", loss="loss", bootstrap=b, seed=0,
                  bootstrap_method=plan.fit.bootstrap_method)
    res = res_fit.to_dict(samples=res_fit.samples is not None)
    res["approach1"] = approach1(cv, C="C", loss="loss", N="N", run="run_id", bootstrap=b, seed=0).to_dict()
    res["envelope"] = {k: [float(x) for x in env[k]] for k in ("C", "loss", "N")}
    bt = None
    held_runs = set(env["run"].iloc[-plan.fit.backtest_holdout :])
    rest = cv[~cv["run_id"].isin(held_runs)]
    try:
        if rest["run_id"].nunique() < 2:
            raise ValueError("fewer than 2 runs left after holding out the largest")
        e2 = frontier(rest, C="C", loss="loss", N="N", run="run_id")
        test = env[env["run"].isin(held_runs) & (env["C"] > e2["C"].max())]
        if test.empty:
            raise ValueError("the held-out runs add no envelope point beyond the others' compute")
        f2 = fit("power", e2[["C", "loss"]], var="C", loss="loss", bootstrap=max(b, 100), seed=0)
        lo, hi = f2.predict_interval(C=test["C"].to_numpy())
        bt = backtest_dict(BacktestResult(
            fit=f2, by="C", observed=test["loss"].to_numpy(), predicted=np.asarray(f2.predict(C=test["C"])),
            low=lo, high=hi, variables={"C": test["C"].to_numpy()}))
    except Exception as e:  # too few runs: reported, not fatal
        bt = {"error": f"{type(e).__name__}: {e}"}
    return res, bt


def _isoflop(df: pd.DataFrame, plan: Plan) -> tuple[dict[str, Any], None]:
    """Approach 2 as a fit row: params {a, k} of N_opt = k C^a, r2_log of that log-log line, and the
    bootstrap interval of a (the plan's bootstrap)."""
    from scalinglab.laws.allocate import isoflop

    r = isoflop(df, bootstrap=plan.fit.bootstrap, seed=0).to_dict()
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
    laws = study_laws.fit_order(list(plan.fit.laws))  # + the compute-optimal answer; each after what it reads
    ctx = study_laws.FitContext(store, plan, runs, points)
    fitted = ctx.fitted
    failures: dict[str, str] = {}
    for law in laws:
        try:
            out = None if len(runs) == 0 else study_laws.get_law(law).prepare(ctx)
            if out is None:
                # a fit stored earlier (other runs, other options) would be shown as this study's: drop it
                gone = " (its earlier fit removed)" if store.drop_fit(law) else ""
                echo(f"fit {law}: skipped (too few finished runs for it){gone}")
                failures[law] = "skipped: too few finished runs for it"
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
            failures[law] = f"failed: {type(e).__name__}: {e}"
            continue
        point("fit.law")
        store.put_fit(law, h, res, bt)
        fitted[law] = {"law": law, "result": res, "backtest": bt}
    store.set_meta("fit_failures", failures)
    return [f for f in store.fits() if f["law"] in laws]


def target_flops(plan: Plan, runs: pd.DataFrame) -> float:
    """The allocation's budget (FLOPs): the plan's fit.target_flops, else 10x the largest run."""
    return float(plan.fit.target_flops or 10.0 * float(runs["C"].max()))


def floors(fitted: dict[str, dict], points: pd.DataFrame) -> list:
    """Irreducible losses of this study's identified fits, with where each applies (laws.consensus.Floor):
    L(N)'s L_inf at the D of its runs, L(D)'s at the N of its runs, L(N,D)'s E everywhere. (L(C_min) is a
    pure power law in C: no L_inf to offer.)"""
    from scalinglab.laws.consensus import Floor

    out = []
    for law, key in (("L(N)", "L_inf"), ("L(D)", "L_inf"), ("L(N,D)", "E")):
        r = (fitted.get(law) or {}).get("result") or {}
        ci = (r.get("ci95") or {}).get(key)
        if ci is None or key in (r.get("at_bound") or []) + (r.get("not_identified") or []):
            continue
        if not r.get("converged") or not np.isfinite(ci[0]):
            continue
        scope = {}
        if law == "L(N)":  # fitted at a fixed D: a floor for runs with no more data
            scope["max_D"] = float(table_l_n(points)["D"].max())
        if law == "L(D)":  # fitted at a fixed N: a floor for models no larger
            scope["max_N"] = float(table_l_d(points)["N"].max())
        out.append(Floor(low=float(ci[0]), source=f"{key} of {law}", **scope))
    return out


def _consensus(store: Store, plan: Plan, runs: pd.DataFrame, points: pd.DataFrame, fitted: dict):
    """(table, thunk, extra) of the compute-optimal answer (laws.consensus) from the fitted laws."""
    from scalinglab.laws.consensus import consensus
    from scalinglab.laws.fit import FitResult, fit

    pts = points[points["roles"].map(lambda r: bool(r - {"extra", "pilot"}))].copy()
    if len(pts) == 0:
        return None
    pts["run"] = pts["group"]
    pts["budget"] = pts["roles"].map(
        lambda r: next((float(x.split(":", 1)[1]) for x in sorted(r) if x.startswith("isoflop:")), np.nan)
    )
    cv = None
    if "L(C_min)" in fitted:
        bc = fitted.get("B_crit(L)")
        cv = _l_cmin(store, runs, bc["result"] if bc else None)
        cv = cv.assign(run=cv["run_id"].map(runs.set_index("run_id")["group"]))
        cv = cv[cv["run"].isin(set(pts["run"]))][["run", "N", "C", "loss"]]
    lnd = None
    if "L(N,D)" in fitted and (fitted["L(N,D)"].get("result") or {}).get("params"):
        lnd = FitResult.from_dict(fitted["L(N,D)"]["result"])
    target = target_flops(plan, runs)
    fl = floors(fitted, points)
    b = plan.fit.bootstrap

    def refit(df: pd.DataFrame):
        return fit("chinchilla", df[["N", "D", "loss"]], bootstrap=b, seed=0,
                   bootstrap_method=plan.fit.bootstrap_method)

    def thunk():
        c = consensus(pts[["run", "N", "D", "C", "loss", "budget"]], cv, target_C=target, lnd=lnd,
                      fit_lnd=refit, floors=fl, bootstrap=max(b, 2) if b else 0, seed=0)
        return c.to_dict(), None

    deps = [(fitted.get(k) or {}).get("data_hash") or store.fit_hash(k) for k in ANSWER_FROM]
    table = pts[["N", "D", "C", "loss", "budget"]].fillna(0.0)
    return table, thunk, [deps, target, [f.to_dict() for f in fl]]


# ---------------------------------------------------------------------------------------------- summary


def fit_document(store: Store, fits: list[dict[str, Any]]) -> dict[str, Any]:
    """``study fit --json``: the rows (``fit_rows``), the N_opt exponents, the compute-optimal answer (the
    three approaches, their agreement, the allocation with intervals or why it is refused) and the laws
    that could not be fitted, with the reason."""
    ans = answer(fits)
    return {
        "fits": fit_rows([f for f in fits if f["law"] != ANSWER]),
        "nopt_exponents": nopt_exponents(fits),
        "compute_optimal": ans,
        "allocation": None if not ans else {**(ans.get("allocation") or {}), "refused": ans.get("refused")},
        "failed": store.get_meta("fit_failures", {}),
    }


def fit_rows(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pinned `study fit --json` rows: law, params, converged, r2_log, backtest {rel_error, covered}.
    A row is also a whole fit dict (``FitResult.to_dict()`` keys: form, var, ci95, samples, ...), so a row
    is what ``allocate --law`` and ``predict`` read."""
    out = []
    for f in fits:
        r = f["result"] or {}
        bt = f.get("backtest") or {}
        out.append(
            {
                **{k: v for k, v in r.items() if k not in ("law", "backtest")},
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
    aps = (by.get(ANSWER) or {}).get("approaches") or {}
    if aps:
        get = {k: (aps.get(k) or {}).get("a") for k in ("1", "2", "3")}
        return {
            "approach1_envelope": get["1"],
            "approach2_isoflop": get["2"],
            "approach3_parametric": get["3"],
        }
    a3 = None
    p = by.get("L(N,D)", {}).get("params")
    if p and p.get("alpha") and p.get("beta"):
        a3 = p["beta"] / (p["alpha"] + p["beta"])
    a1 = (by.get("L(C_min)") or {}).get("approach1", {}).get("a")
    a2 = (by.get("isoflop") or {}).get("params", {}).get("a")
    return {"approach1_envelope": a1, "approach2_isoflop": a2, "approach3_parametric": a3}


def answer(fits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stored compute-optimal answer (``laws.consensus.Consensus.to_dict()``), or None."""
    return next(((f["result"] or None) for f in fits if f["law"] == ANSWER), None)


def allocation(store: Store, plan: Plan, ids: list[str], fits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The compute-optimal allocation at the plan's target (default 10x the largest run's compute), with
    95 % intervals, from the study's answer (None when there is none; ``refused`` says why when refused)."""
    ans = answer(fits)
    if not ans or ans.get("allocation") is None:
        return None
    return {**ans["allocation"], "refused": ans.get("refused") or ans["allocation"].get("refused"),
            "from": ans.get("chosen")}
