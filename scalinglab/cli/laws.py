"""CLI commands for laws: ``fit``, ``predict``, ``allocate``, ``presets``. Heavy imports stay inside commands.

User errors (bad columns, NaN, non-positive values, too few points, unknown preset) raise
``scalinglab.errors`` exceptions, which the app prints as one line with exit status 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from scalinglab.cli._app import app, print_json

_UNITS = {
    "N": "params",
    "D": "tokens",
    "C": "FLOPs",
    "S": "steps",
    "L": "nats/token",
    "B": "tokens",
    "loss": "nats/token",
}


def _parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    from scalinglab.errors import InputError

    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"{what} expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip().strip('"').strip("'")
        if not k or not v:
            raise InputError(f"{what} expects NAME=VALUE, got {item!r}")
        out[k] = v
    return out


def _number(name: str, v: str) -> float:
    from scalinglab.errors import InputError

    try:
        x = float(v)
    except ValueError:
        raise InputError(f"{name}={v!r} is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"{name}={v!r} must be finite")
    return x


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _console():
    from rich.console import Console

    return Console()


@app.command("fit")
def fit_cmd(
    path: Path = typer.Argument(..., help="Runs table: CSV, Parquet or JSON lines (.jsonl)."),
    law: str = typer.Option(
        "chinchilla", "--law", help="chinchilla, kaplan-nd, power, power+const, kaplan-ns, bcrit, bnsl."
    ),
    col: list[str] = typer.Option(
        None,
        "--col",
        help='VAR=COLUMN, e.g. N="Model Size" C="Training FLOP" '
        "loss=loss. Variables: N, D, C, S, L, B, loss.",
    ),
    var: str = typer.Option(
        None, "--var", help="The variable of a one-variable law (power, power+const, bnsl)."
    ),
    drop_highest: int = typer.Option(
        0, "--drop-highest", help="Drop the K rows with the highest loss first."
    ),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for SE and 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    delta: float = typer.Option(1e-3, "--delta", help="Huber delta on log residuals."),
    starts: int = typer.Option(
        None, "--starts", help="Use a seeded subsample of K grid starts (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the FitResult's to_dict())."),
    samples: bool = typer.Option(
        False, "--samples", help="With --json and --bootstrap: include the bootstrap samples (for the 95% "
        "band of `scalinglab plot`)."
    ),
) -> None:
    """Fit a law to runs (summed Huber on log loss, full multi-start grid, optional bootstrap)."""
    import warnings

    import numpy as np

    from scalinglab.errors import InputError
    from scalinglab.laws.data import read_table
    from scalinglab.laws.fit import fit

    columns = _parse_pairs(col, "--col")
    unknown = [k for k in columns if k not in _UNITS]
    if unknown:
        raise InputError(f"--col: unknown variable {unknown[0]!r}; use one of {', '.join(_UNITS)}")
    if var is None and law.lower() in ("power", "power+const", "bnsl"):
        given = [k for k in columns if k in ("N", "D", "C", "S")]
        var = given[0] if len(given) == 1 else None
    df = read_table(path)
    if bootstrap < 0 or drop_highest < 0 or (starts is not None and starts < 1):
        raise InputError("--bootstrap and --drop-highest must be >= 0 and --starts >= 1")
    # overflow in far-off starts is harmless, and a fit says what went wrong in its own warnings: numpy's
    # RuntimeWarnings would only add lines to the one the user reads (as the study's fitting does)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit(
            law,
            df,
            columns=columns,
            var=var,
            bootstrap=bootstrap,
            seed=seed,
            drop_highest=drop_highest,
            delta=delta,
            starts=starts,
        )
    if samples and not (as_json and bootstrap):
        raise InputError("--samples needs --json and --bootstrap N (the samples are written into the JSON)")
    if as_json:
        print_json(res.to_dict(samples=samples))
        return
    _print_fit(res)


def _print_fit(res) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"{res.form.name}: {res.form.description}  ({res.form.units})")
    t.add_column("param")
    t.add_column("estimate", justify="right")
    if res.se:
        t.add_column("SE", justify="right")
        t.add_column("95% interval", justify="right")
    for k in res.form.param_names:
        row = [k, _fmt(res.params[k])]
        if res.se:
            lo, hi = res.ci95[k]
            row += [_fmt(res.se[k]), f"{lo:.6g} .. {hi:.6g}"]
        t.add_row(*row)
    con.print(t)
    units = ", ".join(f"{v} in {_UNITS[v]}" for v in res.form.variables)
    con.print(
        f"variables: {units}; {res.n_points} points; objective (summed Huber, delta={res.delta:g}) "
        f"{res.objective:.6e}; R^2 of log loss {res.r2_log:.4f}"
    )
    verdict = "[green]converged[/green]" if res.converged else "[bold red]NOT converged[/bold red]"
    con.print(
        f"{verdict}: {res.message}; {res.n_at_optimum} of {res.n_starts} starts reached the optimum",
        highlight=False,
    )
    if res.n_bootstrap:
        con.print(f"bootstrap: {res.n_bootstrap} resamples, seed {res.seed} (percentile intervals)")
    for n in res.notes:
        con.print(f"assumption: {n}", highlight=False)
    for w in res.warnings:
        con.print(f"[bold yellow]warning:[/bold yellow] {w}", highlight=False)


def _load_law(name: str):
    """A preset name, or a path to a fit JSON written by ``scalinglab fit --json``."""
    from scalinglab.errors import InputError
    from scalinglab.laws.fit import FitResult
    from scalinglab.laws.presets import get_preset

    p = Path(name)
    if name.endswith(".json") or p.is_file():
        if not p.is_file():
            raise InputError(f"fit JSON not found: {p}")
        try:
            return FitResult.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise InputError(f"{p} is not valid JSON: {e.msg} (line {e.lineno})") from None
    return get_preset(name)


@app.command("predict")
def predict_cmd(
    law: str = typer.Argument(..., help="A preset (see `scalinglab presets`) or a fit JSON file."),
    at: list[str] = typer.Option(None, "--at", help="VAR=VALUE, e.g. --at N=1e9 --at D=1e10 (preset units)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"loss": ...} (or {"B": ...} for bcrit).'),
) -> None:
    """Evaluate a law at one point."""
    from scalinglab.errors import InputError

    obj = _load_law(law)
    form = obj.form
    values = {k: _number(k, v) for k, v in _parse_pairs(at, "--at").items()}
    for k, v in values.items():
        if v <= 0:
            raise InputError(f"--at {k}={v:g}: must be positive")
    used = set(form.variables)  # and what derives a missing one: D = C/(6N), N = C/(6D), L from loss
    for want, inputs in (("D", {"C", "N"}), ("N", {"C", "D"}), ("L", {"loss"})):
        if want in form.variables and want not in values and inputs <= set(values):
            used |= inputs
    unknown = sorted(set(values) - used)
    if unknown:
        raise InputError(
            f"--at {', '.join(unknown)}: law {form.name!r} is a function of {list(form.variables)}"
        )
    y = float(obj.predict(**values))
    key = "loss" if form.target == "loss" else form.target
    units = getattr(obj, "units", None) or _UNITS
    if as_json:
        print_json({key: y, "law": getattr(obj, "name", form.name), "at": values})
        return
    from rich.table import Table

    t = Table(title=f"{getattr(obj, 'name', form.name)}: {form.description}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("unit")
    for k, v in values.items():
        t.add_row(k, _fmt(v), units.get(k, _UNITS.get(k, "")))
    t.add_row(key, f"{y:.6g}", units.get(key, _UNITS.get(key, "")))
    _console().print(t)


@app.command("allocate")
def allocate_cmd(
    flops: str = typer.Argument(..., help="Compute budget C in FLOPs, e.g. 5.76e23."),
    law: str = typer.Option(
        "hoffmann2022",
        "--law",
        help="A preset (hoffmann2022, besiroglu2024, kaplan2020-ND, "
        "kaplan2020-frontier) or a fit JSON from `scalinglab fit --json`.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print N_opt, D_opt, loss (and B, S) as JSON."),
) -> None:
    """Compute-optimal model size N and tokens D (C = 6ND) for a budget, with the predicted loss."""
    from scalinglab.errors import InputError
    from scalinglab.laws.allocate import allocate

    c = _number("FLOPS", flops)
    if c <= 0:
        raise InputError(f"FLOPS must be positive, got {flops}")
    from scalinglab.laws.presets import HENIGHAN_NOPT

    special = law in ("kaplan2020-frontier", "kaplan2020-table6") or law in HENIGHAN_NOPT
    obj = law if special else _load_law(law)
    a = allocate(c, obj)
    if as_json:
        print_json(a.to_dict())
        return
    from rich.table import Table

    t = Table(title=f"Compute-optimal allocation at C = {c:.4g} FLOPs ({a.law}; {a.method})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("unit")
    t.add_row("N_opt", f"{a.N_opt:.4g}", "parameters")
    t.add_row("D_opt", f"{a.D_opt:.4g}", "tokens")
    t.add_row("D/N", f"{a.D_opt / a.N_opt:.3g}", "tokens per parameter")
    t.add_row("loss", f"{a.loss:.4f}", "nats/token")
    if a.B is not None:
        t.add_row("B", f"{a.B:.4g}", "tokens per batch")
    if a.S is not None:
        t.add_row("S", f"{a.S:.4g}", "optimizer steps")
    con = _console()
    con.print(t)
    for n in a.notes:
        con.print(f"note: {n}", highlight=False)


@app.command("presets")
def presets_cmd(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the published laws (Kaplan 2020, Henighan 2020, Hoffmann 2022, Besiroglu 2024) with units."""
    from scalinglab.laws.presets import list_presets

    rows = list_presets()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(title="Published scaling laws (scalinglab predict NAME --at VAR=VALUE)")
    t.add_column("name", no_wrap=True)
    t.add_column("law")
    t.add_column("parameters")
    t.add_column("units")
    t.add_column("source")
    for r in rows:
        ps = ", ".join(f"{k}={v:.4g}" for k, v in r["params"].items())
        units = ", ".join(f"{k}: {v}" for k, v in r["units"].items())
        t.add_row(r["name"], r["law"], ps, units, r["source"] + (f" ({r['note']})" if r["note"] else ""))
    _console().print(t)
