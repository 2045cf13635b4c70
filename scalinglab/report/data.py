"""The report's data layer: a study as plain pandas frames, normalised to one set of column names.

``StudyData`` is what every figure reads. It is built from the study store (``load_study``) or from any
frames with the store's or the trainer's column names (``StudyData.from_frames``), so the report can be
drawn for a study that lives elsewhere (a CSV export, another framework's logs).

Normalised ``runs`` columns: ``run_id``, ``status``, ``n_kaplan`` (non-embedding params), ``n_total`` (all
params), ``tokens`` (training tokens D), ``batch_tokens`` (tokens per optimizer step), ``flops`` (training
FLOPs, 6ND convention), ``loss`` (final validation loss, nats/token), ``n_layer``, ``d_model``, ``roles``
(list of plan roles, e.g. ``"isoflop:1e+18"``), ``arch`` (model family: ``gpt`` or ``lstm``), ``n_head``,
``d_ff`` (None: 4 d_model). ``metrics`` keeps the trainer's pinned row keys. ``positions`` (run_id, eval_set,
position, loss, tokens) and ``eval_sets`` (run_id, eval_set, loss, bpb) hold the final loss by context
position and on extra evaluation sets (``val`` = the run's validation split), when the study recorded them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import InputError

PARAM_COLUMNS = {"kaplan": "n_kaplan", "total": "n_total"}
_ALIASES = {  # normalised name -> accepted source names, first found wins
    "n_kaplan": ("n_kaplan", "params_kaplan", "n_non_embedding", "params_non_embedding"),
    "n_total": ("n_total", "params_total"),
    "tokens": ("tokens",),
    "loss": ("final_val_loss", "val_loss", "loss"),
    "flops": ("flops_6n", "flops", "C"),
    "batch_tokens": ("batch_size_tokens", "batch_tokens"),
}


def _json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return None
    return v


def _json_dict(v: Any) -> dict:
    """A JSON object cell as a dict; {} for a missing one (NULL, read as NaN or None: a failed run)."""
    d = _json(v)
    return d if isinstance(d, dict) else {}


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> pd.Series | None:
    for n in names:
        if n in df.columns and df[n].notna().any():
            return pd.to_numeric(df[n], errors="coerce")
    return None


def normalise_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs in the report's column names; raises InputError naming what is missing."""
    if "run_id" not in runs.columns:
        raise InputError(f"runs table has no 'run_id' column (columns: {list(runs.columns)})")
    if runs["run_id"].duplicated().any():
        dup = runs.loc[runs["run_id"].duplicated(), "run_id"].iloc[0]
        raise InputError(f"runs table: run_id {dup!r} appears more than once")
    out = pd.DataFrame({"run_id": runs["run_id"].astype(str).to_numpy()})
    out["status"] = runs["status"].astype(str).to_numpy() if "status" in runs.columns else "done"
    for key, names in _ALIASES.items():
        s = _first(runs, names)
        out[key] = s.to_numpy(dtype=float) if s is not None else np.nan
    if out["n_kaplan"].isna().all() and out["n_total"].isna().all():
        raise InputError(
            "runs table has no parameter count: need 'n_kaplan'/'params_kaplan' or 'n_total'/'params_total'"
        )
    if out["tokens"].isna().all():
        raise InputError("runs table has no 'tokens' column (training tokens per run)")
    summaries = [_json_dict(s) for s in runs["summary"]] if "summary" in runs.columns else [{}] * len(runs)
    configs = [_json_dict(c) for c in runs["config"]] if "config" in runs.columns else [{}] * len(runs)
    for i, (summ, cfg) in enumerate(zip(summaries, configs, strict=True)):
        if np.isnan(out.at[i, "batch_tokens"]):
            bt = summ.get("batch_size_tokens")
            known = "batch_size" in runs.columns and pd.notna(runs["batch_size"].iloc[i])  # NULL: imported
            if bt is None and known and cfg.get("n_ctx"):
                bt = float(runs["batch_size"].iloc[i]) * float(cfg["n_ctx"])
            out.at[i, "batch_tokens"] = np.nan if bt is None else float(bt)
    for col in ("n_layer", "d_model", "lr", "seed"):
        out[col] = pd.to_numeric(runs[col], errors="coerce").to_numpy() if col in runs.columns else np.nan
    cols = runs.to_dict("list")
    out["arch"] = [str(cols["arch"][i]) if "arch" in cols and isinstance(cols["arch"][i], str)
                   else c.get("arch", "gpt") for i, c in enumerate(configs)]
    for col in ("n_head", "d_ff"):
        given = pd.to_numeric(runs[col], errors="coerce").to_numpy() if col in runs.columns else None
        out[col] = [given[i] if given is not None and np.isfinite(given[i]) else c.get(col)
                    for i, c in enumerate(configs)]
    roles = [_json(r) for r in runs["roles"]] if "roles" in runs.columns else [[]] * len(runs)
    out["roles"] = [list(r) if isinstance(r, (list, tuple)) else [] for r in roles]
    bad = out["tokens"] <= 0
    if bad.any():
        raise InputError(f"runs table: run {out.loc[bad, 'run_id'].iloc[0]!r} has tokens <= 0")
    return out


def normalise_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics rows sorted by run and step; needs run_id, step, tokens and a loss column."""
    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=["run_id", "step", "tokens", "train_loss", "val_loss"])
    for col in ("run_id", "step", "tokens"):
        if col not in metrics.columns:
            raise InputError(f"metrics table has no {col!r} column (columns: {list(metrics.columns)})")
    if "val_loss" not in metrics.columns and "train_loss" not in metrics.columns:
        raise InputError("metrics table has neither 'val_loss' nor 'train_loss'")
    m = metrics.copy()
    m["run_id"] = m["run_id"].astype(str)
    for col in m.columns:
        if col not in ("run_id", "extra"):
            m[col] = pd.to_numeric(m[col], errors="coerce")
    for col in ("train_loss", "val_loss", "flops_6n", "gns_b_simple_tokens", "lr"):
        if col not in m.columns:
            m[col] = np.nan
    return m.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def normalise_evals(evals: pd.DataFrame | None) -> pd.DataFrame:
    """Evaluations as one row per (run_id, task, scorer, preset, shots, seed): accuracy (fraction), se_docs,
    task_loss (nats per byte of the correct answers, NaN when the record has none).

    Accepts rows with ``accuracy`` or the store's ``value``/``metric``; rows of the evals module
    (``EvalResult`` dicts: ``seeds`` and ``acc_per_seed`` lists, ``acc_se``) are expanded to one row per
    seed, and ``se_docs`` keeps the binomial standard error over documents (NaN when absent). An evaluation
    repeated with the same key keeps its latest row (rows are in store order), so a re-run never counts as
    extra seeds, and different scorers or presets stay apart."""
    cols = ["run_id", "task", "shots", "seed", "accuracy", "scorer", "preset", "se_docs", "task_loss"]
    if evals is None or len(evals) == 0:
        return pd.DataFrame(columns=cols)
    e = evals.copy()
    for col in ("run_id", "task", "shots"):
        if col not in e.columns:
            raise InputError(f"evals table has no {col!r} column (columns: {list(e.columns)})")
    if "accuracy" not in e.columns:
        if "value" not in e.columns:
            raise InputError(f"evals table has neither 'accuracy' nor 'value' (columns: {list(e.columns)})")
        e["accuracy"] = e["value"]
    if "scorer" not in e.columns:
        e["scorer"] = e["metric"] if "metric" in e.columns else ""
    e["preset"] = e["preset"].fillna("") if "preset" in e.columns else ""
    e["scorer"] = e["scorer"].fillna("")
    e["se_docs"] = pd.to_numeric(e["acc_se"], errors="coerce") if "acc_se" in e.columns else np.nan
    e["task_loss"] = pd.to_numeric(e["task_loss"], errors="coerce") if "task_loss" in e.columns else np.nan
    if "acc_per_seed" in e.columns and "seed" not in e.columns:
        # one record per evaluation: a repeated one replaces the earlier record whole (all its seeds)
        e = e.drop_duplicates(subset=["run_id", "task", "scorer", "preset", "shots"], keep="last")
        per = [_json(v) if isinstance(v, str) else v for v in e["acc_per_seed"]]
        seeds = [_json(v) if isinstance(v, str) else v for v in e.get("seeds", [None] * len(e))]
        rows = []
        for (_, r), accs, sd in zip(e.iterrows(), per, seeds, strict=True):
            if isinstance(accs, (list, tuple)) and len(accs):
                sd = sd if isinstance(sd, (list, tuple)) and len(sd) == len(accs) else range(len(accs))
                rows += [{**r.to_dict(), "seed": s, "accuracy": a} for s, a in zip(sd, accs, strict=True)]
            else:
                rows.append({**r.to_dict(), "seed": 0})
        e = pd.DataFrame(rows)
    if "seed" not in e.columns:
        e["seed"] = 0
    e = e[cols].dropna(subset=["run_id", "task", "shots", "accuracy"])
    e["shots"] = e["shots"].astype(int)
    e["accuracy"] = pd.to_numeric(e["accuracy"], errors="coerce")
    e = e.drop_duplicates(subset=["run_id", "task", "scorer", "preset", "shots", "seed"], keep="last")
    return e.reset_index(drop=True)


def _require(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise InputError(f"{what} table has no {col!r} column (columns: {list(df.columns)})")


def normalise_positions(pos: pd.DataFrame | None) -> pd.DataFrame:
    """Loss by position: run_id, eval_set (default ``val``), position (1..n_ctx), loss (nats/token),
    tokens."""
    cols = ["run_id", "eval_set", "position", "loss", "tokens"]
    if pos is None or len(pos) == 0:
        return pd.DataFrame(columns=cols)
    _require(pos, ("run_id", "position", "loss"), "positions")
    p = pos.copy()
    p["run_id"] = p["run_id"].astype(str)
    p["eval_set"] = p["eval_set"].astype(str) if "eval_set" in p.columns else "val"
    p["tokens"] = pd.to_numeric(p["tokens"], errors="coerce") if "tokens" in p.columns else np.nan
    p["position"] = pd.to_numeric(p["position"], errors="coerce")
    p["loss"] = pd.to_numeric(p["loss"], errors="coerce")
    p = p[cols].dropna(subset=["position", "loss"])
    return p.sort_values(["run_id", "eval_set", "position"]).reset_index(drop=True)


def normalise_eval_sets(sets: pd.DataFrame | None) -> pd.DataFrame:
    """Final loss per run and evaluation set: run_id, eval_set, loss (nats/token), bpb."""
    cols = ["run_id", "eval_set", "loss", "bpb"]
    if sets is None or len(sets) == 0:
        return pd.DataFrame(columns=cols)
    _require(sets, ("run_id", "eval_set", "loss"), "eval sets")
    e = sets.copy()
    e["run_id"], e["eval_set"] = e["run_id"].astype(str), e["eval_set"].astype(str)
    e["loss"] = pd.to_numeric(e["loss"], errors="coerce")
    e["bpb"] = pd.to_numeric(e["bpb"], errors="coerce") if "bpb" in e.columns else np.nan
    return e[cols].dropna(subset=["loss"]).reset_index(drop=True)


@dataclass
class StudyData:
    """One study, normalised. ``fits`` holds store rows ``{"law", "result", "backtest"}``
    (``result``: a FitResult dict)."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    fits: list[dict[str, Any]] = field(default_factory=list)
    evals: pd.DataFrame = field(default_factory=lambda: normalise_evals(None))
    noise: pd.DataFrame | None = None
    positions: pd.DataFrame = field(default_factory=lambda: normalise_positions(None))
    eval_sets: pd.DataFrame = field(default_factory=lambda: normalise_eval_sets(None))
    name: str = "study"
    param_count: str = "kaplan"  # which N the figures use: "kaplan" (non-embedding) or "total"
    fits_params: str | None = None  # the N convention the stored fits were made with (the plan's `params`)

    @classmethod
    def from_frames(
        cls,
        runs: pd.DataFrame,
        metrics: pd.DataFrame | None = None,
        fits: list[dict] | None = None,
        evals: pd.DataFrame | None = None,
        noise: pd.DataFrame | None = None,
        *,
        name: str = "study",
        param_count: str | None = None,
        fits_params: str | None = None,
        positions: pd.DataFrame | None = None,
        eval_sets: pd.DataFrame | None = None,
    ) -> StudyData:
        r = normalise_runs(runs)
        m = normalise_metrics(metrics if metrics is not None else pd.DataFrame())
        if param_count is None and fits_params in PARAM_COLUMNS:  # draw with the N the study fitted with
            param_count = fits_params
        if param_count is None:
            param_count = "kaplan" if r["n_kaplan"].notna().any() else "total"
        if param_count not in PARAM_COLUMNS:
            raise InputError(f"param_count {param_count!r}: allowed {sorted(PARAM_COLUMNS)}")
        if r[PARAM_COLUMNS[param_count]].isna().all():
            raise InputError(
                f"runs table has no {param_count!r} parameter count (column {PARAM_COLUMNS[param_count]})"
            )
        fl = [
            f
            if "result" in f
            else {"law": f.get("law") or f.get("form", "fit"), "result": f, "backtest": None}
            for f in (fits or [])
        ]
        return cls(
            runs=r,
            metrics=m,
            fits=fl,
            evals=normalise_evals(evals),
            noise=noise,
            positions=normalise_positions(positions),
            eval_sets=normalise_eval_sets(eval_sets),
            name=name,
            param_count=param_count,
            fits_params=fits_params,
        )

    @property
    def n_col(self) -> str:
        return PARAM_COLUMNS[self.param_count]


def load_study(study_dir: Path, *, param_count: str | None = None) -> StudyData:
    """Read a study folder's store (``scalinglab.db``) into ``StudyData``."""
    from scalinglab.study.store import DB_NAME, Store

    study_dir = Path(study_dir)
    if not (study_dir / DB_NAME).is_file():
        raise InputError(f"{study_dir} is not a study folder: no {DB_NAME} in it")
    with Store(study_dir) as store:
        runs, metrics, fits = store.runs_frame(), store.metrics_frame(), store.fits()
        evals, noise = store.evals_frame(), store.noise_frame()
        positions, eval_sets = store.position_frame(), store.eval_sets_frame()
        fits_params = store.get_meta("params", "kaplan")  # recorded by the runner; older studies: kaplan
    if len(runs) == 0:
        raise InputError(f"study {study_dir} has no runs in its store")
    return StudyData.from_frames(
        runs, metrics, fits, evals, noise, name=study_dir.resolve().name, param_count=param_count,
        fits_params=fits_params, positions=positions, eval_sets=eval_sets,
    )
