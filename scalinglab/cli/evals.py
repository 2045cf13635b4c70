"""CLI commands for evals: ``scalinglab eval``, ``scalinglab export-hf`` and ``scalinglab study eval``.

Registered on the shared app; heavy imports (torch, transformers) stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.cli._app import app, print_json
from scalinglab.cli.study import study_app
from scalinglab.errors import InputError


def _shots(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--shots {text!r}: expected comma-separated integers, e.g. 0,1,10") from None
    if not vals or min(vals) < 0:
        raise InputError(f"--shots {text!r}: expected integers >= 0")
    return vals


def _print_results(results: list[dict]) -> None:
    from rich.table import Table

    from scalinglab.cli._app import console

    t = Table(title="few-shot accuracy (mean ± sd over seeds)")
    for col in ("task", "preset", "scorer", "K", "acc", "sd", "se", "docs", "contam."):
        t.add_column(col, no_wrap=True)
    for r in results:
        c = r.get("contamination")
        t.add_row(r["task"], r["preset"], r["scorer"], str(r["shots"]), f"{100 * r['acc']:.1f}%",
                  f"{100 * r['acc_sd']:.1f}", f"{100 * r['acc_se']:.1f}", str(r["n_docs"]),
                  "-" if c is None else f"{100 * c:.1f}%")
    console().print(t)


@app.command("eval")
def eval_cmd(
    model: Path = typer.Argument(..., help="a scalinglab run folder (ckpt.pt) or a local HF model dir"),
    task: str = typer.Option(..., "--task", "-t", help="task(s), comma-separated; a family name selects all "
                             "(arithmetic, words, ...); `scalinglab eval-tasks` lists them"),
    shots: str = typer.Option("0", "--shots", "-k", help="K values, e.g. 0,1,10"),
    seeds: int = typer.Option(1, "--seeds", help="few-shot seeds per K > 0 (mean and sd reported)"),
    preset: str | None = typer.Option(None, "--preset", help="prompt preset (gpt3, lmeval)"),
    scorer: str | None = typer.Option(None, "--scorer", help="override the preset's scorer (e.g. acc_norm)"),
    limit: int | None = typer.Option(None, "--limit", help="evaluate the first N documents only"),
    batch_size: int = typer.Option(16, "--batch-size", help="sequences per forward pass"),
    device: str = typer.Option("cpu", "--device"),
    data: str | None = typer.Option(None, "--data", help="text for lambada.corpus and the contamination "
                                    "check (dataset folder or spec; default: the run's dataset, else "
                                    "text:default)"),
    contamination: bool = typer.Option(False, "--contamination", help="report 13-gram overlap with --data's "
                                       "train split"),
    cache: Path | None = typer.Option(None, "--cache", help="SQLite cache of results (keyed by model)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Zero-, one- and few-shot accuracy of a model on GPT-3-style tasks."""
    from scalinglab.evals.loading import load_lm, set_threads
    from scalinglab.evals.runner import evaluate
    from scalinglab.evals.tasks import data_kwargs, expand

    set_threads()
    ks = _shots(shots)
    names = expand(task)
    lm = load_lm(model, batch_size=batch_size, device=device)
    if data is None:
        data = getattr(lm, "meta", {}).get("data") or "text:default"
    index = None
    if contamination:
        from scalinglab.data import ensure_dataset, open_dataset
        from scalinglab.evals.contamination import NgramIndex

        index = NgramIndex(open_dataset(ensure_dataset(data)).documents("train"))
    runner = lm
    if cache is not None:
        from scalinglab.evals.cache import CachingLM

        runner = CachingLM(lm, cache)
    out = []
    for name in names:
        for r in evaluate(runner, name, shots=ks, seeds=seeds, preset=preset, scorer=scorer, limit=limit,
                          task_kwargs=data_kwargs(name, data), contamination=index):
            out.append(r.to_dict())
    if as_json:
        print_json({"model": str(model), "results": out})
    else:
        _print_results(out)


@app.command("eval-tasks")
def eval_tasks_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the registered few-shot tasks with their presets."""
    from scalinglab.evals.tasks import _REGISTRY, list_tasks

    rows = []
    for name in list_tasks():
        cls = _REGISTRY[name]
        presets = getattr(cls, "presets", {})
        rows.append({"task": name, "presets": list(presets), "default": getattr(cls, "default_preset", "")})
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['task']:<22} presets: {', '.join(r['presets'])} (default {r['default']})")


@app.command("export-hf")
def export_hf_cmd(
    run: Path = typer.Argument(..., help="a scalinglab run folder (ckpt.pt)"),
    out: Path = typer.Argument(..., help="new folder for the HF model (config, weights, tokenizer)"),
) -> None:
    """Export a trained run to the Hugging Face format (GPT2LMHeadModel), readable by transformers tools."""
    from scalinglab.evals.export import export_hf

    typer.echo(str(export_hf(run, out)))


@study_app.command("eval")
def study_eval_cmd(
    study_dir: Path = typer.Argument(..., help="the study folder"),
    tasks: str = typer.Option(..., "--tasks", "-t", help="task(s), comma-separated (families allowed)"),
    shots: str = typer.Option("0,1,10", "--shots", "-k", help="K values"),
    seeds: int = typer.Option(3, "--seeds", help="few-shot seeds per K > 0"),
    preset: str | None = typer.Option(None, "--preset"),
    scorer: str | None = typer.Option(None, "--scorer"),
    limit: int | None = typer.Option(None, "--limit", help="first N documents of each task"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("cpu", "--device"),
    contamination: bool = typer.Option(False, "--contamination", help="13-gram overlap with each run's data"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Evaluate every finished run of a study; store the results and plot accuracy against N per K."""
    from scalinglab.evals.loading import set_threads
    from scalinglab.study.evals import accuracy_table, evaluate_study, plot_accuracy_vs_n

    set_threads()
    recs = evaluate_study(study_dir, tasks.split(","), shots=_shots(shots), seeds=seeds, preset=preset,
                          scorer=scorer, limit=limit, batch_size=batch_size, device=device,
                          contamination=contamination, echo=(lambda s: None) if as_json else typer.echo)
    figures = []
    for task in dict.fromkeys(r["task"] for r in recs):
        figures.append(str(plot_accuracy_vs_n(recs, task, study_dir / "report" / f"evals_{task}.png")))
    if as_json:
        print_json({"records": recs, "figures": figures})
        return
    for task in dict.fromkeys(r["task"] for r in recs):
        typer.echo(f"\n{task}")
        for row in accuracy_table(recs, task):
            typer.echo("  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()))
    for f in figures:
        typer.echo(f"figure: {f}")
