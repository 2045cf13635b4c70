"""Import runs trained elsewhere into a study store, so that `study fit` and `report` work on them.

Sources (offline files only; nothing is fetched):

- a table (CSV, Parquet or JSON lines) with one row per run (final loss), or one row per logged step of each
  run (learning curves: several rows per ``run``, or a ``step`` column mapped with ``columns``; the last
  finite loss is the run's);
- a Weights & Biases export: the runs table the web UI exports as CSV (rows whose ``State`` is not
  ``finished`` are left out), or run folders of the W&B client (``wandb/run-*/files/``: ``config.yaml``
  and ``wandb-summary.json``, with ``wandb-history.jsonl`` as the learning curve where the client wrote
  one). Config values and summary values are both columns (``config.KEY`` and ``summary.KEY`` too).

Columns map to variables with ``columns`` (``{"N": "Model Size", "C": "Training FLOP", ...}``), or are
found under common names: N (parameters, under ``params``: ``total`` or ``kaplan`` = non-embedding), D
(training tokens; D = C / (6 N) from a C column in FLOPs when absent), loss (final validation loss,
nats/token), run, step, seed, batch (tokens per step), train_loss. ``evals`` maps few-shot results:
``{"hellaswag@5": "acc column"}`` (accuracy as a fraction), with ``eval_losses`` their task loss columns.

The study folder gets a ``study.toml`` marked as imported (``study run`` refuses it: nothing to train),
the runs (status ``done``, role ``grid``; runs sharing a compute budget across three or more sizes also
``isoflop:C``), their learning curves and evaluations. Run ids hash (source, run name, N, D, seed), so
importing the same file again changes nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import InputError

NAMES = {  # variable -> column names tried in order (case-insensitive) when ``columns`` does not say
    "N": ("N", "params", "n_params", "num_params", "parameters", "Model Size", "model_size", "n_total"),
    "D": ("D", "tokens", "train_tokens", "n_tokens", "throughput/total_tokens", "Tokens"),
    "C": ("C", "flops", "FLOPs", "Training FLOP", "compute", "train_flops"),
    "loss": ("loss", "val_loss", "final_val_loss", "eval/loss", "val/loss", "validation_loss"),
    "run": ("run", "run_id", "name", "Name", "ID", "id"),
    "step": ("step", "_step", "Step", "global_step"),
    "seed": ("seed",),
    "batch": ("batch_tokens", "batch_size_tokens", "batch_size_in_tokens"),
    "train_loss": ("train_loss", "train/loss"),
}
VARIABLES = tuple(NAMES)
PARAMS = ("total", "kaplan")


@dataclass
class ImportResult:
    """What an import wrote: the study folder, runs (new and already there), metrics rows, evaluations."""

    study_dir: Path
    runs: int
    new_runs: int
    metrics: int
    evals: int
    columns: dict[str, str]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_dir": str(self.study_dir),
            "runs": self.runs,
            "new_runs": self.new_runs,
            "metrics": self.metrics,
            "evals": self.evals,
            "columns": dict(self.columns),
            "skipped": list(self.skipped),
        }


def _flat(prefix: str, d: Mapping[str, Any], out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and set(v) >= {"value"}:  # a W&B config.yaml entry {desc, value}
            v = v["value"]
        if isinstance(v, Mapping):
            _flat(f"{key}.", v, out)
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v


def _wandb_runs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """(one row per W&B run folder, the concatenated histories or None, notes)."""
    import yaml

    rows, curves, notes = [], [], []
    for summ in sorted(folder.rglob("wandb-summary.json")):
        files = summ.parent
        name = files.parent.name if files.name == "files" else files.name
        try:
            s = json.loads(summ.read_text())
        except json.JSONDecodeError as e:
            notes.append(f"{summ}: not valid JSON ({e.msg}): left out")
            continue
        row: dict[str, Any] = {}
        cfg_path = files / "config.yaml"
        if cfg_path.is_file():
            cfg = yaml.safe_load(cfg_path.read_text()) or {}
            c: dict[str, Any] = {}
            _flat("", {k: v for k, v in cfg.items() if not str(k).startswith("_")}, c)
            row.update(c)
            row.update({f"config.{k}": v for k, v in c.items()})
        flat: dict[str, Any] = {}
        _flat("", s, flat)
        row.update(flat)
        row.update({f"summary.{k}": v for k, v in flat.items()})
        row["run"] = name
        rows.append(row)
        hist = files / "wandb-history.jsonl"
        if hist.is_file():
            h = pd.read_json(hist, lines=True)
            h["run"] = name
            curves.append(h)
    if not rows:
        raise InputError(f"{folder}: no W&B run folder (no wandb-summary.json below it)")
    return pd.DataFrame(rows), (pd.concat(curves, ignore_index=True) if curves else None), notes


def _read(sources: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], str]:
    from scalinglab.laws.data import read_table

    tables, curves, notes = [], [], []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            t, c, n = _wandb_runs(p)
            tables.append(t)
            notes += n
            if c is not None:
                curves.append(c)
        else:
            t = read_table(p)
            if "State" in t.columns:  # the W&B web UI's runs table
                bad = t["State"].astype(str).str.lower() != "finished"
                if bad.any():
                    notes.append(f"{p.name}: {int(bad.sum())} run(s) not 'finished' in W&B: left out")
                t = t[~bad]
            tables.append(t)
    label = ",".join(Path(s).name for s in sources)
    return (
        pd.concat(tables, ignore_index=True),
        (pd.concat(curves, ignore_index=True) if curves else None),
        notes,
        label,
    )


def _resolve(df: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, str]:
    unknown = [k for k in columns if k not in VARIABLES]
    if unknown:
        raise InputError(f"--col {unknown[0]!r}: variables are {', '.join(VARIABLES)}")
    lower = {c.lower(): c for c in df.columns}
    out = {}
    for var, names in NAMES.items():
        if var in columns:
            if columns[var] not in df.columns:
                raise InputError(
                    f"--col {var}={columns[var]!r}: no such column; columns are {list(df.columns)}"
                )
            out[var] = columns[var]
            continue
        hit = next((lower[n.lower()] for n in names if n.lower() in lower), None)
        if hit is not None:
            out[var] = hit
    if "N" not in out:
        raise InputError(
            f"no parameter-count column: map one with --col N=COLUMN (columns: {list(df.columns)})"
        )
    if "loss" not in out:
        raise InputError(f"no loss column: map one with --col loss=COLUMN (columns: {list(df.columns)})")
    if "D" not in out and "C" not in out:
        raise InputError("no tokens or compute column: map one with --col D=COLUMN or --col C=COLUMN")
    return out


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _last(s: pd.Series) -> float:
    """The last finite value of a column of one run (an evaluation logged at some steps only)."""
    v = _num(s)
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan


def _runs_and_curves(df: pd.DataFrame, hist: pd.DataFrame | None, cols: dict[str, str], step_given: bool):
    """(final rows: one per run with N, D, loss, run, seed, batch, train_loss, steps; curves or None)."""
    t = pd.DataFrame({"N": _num(df[cols["N"]])})
    t["D"] = _num(df[cols["D"]]) if "D" in cols else _num(df[cols["C"]]) / (6.0 * t["N"])
    t["loss"] = _num(df[cols["loss"]])
    t["run"] = (
        df[cols["run"]].astype(str).to_numpy() if "run" in cols else [f"row{i + 1}" for i in range(len(df))]
    )
    for var in ("seed", "batch", "train_loss", "step"):
        t[var] = _num(df[cols[var]]) if var in cols else np.nan
    curves = None
    multi = "run" in cols and t["run"].duplicated().any()
    if multi or step_given:  # one row per logged step: the learning curves are the table itself
        curves = t.copy()
        if "step" not in cols:
            curves["step"] = curves.groupby("run").cumcount() + 1
        ok = np.isfinite(curves["loss"]) & np.isfinite(curves["D"]) & (curves["D"] > 0)
        curves = curves[ok].sort_values(["run", "step"])
        final = curves.groupby("run", sort=False).tail(1).copy()
        final["steps"] = final["step"]
    else:
        final = t.copy()
        final["steps"] = np.nan
        if hist is not None:  # W&B histories, by run name: the loss column of the summary, or a common name
            curves = _history_curves(hist, final, cols)
            if curves is not None:
                final = final.merge(
                    curves.groupby("run")["step"].max().rename("hist_steps"), on="run", how="left"
                )
                final["steps"] = final["hist_steps"]
                final = final.drop(columns="hist_steps")
    return final.reset_index(drop=True), curves


def _find(df: pd.DataFrame, var: str, cols: Mapping[str, str]) -> str | None:
    if var in cols and cols[var] in df.columns:
        return cols[var]
    lower = {c.lower(): c for c in df.columns}
    return next((lower[n.lower()] for n in NAMES[var] if n.lower() in lower), None)


def _history_curves(hist: pd.DataFrame, final: pd.DataFrame, cols: Mapping[str, str]) -> pd.DataFrame | None:
    """Learning curves from W&B histories: loss per logged step; tokens = the run's D x step / last step
    unless the history logs a tokens column."""
    lc, sc, dc = _find(hist, "loss", cols), _find(hist, "step", cols), _find(hist, "D", cols)
    if lc is None:
        return None
    h = pd.DataFrame(
        {
            "run": hist["run"].astype(str),
            "loss": _num(hist[lc]),
            "step": _num(hist[sc]) if sc else np.nan,
            "tok": _num(hist[dc]) if dc else np.nan,
        }
    )
    h = h[np.isfinite(h["loss"])].merge(final[["run", "N", "D"]], on="run", how="inner")
    if h.empty:
        return None
    if h["step"].isna().all():
        h["step"] = h.groupby("run").cumcount() + 1
    if h["tok"].notna().all():
        h["D"] = h["tok"]
    else:
        h["D"] = h["D"] * h["step"] / h.groupby("run")["step"].transform("max")
    h["seed"], h["batch"], h["train_loss"] = np.nan, np.nan, np.nan
    return h.drop(columns="tok")


def _isoflop_roles(final: pd.DataFrame, rel_tol: float = 0.05) -> dict[str, str]:
    """Run name -> ``isoflop:C`` for runs whose compute 6ND agrees (within rel_tol) with 3+ other sizes."""
    c = (6.0 * final["N"] * final["D"]).to_numpy()
    order = np.argsort(c)
    groups: list[list[int]] = []
    for i in order:
        if not groups or c[i] > c[groups[-1][0]] * (1 + rel_tol):
            groups.append([])
        groups[-1].append(int(i))
    out = {}
    for g in groups:
        if final["N"].iloc[g].nunique() >= 3:
            budget = float(np.exp(np.mean(np.log(c[g]))))
            for i in g:
                out[final["run"].iloc[i]] = f"isoflop:{budget:.3g}"
    return out


def _plan_toml(name: str, label: str, params: str, final: pd.DataFrame, laws: Sequence[str]) -> str:
    ns = sorted({float(x) for x in final["N"]})
    ds = sorted({float(x) for x in final["D"]})
    return (
        f"# Imported by `scalinglab study import` from {label} ({time.strftime('%Y-%m-%d')}): these runs\n"
        "# were trained elsewhere. `study fit` and `report` work on them; `study run` refuses (nothing to\n"
        "# train). [model] and [tokens] list the imported sizes and token counts; [fit] the laws to fit.\n"
        f"name = {json.dumps(name)}\nout = \".\"\nparams = {json.dumps(params)}\n\n"
        f"[model]\nn_params = {json.dumps(ns)}\n\n[tokens]\nabsolute = {json.dumps(ds)}\n\n"
        f"[fit]\nlaws = {json.dumps(list(laws))}\n"
    )


def default_laws(final: pd.DataFrame, has_curves: bool, has_isoflop: bool, has_evals: bool) -> list[str]:
    """The laws an imported table supports: L(N) and L(D) always (fitting skips what has too few runs),
    L(N,D) when sizes have several token counts, isoflop when budgets repeat, L(C_min) with learning curves,
    downstream with evaluations."""
    laws = ["L(N)", "L(D)"]
    if final.groupby("N")["D"].nunique().max() >= 2 or final["D"].nunique() >= 2:
        laws.append("L(N,D)")
    if has_isoflop:
        laws.append("isoflop")
    if has_curves:
        laws.append("L(C_min)")
    if has_evals:
        laws.append("downstream")
    return laws


def _eval_specs(evals: Mapping[str, str], losses: Mapping[str, str], df: pd.DataFrame) -> list[tuple]:
    out = []
    for key, col in evals.items():
        task, _, k = key.partition("@")
        if not task or (k and not k.isdigit()):
            raise InputError(f"--eval {key}={col}: name it TASK or TASK@K (K shots)")
        for c in (col, losses.get(key)):
            if c is not None and c not in df.columns:
                raise InputError(f"--eval {key}: no column {c!r}")
        out.append((task, int(k or 0), col, losses.get(key)))
    extra = set(losses) - set(evals)
    if extra:
        raise InputError(f"--eval-loss {sorted(extra)[0]}: no --eval of that name")
    return out


def import_runs(
    sources: str | Path | Sequence[str | Path],
    study_dir: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    params: str = "total",
    name: str | None = None,
    laws: Sequence[str] | None = None,
    evals: Mapping[str, str] | None = None,
    eval_losses: Mapping[str, str] | None = None,
) -> ImportResult:
    """Import the runs of ``sources`` (see the module docstring) into the study folder ``study_dir``."""
    from scalinglab.io import atomic_write_bytes
    from scalinglab.study.plan import LAWS, parse_plan, run_id
    from scalinglab.study.store import DB_NAME, Store

    if params not in PARAMS:
        raise InputError(
            f"--params {params!r}: imported N counts 'total' (all parameters) or 'kaplan' (non-embedding)"
        )
    srcs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not srcs:
        raise InputError("give at least one file or W&B folder to import")
    study_dir = Path(study_dir)
    if (study_dir / DB_NAME).is_file():
        with Store(study_dir) as s:
            if s.run_ids() and not s.get_meta("imported"):
                raise InputError(
                    f"{study_dir} holds a study trained by scalinglab: import into another folder"
                )
    df, hist, notes, label = _read(srcs)
    cols = _resolve(df, columns or {})
    specs = _eval_specs(evals or {}, eval_losses or {}, df)
    final, curves = _runs_and_curves(df, hist, cols, "step" in (columns or {}))
    ok = np.isfinite(final["N"]) & (final["N"] > 0) & np.isfinite(final["D"]) & (final["D"] > 0)
    ok &= np.isfinite(final["loss"]) & (final["loss"] > 0)
    if (~ok).any():
        notes.append(
            f"{int((~ok).sum())} run(s) without a positive finite N, D and loss left out: "
            + ", ".join(final.loc[~ok, "run"].astype(str).head(5))
        )
    final = final[ok].reset_index(drop=True)
    if final.empty:
        raise InputError("nothing to import: no run has a positive finite N, D and loss")
    iso = _isoflop_roles(final)
    laws = list(laws) if laws else default_laws(final, curves is not None, bool(iso), bool(specs))
    bad = [x for x in laws if x not in LAWS]
    if bad:
        raise InputError(f"--laws: unknown law {bad[0]!r}; allowed: {', '.join(LAWS)}")
    name = name or study_dir.name
    toml = _plan_toml(name, label, params, final, laws)
    parse_plan(__import__("tomllib").loads(toml), "the imported plan")  # never write a plan that won't load
    study_dir.mkdir(parents=True, exist_ok=True)
    src_rows = df.reset_index(drop=True)
    if "run" in cols:
        by_run = {str(k): g for k, g in src_rows.groupby(src_rows[cols["run"]].astype(str), sort=False)}
    else:
        by_run = {f"row{i + 1}": src_rows.iloc[[i]] for i in range(len(src_rows))}
    n_new = n_metrics = n_evals = 0
    with Store(study_dir) as store:
        have = store.evals_frame()
        seen = set() if have.empty else set(zip(have["run_id"], have["task"], have["shots"], strict=True))
        ids = []
        for _, r in final.iterrows():
            seed = None if not np.isfinite(r["seed"]) else int(r["seed"])
            cfg = {
                "imported": label,
                "name": str(r["run"]),
                "N": float(r["N"]),
                "tokens": int(round(r["D"])),
                "seed": seed,
                "n_ctx": 1,
                "batch_size": None if not np.isfinite(r["batch"]) else float(r["batch"]),
            }
            rid = run_id(cfg)
            ids.append(rid)
            n_conv = {"total": ["total", "total_without_head"], "kaplan": ["kaplan", "non_embedding"]}[params]
            counts = {
                "params": {k: float(r["N"]) for k in n_conv},
                "flops_per_token": {"6n": 6.0 * float(r["N"])},
            }
            roles = ["grid"] + ([iso[r["run"]]] if r["run"] in iso else [])
            n_new += store.add_runs([(rid, cfg, roles, counts)])
            run_curve = curves[curves["run"] == r["run"]] if curves is not None else None
            if run_curve is not None and len(run_curve):
                rows = [
                    {
                        "step": int(c["step"]),
                        "tokens": float(c["D"]),
                        "flops_6n": 6.0 * float(r["N"]) * float(c["D"]),
                        "val_loss": float(c["loss"]),
                        "train_loss": None if not np.isfinite(c["train_loss"]) else float(c["train_loss"]),
                    }
                    for _, c in run_curve.iterrows()
                ]
                n_metrics += store.add_metrics(rid, rows)
            steps = int(r["steps"]) if np.isfinite(r["steps"]) else 1
            store.finish_run(
                rid,
                "done",
                {
                    "final_val_loss": float(r["loss"]),
                    "steps": steps,
                    "final_train_loss": None if not np.isfinite(r["train_loss"]) else float(r["train_loss"]),
                    "imported": label,
                },
            )
            src = by_run.get(str(r["run"]))
            for task, k, acc_col, loss_col in specs:
                if (rid, task, k) in seen or src is None:
                    continue
                acc = _last(src[acc_col])
                if not math.isfinite(acc):
                    continue
                tl = _last(src[loss_col]) if loss_col else None
                store.add_eval(
                    rid,
                    {
                        "task": task,
                        "shots": k,
                        "metric": acc_col,
                        "value": acc,
                        "acc": acc,
                        "task_loss": tl if tl is not None and math.isfinite(tl) else None,
                        "imported": label,
                        "n_params": float(r["N"]),
                    },
                )
                n_evals += 1
        old = store.get_meta("plan_runs", [])
        store.set_meta("plan_runs", list(dict.fromkeys(list(old) + ids)))
        store.set_meta("params", params)
        store.set_meta(
            "imported",
            {
                "sources": [str(s) for s in srcs],
                "columns": cols,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        store.set_meta("phase", "imported")
    atomic_write_bytes(study_dir / "study.toml", toml.encode())
    return ImportResult(
        study_dir=study_dir,
        runs=len(final),
        new_runs=n_new,
        metrics=n_metrics,
        evals=n_evals,
        columns=cols,
        skipped=notes,
    )
