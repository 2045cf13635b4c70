"""`scalinglab study ...`: run a study from a plan, see where it stands, fit its laws, export its store.

The Typer group is `study_app`; other areas add commands to it (`study eval` lives in cli/evals.py).
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.cli._app import app, print_json

study_app = typer.Typer(
    help="Studies: one command from a plan to fitted laws; resumable; local or on a cluster.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@study_app.command("run")
def run(
    plan: Path = typer.Argument(..., help="the study plan (study.toml)"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="study folder (default: plan's `out`, else ./runs/<name>)"
    ),
    no_report: bool = typer.Option(False, "--no-report", help="skip the HTML report"),
) -> None:
    """Plan the ladder, train every run, fit the laws, write the report. Re-run the same command to resume."""
    from scalinglab.study.runner import run_study

    run_study(plan, out, echo=typer.echo, report=not no_report)


def _study_dir(path: Path) -> Path:
    """A study folder, or a plan whose study folder is meant."""
    if path.suffix == ".toml" and path.is_file():
        from scalinglab.study.plan import load_plan
        from scalinglab.study.runner import study_dir_for

        return study_dir_for(load_plan(path), path)
    return path


@study_app.command("status")
def status(
    study_dir: Path = typer.Argument(..., help="the study folder (or its plan)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Runs done, running, failed, diverged, pending; the phase and an ETA."""
    from scalinglab.study.runner import study_status

    st = study_status(_study_dir(study_dir))
    if as_json:
        print_json(st)
        return
    r = st["runs"]
    eta = "" if st["eta_s"] is None else f", ETA {st['eta_s']:.0f} s"
    typer.echo(
        f"{st['study_dir']}: {st['total']} runs: {r['done']} done, {r['running']} running, "
        f"{r['pending']} pending, {r['failed']} failed, {r['diverged']} diverged; "
        f"phase {st['phase'] or '-'}{eta}; fits: {', '.join(st['fits']) or '-'}"
    )


@study_app.command("fit")
def fit(
    study_dir: Path = typer.Argument(..., help="the study folder (or its plan)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Fit (or re-read) the laws the plan asks for, on the finished runs."""
    from scalinglab.errors import ConfigError
    from scalinglab.study import fitting
    from scalinglab.study.plan import load_plan
    from scalinglab.study.store import Store

    d = _study_dir(study_dir)
    if not (d / "scalinglab.db").is_file() or not (d / "study.toml").is_file():
        raise ConfigError(f"{d} is not a study folder (needs scalinglab.db and study.toml)")
    plan = load_plan(d / "study.toml")
    store = Store(d)
    ids = store.get_meta("plan_runs", store.run_ids())
    echo = _err if as_json else typer.echo
    fits = fitting.fit_study(store, plan, ids, echo)
    from scalinglab.study import findings

    if as_json:
        arch = findings.from_store(store, plan, ids).to_dict()
        print_json({"fits": fitting.fit_rows(fits), "nopt_exponents": fitting.nopt_exponents(fits),
                    "architecture": arch})
    else:
        fitting.print_summary(store, plan, ids, fits, typer.echo)
        findings.print_findings(store, plan, ids, typer.echo)


@study_app.command("export")
def export(
    study_dir: Path = typer.Argument(..., help="the study folder"),
    out: Path = typer.Argument(..., help="folder to write the tables into"),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv"),
) -> None:
    """Write the store's tables (runs, metrics, noise_scale, fits, evals) as parquet or csv files."""
    from scalinglab.errors import ConfigError
    from scalinglab.study.store import Store

    d = _study_dir(study_dir)
    if not (d / "scalinglab.db").is_file():
        raise ConfigError(f"{d} is not a study folder (no scalinglab.db)")
    for p in Store(d).export(out, fmt):
        typer.echo(str(p))
