"""The study laws beyond loss against scale: `repeat` (repeated data) and `downstream` (accuracy from loss).

- `repeat`: the runs of the plan's ``[repeat]`` design (k epochs over U unique tokens, roles ``repeat:U``)
  fit Muennighoff et al.'s decay constant R_D* (``scalinglab.laws.repeat.fit_repeat``; R_N* too with
  ``repeat.fit_rn``), with E, A, B, alpha, beta held at the study's `L(N,D)` fit (fitted here on the
  unique-data runs when the plan does not ask for it). Back-test: refit without the largest epoch count and
  predict those runs.
- `downstream`: for each stored (task, K) with at least 4 evaluated runs, the OLMo ladder's two steps
  (``scalinglab.laws.downstream``): task loss against N and D (or C), accuracy against task loss; the
  accuracy predicted, with its 95 % interval, for 10x the largest run's compute (at the `L(N,D)` fit's
  compute-optimal N and D when there is one, else the largest run scaled by sqrt(10) in N and D), and a
  back-test on the largest rung. Bootstrap: the plan's ``fit.bootstrap``, at least 100; step 1 from a
  seeded 500-start subsample of the Chinchilla grid (it is fitted per task and again per back-test).

Both return what a law's ``StudyLaw.prepare`` returns (``scalinglab.study.laws``): (the table the fit
depends on, a thunk giving (result dict, back-test dict), the options the stored fit depends on), or None
when there are too few runs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

MIN_BOOTSTRAP = 100
DOWNSTREAM_STARTS = 500  # step 1 runs per task and again in its back-test: a seeded 500-start subsample


def _unique_tokens(runs: pd.DataFrame) -> pd.Series:
    return runs["config"].map(lambda c: json.loads(c).get("unique_tokens"))


def _base_params(points: pd.DataFrame, fitted: dict[str, Any], plan=None) -> tuple[dict[str, float], str]:
    """E, A, B, alpha, beta of the study's L(N,D) fit (or one fitted here on the unique-data runs)."""
    lnd = fitted.get("L(N,D)")
    if lnd is not None:
        return dict(lnd["result"]["params"]), "the study's L(N,D) fit"
    from scalinglab.laws.fit import fit
    from scalinglab.study.fitting import table_l_nd

    df = table_l_nd(points)
    if len(df) < 6 or df["D"].nunique() < 2:
        raise ValueError(
            "the repeat law needs an L(N,D) fit on unique-data runs (>= 6 runs, 2 token budgets)"
        )
    return dict(fit("chinchilla", df, seed=0).params), "an L(N,D) fit of the unique-data runs"


def _repeat_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per repeated-data config (seeds averaged): N, D (tokens trained), U (unique tokens), loss."""
    rep = runs[runs["roles"].map(lambda r: any(x.startswith("repeat:") for x in r))].copy()
    if rep.empty:
        return pd.DataFrame(columns=["N", "D", "U", "loss"])
    rep["U"] = _unique_tokens(rep).astype(float)
    g = rep.groupby("group", sort=False).agg(
        N=("N", "first"), D=("D", "first"), U=("U", "first"), loss=("loss", "mean")
    )
    return g.reset_index(drop=True).sort_values(["U", "N", "D"]).reset_index(drop=True)


def _fit_repeat_law(df: pd.DataFrame, base: dict[str, float], how: str, plan) -> tuple[dict, dict | None]:
    from scalinglab.laws.repeat import fit_repeat

    boot = max(plan.fit.bootstrap, MIN_BOOTSTRAP)
    res = fit_repeat(df, base, fit_rn=plan.repeat.fit_rn, bootstrap=boot, seed=0)
    out = res.to_dict()
    out["notes"] = [f"E, A, B, alpha, beta held at {how}"]
    out["points"] = {k: [float(x) for x in df[k]] for k in ("N", "D", "U", "loss")}
    bt = None
    epochs = df["D"] / df["U"]
    top = epochs.max()
    train = df[epochs < top * 0.999]
    if (train["D"] > train["U"] * 1.01).sum() >= 2 and len(train) >= 3:
        try:
            sub = fit_repeat(train, base, fit_rn=plan.repeat.fit_rn)
            held = df[epochs >= top * 0.999]
            pred = sub.predict(held["N"], held["D"], held["U"])
            rel = (pred - held["loss"].to_numpy()) / held["loss"].to_numpy()
            bt = {
                "by": "epochs",
                "holdout": int(len(held)),
                "rel_error": float(rel[np.argmax(held["N"])]),
                "covered": None,
                "rel_errors": [float(x) for x in rel],
                "fit_params": dict(sub.params),
                "epochs": float(top),
            }
        except Exception as e:  # a back-test that cannot run is reported, never fatal
            bt = {"error": f"{type(e).__name__}: {e}"}
    return out, bt


def _eval_table(store, runs: pd.DataFrame, plan) -> pd.DataFrame:
    """Evaluated finished runs: task, shots, N, D, loss (validation), task_loss (nats/byte), acc."""
    ev = store.evals_frame()
    cols = ["task", "shots", "N", "D", "loss", "task_loss", "acc"]
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = ev[ev["run_id"].isin(runs["run_id"])].copy()
    if plan.downstream.tasks:
        ev = ev[ev["task"].isin(plan.downstream.tasks)]
    if plan.downstream.shots:
        ev = ev[ev["shots"].isin(plan.downstream.shots)]
    if "task_loss" not in ev.columns:
        ev["task_loss"] = np.nan
    info = runs.set_index("run_id")
    ev = ev.drop_duplicates(["run_id", "task", "shots"], keep="last")  # the latest evaluation of each
    out = pd.DataFrame(
        {
            "task": ev["task"].astype(str),
            "shots": ev["shots"].astype(int),
            "N": ev["run_id"].map(info["N"]).astype(float),
            "D": ev["run_id"].map(info["D"]).astype(float),
            "loss": ev["run_id"].map(info["loss"]).astype(float),
            "task_loss": pd.to_numeric(ev["task_loss"], errors="coerce"),
            "acc": ev["value"].astype(float),
        }
    )
    return out.sort_values(["task", "shots", "N", "D"]).reset_index(drop=True)


def _target(fitted: dict[str, Any], runs: pd.DataFrame) -> tuple[float, float, str]:
    c = 10.0 * float(runs["C"].max())
    lnd = fitted.get("L(N,D)")
    if lnd is not None:
        try:
            from scalinglab.laws.allocate import allocate

            a = allocate(c, lnd["result"])
            return (
                a.N_opt,
                a.D_opt,
                f"the L(N,D) fit's compute-optimal model at 10x the largest run ({c:.3g} FLOPs)",
            )
        except Exception:  # an allocation that cannot be made falls back to scaling the largest run
            pass
    big = runs.loc[runs["C"].idxmax()]
    s = math.sqrt(10.0)
    return (
        float(big["N"]) * s,
        float(big["D"]) * s,
        f"the largest run scaled by sqrt(10) in N and D ({c:.3g} FLOPs)",
    )


def _fit_downstream_law(df: pd.DataFrame, plan, target: tuple[float, float, str]) -> tuple[dict, dict | None]:
    return downstream_result(
        df, target, acc_floor=plan.downstream.acc_floor, bootstrap=max(plan.fit.bootstrap, MIN_BOOTSTRAP)
    )


def downstream_result(
    df: pd.DataFrame,
    target: tuple[float, float, str],
    *,
    acc_floor: float = 0.0,
    bootstrap: int = MIN_BOOTSTRAP,
    starts: int | None = DOWNSTREAM_STARTS,
    backtest: bool = True,
    max_groups: int | None = None,
) -> tuple[dict, dict | None]:
    """The stored `downstream` result (and its back-test dict) of a table with columns task, shots, N, D,
    loss, task_loss, acc: one two-step fit per (task, K) with >= 4 runs, the prediction at ``target``
    (N, D, how it was chosen). Also used by the report when a study has no stored fit."""
    from scalinglab.laws.downstream import backtest_downstream, fit_downstream

    boot = bootstrap
    rng = (acc_floor, 1.0)
    n_t, d_t, how = target
    tasks, params, warnings, bts, ok = [], {}, [], [], True
    for (task, k), g in df.groupby(["task", "shots"], sort=True):
        label = f"{task}@K{k}"
        if max_groups is not None and len(tasks) >= max_groups:
            warnings.append(f"{label}: not fitted (at most {max_groups} tasks here)")
            continue
        if len(g) < 4:
            warnings.append(f"{label}: {len(g)} evaluated runs, fewer than 4: not fitted")
            continue
        try:
            r = fit_downstream(g, bootstrap=boot, seed=0, acc_range=rng, task=label, starts=starts)
        except Exception as e:  # one task failing never stops the others
            warnings.append(f"{label}: not fitted ({type(e).__name__}: {e})")
            continue
        lo, hi = r.predict_interval(n_t, d_t)
        pred = float(r.predict(n_t, d_t))
        d = r.to_dict()
        d.update(
            task=str(task),
            shots=int(k),
            target={
                "N": n_t,
                "D": d_t,
                "how": how,
                "acc": pred,
                "low": lo,
                "high": hi,
                "task_loss": float(r.predict_loss(n_t, d_t)),
            },
            points={c: [float(x) for x in g[c]] for c in ("N", "D", "acc")},
        )
        d["points"]["L"] = [float(x) for x in g[r.x]]
        bt = None
        if backtest and len(g) >= 5:
            try:
                bt = backtest_downstream(g, bootstrap=boot, seed=0, acc_range=rng, starts=starts)
            except Exception as e:
                bt = {"error": f"{type(e).__name__}: {e}"}
        d["backtest"] = bt
        tasks.append(d)
        if bt and "abs_error" in bt:
            bts.append(bt)
        params[f"{label}:acc"] = pred
        ok = ok and r.converged
        warnings += [f"{label}: {w}" for w in r.warnings]
    if not tasks:
        raise ValueError("no (task, K) has 4 or more evaluated runs: " + "; ".join(warnings))
    result = {
        "law": "downstream",
        "params": params,
        "converged": ok,
        "r2_log": None,
        "warnings": warnings,
        "tasks": tasks,
        "target": {"N": n_t, "D": d_t, "how": how},
    }
    backtest = None
    if bts:
        b = bts[0]
        backtest = {
            "by": "C",
            "rel_error": b["rel_error"],
            "covered": b["covered"],
            "abs_error": b["abs_error"],
            "task": tasks[0]["task"],
            "shots": tasks[0]["shots"],
        }
    return result, backtest


def fit_extra(law: str, store, plan, runs: pd.DataFrame, points: pd.DataFrame, fitted: dict[str, Any]):
    """``StudyLaw.prepare`` for `repeat` and `downstream` (see the module docstring)."""
    if law == "repeat":
        df = _repeat_table(runs)
        if len(df) < 3 or not (df["D"] > df["U"] * 1.01).any():
            return None
        from scalinglab.study.fitting import table_l_nd

        lnd = fitted.get("L(N,D)")
        source = lnd["result"]["params"] if lnd is not None else table_l_nd(points).to_numpy().tolist()

        def thunk():
            base, how = _base_params(points, fitted, plan)  # fitted here (seconds) only when not stored
            return _fit_repeat_law(df, base, how, plan)

        return df, thunk, [source, plan.repeat.model_dump()]
    if law == "downstream":
        df = _eval_table(store, runs, plan)
        if len(df) < 4:
            return None
        target = _target(fitted, runs)
        numeric = df[["shots", "N", "D", "loss", "task_loss", "acc"]].fillna(-1.0)
        return (
            numeric,
            lambda: _fit_downstream_law(df, plan, target),
            [sorted(df["task"].unique()), list(df["task"]), plan.downstream.model_dump(), target[:2]],
        )
    raise ValueError(f"unknown law {law!r}")
