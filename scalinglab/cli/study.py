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
    adaptive: int = typer.Option(
        0, "--adaptive", min=0, help="then R rounds of suggest-then-train (see `study suggest`)"
    ),
    adaptive_runs: int = typer.Option(2, "--adaptive-runs", min=1, help="runs per adaptive round"),
) -> None:
    """Plan the ladder, train every run, fit the laws, write the report. Re-run the same command to resume."""
    from scalinglab.study.runner import run_study

    builder = None
    if not no_report:
        from scalinglab.report import build_report as builder
    res = run_study(
        plan, out, echo=typer.echo, report=builder, adaptive=adaptive, adaptive_runs=adaptive_runs
    )
    print_summary(res["fits"], typer.echo)


def print_summary(fits: list[dict], echo) -> None:
    """The fits (each parameter with its 95 % interval when bootstrapped), the three approaches' N_opt(C)
    exponents with intervals and back-tests, and the allocation (with intervals) or why it is refused."""
    from scalinglab.study.fitting import ANSWER, answer, fit_rows

    if not fits:
        echo("fits: none (too few finished runs for the laws asked)")
        return
    echo("fits:")
    by = {f["law"]: f for f in fits}
    for row in fit_rows(fits):
        if row["law"] == ANSWER:
            continue
        ci = (by[row["law"]]["result"] or {}).get("ci95") or {}
        ps = ", ".join(
            f"{k}={v:.4g}" + (f" [{ci[k][0]:.3g}, {ci[k][1]:.3g}]" if k in ci else "")
            for k, v in row["params"].items()
            if isinstance(v, (int, float))
        )
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
    ans = answer(fits)
    if ans:
        from scalinglab.laws.consensus import Consensus

        for line in Consensus.lines_of(ans):
            echo(line)


@study_app.command("suggest")
def suggest_cmd(
    study_dir: Path = typer.Argument(..., help="the study folder (or its plan)"),
    target: str = typer.Option(..., "--target", help="the budget to predict at, C=FLOPS (e.g. C=1e16)"),
    runs: int = typer.Option(2, "--runs", min=1, help="how many runs to propose"),
    quantity: str = typer.Option("N_opt", "--for", help="shrink the interval of N_opt or of the loss"),
    max_flops: float = typer.Option(None, "--max-flops", help="most FLOPs one run may cost "
                                    "(default: 3x the largest run so far)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The runs to train next: those that most shrink the 95 % interval of N_opt (or the loss) at the target,
    from the L(N,D) fit's bootstrap laws (expected variance reduction; see scalinglab.laws.suggest)."""
    from scalinglab.study.suggest import study_suggest

    d = study_suggest(_study_dir(study_dir), target, runs, quantity, max_flops)
    if as_json:
        print_json(d)
        return
    for line in d["lines"]:
        typer.echo(line)


@study_app.command("plan")
def plan_cmd(
    plan: Path = typer.Argument(..., help="the study plan (study.toml)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    no_calibrate: bool = typer.Option(
        False, "--no-calibrate", help="skip timing a few steps (then no wall-time estimate)"
    ),
) -> None:
    """What `study run` would train, nothing trained: the runs, their FLOPs and estimated wall time on this
    machine, and per law the decades the runs span and whether they identify it (exit 2 if not)."""
    from scalinglab.errors import ConfigError
    from scalinglab.study.runner import describe_plan

    d = describe_plan(plan, calibrate=not no_calibrate)
    bad = [c for c in d["identifiability"] if not c["identified"]]
    if as_json:
        print_json(d)
    else:
        _print_plan(d)
    if bad:
        raise ConfigError("the plan cannot identify " + "; ".join(f"{c['law']}: {c['why']}" for c in bad))


def _print_plan(d: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 140))
    t = Table(title=f"{d['plan']}: {len(d['runs'])} runs, design {d['design']}")
    for c in ("run", "roles", "shape (L x d)", "N", "tokens", "D/N", "batch", "steps", "FLOPs", "est. s"):
        t.add_column(c, justify="right" if c not in ("run", "roles") else "left")
    for r in d["runs"]:
        t.add_row(r["run_id"], ",".join(r["roles"]), f"{r['n_layer']} x {r['d_model']}", f"{r['N']:.4g}",
                  f"{r['tokens']:.4g}", f"{r['tokens_per_param']:.3g}", str(r["batch_size"]), str(r["steps"]),
                  f"{r['flops']:.3g}", "-" if r["est_s"] is None else f"{r['est_s']:.0f}")
    con.print(t)
    wall = "" if d["est_wall_s"] is None else (
        f"; estimated {d['est_wall_s'] / 60:.1f} min on this machine with {d['slots']} parallel run(s) "
        f"(step model: {d['step_model']['t0_s'] * 1e3:.1f} ms + FLOPs / {d['step_model']['flops_per_s']:.3g}"
        f" per step, {d['step_model']['source']})")
    con.print(f"total {d['total_flops']:.4g} FLOPs (C = 6 N D){wall}", highlight=False)
    t = Table(title="Can the runs identify each law? (decades spanned)")
    for c in ("law", "runs", "N", "D", "C", "identified"):
        t.add_column(c, justify="right" if c != "law" else "left")
    for c in d["identifiability"]:
        t.add_row(c["law"], str(c["runs"]), *(f"{c['decades'][v]:.2f}" for v in ("N", "D", "C")),
                  "yes" if c["identified"] else f"NO: {c['why']}")
    con.print(t)


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
    for j in st["jobs"]:  # the engine's view of every run not finished
        if j["status"] not in ("done", "diverged"):
            typer.echo(f"  {j['run_id']} {j['status']}: {j['engine']} job {j['job_id']} {j['state'] or '?'}")


@study_app.command("fit")
def fit(
    study_dir: Path = typer.Argument(..., help="the study folder (or its plan)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Fit (or re-read) the laws the plan asks for, on the finished runs."""
    from scalinglab.errors import ConfigError
    from scalinglab.study import design, fitting
    from scalinglab.study.plan import load_plan
    from scalinglab.study.store import Store

    d = _study_dir(study_dir)
    if not (d / "scalinglab.db").is_file() or not (d / "study.toml").is_file():
        raise ConfigError(f"{d} is not a study folder (needs scalinglab.db and study.toml)")
    store = Store(d)
    plan = design.expand(load_plan(d / "study.toml"), int(store.get_meta("vocab_size", 256)))
    ids = store.get_meta("plan_runs", store.run_ids())
    echo = _err if as_json else typer.echo
    fits = fitting.fit_study(store, plan, ids, echo)
    from scalinglab.study import findings

    if as_json:
        arch = findings.from_store(store, plan, ids).to_dict()
        print_json({**fitting.fit_document(store, fits), "architecture": arch})
    else:
        print_summary(fits, typer.echo)
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


@study_app.command("import")
def import_(
    sources: list[Path] = typer.Argument(..., help="CSV / Parquet / JSON-lines tables, or W&B run folders"),
    out: Path = typer.Option(..., "--out", "-o", help="the study folder to write (created)"),
    col: list[str] = typer.Option(
        None, "--col", help='VAR=COLUMN: N, D, C, loss, run, step, seed, batch, train_loss (N="Model Size")'
    ),
    params: str = typer.Option("total", "--params", help="what N counts: total (all parameters) or kaplan"),
    laws: str = typer.Option(
        None, "--laws", help='comma-separated laws, e.g. "L(N),L(N,D)" (default: what the data allow)'
    ),
    eval_: list[str] = typer.Option(None, "--eval", help="TASK[@K]=COLUMN: a few-shot accuracy (fraction)"),
    eval_loss: list[str] = typer.Option(None, "--eval-loss", help="TASK[@K]=COLUMN: its task loss"),
    name: str = typer.Option(None, "--name", help="study name (default: the folder's)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Import runs trained elsewhere (a table or a W&B export) into a study for `study fit` and `report`."""
    import re

    from scalinglab.cli.laws import _parse_pairs
    from scalinglab.study.importer import import_runs

    res = import_runs(sources, out, columns=_parse_pairs(col, "--col"), params=params, name=name,
                      laws=[x.strip() for x in re.split(r",(?![^(]*\))", laws)] if laws else None,
                      evals=_parse_pairs(eval_, "--eval"), eval_losses=_parse_pairs(eval_loss, "--eval-loss"))
    if as_json:
        print_json(res.to_dict())
        return
    cols = ", ".join(f"{k}={v!r}" for k, v in res.columns.items())
    typer.echo(f"{res.study_dir}: {res.runs} runs ({res.new_runs} new), {res.metrics} metrics rows, "
               f"{res.evals} evaluations; columns {cols}")
    for s in res.skipped:
        typer.echo(f"note: {s}")
    typer.echo(f"next: scalinglab study fit {res.study_dir} ; scalinglab report {res.study_dir}")
