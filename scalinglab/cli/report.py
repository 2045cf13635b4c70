"""CLI commands for report: ``scalinglab report DIR`` and ``scalinglab plot FIT.json``.

matplotlib and pandas are imported inside the commands, so ``scalinglab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.cli._app import app


@app.command("report")
def report_cmd(
    study_dir: Path = typer.Argument(..., help="The study folder (holds scalinglab.db)."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write every figure as PDF."),
    params: str = typer.Option(
        None,
        "--params",
        help="Parameter count for N: 'kaplan' (non-embedding, the "
        "default where the store has it) or 'total'.",
    ),
    fit: bool = typer.Option(
        True,
        "--fit/--no-fit",
        help="Fit the laws the store lacks (--no-fit: stored fits only, a quick look at a running study).",
    ),
) -> None:
    """Draw the study's figures and write DIR/report/index.html (self-contained) and DIR/report/figures/."""
    from scalinglab.report.build import render_report
    from scalinglab.report.data import load_study

    data = load_study(study_dir, param_count=params)
    res = render_report(data, Path(study_dir) / "report", pdf=pdf, fit_missing=fit)
    typer.echo(f"wrote {res.path} ({len(res.figures)} figures, {res.timings['total']:.1f} s)")
    for name, why in res.skipped.items():
        typer.echo(f"  skipped {name}: {why}")


@app.command("plot")
def plot_cmd(
    fit_json: Path = typer.Argument(..., help="A fit written by `scalinglab fit --json` (a FitResult dict)."),
    out: Path = typer.Option(None, "--out", help="Output image (.png, .pdf or .svg); default FIT.png."),
    data: Path = typer.Option(None, "--data", help="The runs table the fit was made on, to draw its points."),
    col: list[str] = typer.Option(
        None, "--col", help='VAR=COLUMN as for `scalinglab fit`, e.g. N="Model Size".'
    ),
) -> None:
    """Draw a standalone fit: the fitted law, its 95% band (when the JSON holds bootstrap samples: `scalinglab
    fit ... --bootstrap N --json --samples`), the data points (--data, or a "data" key in the JSON) and the
    residuals."""
    import json

    from scalinglab.errors import InputError
    from scalinglab.report.plot_fit import plot_fit

    columns = {}
    for pair in col or []:
        if "=" not in pair:
            raise InputError(f"--col {pair!r}: expected VAR=COLUMN")
        k, v = pair.split("=", 1)
        columns[k.strip()] = v.strip()
    path = plot_fit(fit_json, out, data=data, columns=columns)
    typer.echo(f"wrote {path}")
    if "samples" not in json.loads(Path(fit_json).read_text()):
        typer.echo("no bootstrap samples in the JSON: no 95% band (fit with --bootstrap N --json --samples)")
