"""Evaluate every finished run of a study and store the results (``Store.add_eval``), for accuracy-vs-N plots.

Each stored record is an ``EvalResult`` dict plus ``metric`` (the scorer), ``value`` (accuracy, fraction),
``n`` (documents) and the run's parameter counts (``n_params``: the ``n_non_embedding`` count, and
``n_total``), so ``store.evals_frame()`` can be plotted against N without a join.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError


def eval_record(result: Any, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict stored for one result (see the module docstring)."""
    rec = result.to_dict()
    rec.update(metric=rec["scorer"], value=rec["acc"], n=rec["n_docs"])
    if run is not None:
        rec["n_params"] = run.get("n_non_embedding")
        rec["n_total"] = run.get("n_total")
    return rec


def evaluate_study(study_dir: str | Path, tasks: Sequence[str], *, shots: Sequence[int] = (0,),
                   seeds: int = 1, preset: str | None = None, scorer: str | None = None,
                   limit: int | None = None, batch_size: int = 16, device: str = "cpu",
                   contamination: bool = False, echo: Callable[[str], None] = lambda s: None
                   ) -> list[dict[str, Any]]:
    """Evaluate each ``done`` run on each task for each K; store and return the records.

    A task that reads the model's own text (``Task.uses_data``: ``lambada.corpus``) gets the run's dataset;
    ``contamination=True`` reports the 13-gram overlap of each task's evaluated documents with the run's
    training split (one index per dataset).
    """
    from scalinglab.evals.contamination import NgramIndex
    from scalinglab.evals.native import ScalingLabLM
    from scalinglab.evals.runner import evaluate
    from scalinglab.evals.tasks import data_kwargs, expand
    from scalinglab.study.executors import run_dir
    from scalinglab.study.store import Store

    study_dir = Path(study_dir)
    if not (study_dir / "scalinglab.db").is_file():
        raise InputError(f"{study_dir}: not a study folder (no scalinglab.db)")
    names = expand(list(tasks))
    store = Store(study_dir)
    records = []
    indexes: dict[str, NgramIndex] = {}
    try:
        done = store.run_ids("done")
        if not done:
            raise InputError(f"{study_dir}: no finished run to evaluate")
        for rid in done:
            run = store.run(rid)
            if run["config"].get("arch", "gpt") != "gpt":  # an LSTM of a two-family study
                echo(f"{rid}: skipped ({run['config']['arch']}: few-shot evaluation runs transformers)")
                continue
            lm = ScalingLabLM.from_run(run_dir(study_dir, rid), batch_size=batch_size, device=device)
            data = run["config"].get("data", "text:default")
            index = None
            if contamination:
                if data not in indexes:
                    from scalinglab.data import ensure_dataset, open_dataset

                    indexes[data] = NgramIndex(open_dataset(ensure_dataset(data)).documents("train"))
                index = indexes[data]
            for name in names:
                for r in evaluate(lm, name, shots=shots, seeds=seeds, preset=preset, scorer=scorer,
                                  limit=limit, task_kwargs=data_kwargs(name, data), contamination=index):
                    rec = eval_record(r, run)
                    store.add_eval(rid, rec)
                    records.append(rec | {"run_id": rid})
                    echo(f"{rid}  N={rec['n_params']}  {name}  K={r.shots}  {r.scorer}={r.acc:.3f}"
                         f" ± {r.acc_sd:.3f}")
    finally:
        store.close()
    return records


def accuracy_table(records: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Rows ``{"n_params": N, "K=0": acc, "K=1": acc, ...}`` for one task, by N (latest record wins)."""
    rows: dict[Any, dict[str, Any]] = {}
    for r in records:
        if r["task"] != task:
            continue
        row = rows.setdefault(r.get("n_params"), {"n_params": r.get("n_params")})
        row[f"K={r['shots']}"] = r["value"]
    return [rows[k] for k in sorted(rows, key=lambda x: (x is None, x or 0))]


def plot_accuracy_vs_n(records: Sequence[dict[str, Any]], task: str, out: str | Path) -> Path:
    """GPT-3-style figure: accuracy against N (log axis), one line per K; written atomically as PNG."""
    import io

    import matplotlib

    from scalinglab.io import atomic_write_bytes

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["task"] == task and r.get("n_params")]
    if not rows:
        raise InputError(f"no stored result with a parameter count for task {task}")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k in sorted({r["shots"] for r in rows}):
        pts = sorted((r["n_params"], r["value"], r.get("acc_sd", 0.0)) for r in rows if r["shots"] == k)
        ax.errorbar([p[0] for p in pts], [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts],
                    marker="o", capsize=3, label={0: "zero-shot", 1: "one-shot"}.get(k, f"{k}-shot"))
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (non-embedding)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(task)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
