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
    from scalinglab.cli._app import console

    return console()


@app.command("fit")
def fit_cmd(
    path: Path = typer.Argument(..., help="Runs table: CSV, Parquet or JSON lines (.jsonl)."),
    law: str = typer.Option(
        "chinchilla",
        "--law",
        help="A form of scalinglab.laws.forms (chinchilla, kaplan-nd, power, power+const, kaplan-ns, bcrit, "
        "bnsl, ...) or isoflop (Hoffmann's Approach 2 on columns C, N, loss: a parabola per budget, "
        "N_opt ~ C^a).",
    ),
    col: list[str] = typer.Option(
        None,
        "--col",
        help='VAR=COLUMN, e.g. N="Model Size" C="Training FLOP" '
        "loss=loss. Variables: N, D, C, S, L, B, loss.",
    ),
    var: str = typer.Option(
        None, "--var", help="The variable of a one-variable law (power, power+const, bnsl, ...)."
    ),
    drop_highest: int = typer.Option(
        0, "--drop-highest", help="Drop the K rows with the highest loss first."
    ),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for SE and 95% intervals."),
    bootstrap_method: str = typer.Option(
        "parametric", "--bootstrap-method", help="parametric (losses redrawn around the fit; calibrated) or "
        "pairs (runs resampled; conservative, as Besiroglu et al. 2024)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    delta: float = typer.Option(1e-3, "--delta", help="Huber delta on log residuals."),
    starts: int = typer.Option(
        None, "--starts", help="Use a seeded subsample of K grid starts (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the FitResult's to_dict())."),
    samples: bool = typer.Option(
        False, "--samples", help="Kept for old scripts: with --json and --bootstrap the bootstrap samples "
        "are always written (predict, allocate and plot take their intervals from them)."
    ),
) -> None:
    """Fit a law to runs (summed Huber on log loss, full multi-start grid, optional bootstrap)."""
    import warnings

    import numpy as np

    from scalinglab.errors import InputError
    from scalinglab.laws.data import read_table
    from scalinglab.laws.fit import fit
    from scalinglab.laws.forms import form_class

    columns = _parse_pairs(col, "--col")
    unknown = [k for k in columns if k not in _UNITS]
    if unknown:
        raise InputError(f"--col: unknown variable {unknown[0]!r}; use one of {', '.join(_UNITS)}")
    if var is None and law.lower() != "isoflop" and form_class(law).free_variable:
        given = [k for k in columns if k in ("N", "D", "C", "S")]
        var = given[0] if len(given) == 1 else None
    df = read_table(path)
    if bootstrap < 0 or drop_highest < 0 or (starts is not None and starts < 1):
        raise InputError("--bootstrap and --drop-highest must be >= 0 and --starts >= 1")
    if samples and not (as_json and bootstrap):
        raise InputError("--samples needs --json and --bootstrap N (the samples are written into the JSON)")
    if law.lower() == "isoflop":
        _fit_isoflop(df, columns, bootstrap, seed, as_json)
        return
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
            bootstrap_method=bootstrap_method,
        )
    if as_json:
        print_json(res.to_dict(samples=bool(bootstrap)))
        return
    _print_fit(res)


def _fit_isoflop(df, columns: dict[str, str], bootstrap: int, seed: int, as_json: bool) -> None:
    """Hoffmann's Approach 2 from a table of final losses (``laws.approaches.isoflop``)."""
    from scalinglab.errors import InputError
    from scalinglab.laws.approaches import isoflop

    cols = {"C": columns.get("C", "C"), "N": columns.get("N", "N"), "loss": columns.get("loss", "loss")}
    extra = sorted(set(columns) - set(cols))
    if extra:
        raise InputError(f"--law isoflop reads columns C, N and loss; --col {extra[0]} does not apply")
    r = isoflop(df, C=cols["C"], N=cols["N"], loss=cols["loss"], bootstrap=bootstrap, seed=seed)
    d = {"law": "isoflop", **r.to_dict(), "n_bootstrap": bootstrap}
    if as_json:
        print_json(d)
        return
    from rich.table import Table

    how = f"95% bootstrap ({bootstrap} resamples)" if bootstrap else "95% (delta method)"
    t = Table(title="Approach 2 (Hoffmann 2022): isoFLOP minima of loss = c2 (ln N)^2 + c1 ln N + c0")
    for c in ("budget (FLOPs)", "N_opt (params)", how, "loss at N_opt (nats/token)"):
        t.add_column(c, justify="right")
    for m in r.minima:
        t.add_row(f"{m['budget']:.4g}", f"{m['N_opt']:.4g}", f"{m['N_lo']:.4g} .. {m['N_hi']:.4g}",
                  f"{m['loss_opt']:.4f}")
    con = _console()
    con.print(t)
    if r.fit is not None:
        lo, hi = r.a_ci95
        kind = "bootstrap" if r.fit.interval == "bootstrap" else "t-interval of the log-log line"
        con.print(f"N_opt = {r.fit.k:.4g} C^a with a = {r.a:.4f}  (95% {lo:.4f} .. {hi:.4f}, {kind}); "
                  f"D_opt ~ C^{1 - r.a:.4f}", highlight=False)
    for w in r.warnings:
        con.print(f"[bold yellow]warning:[/bold yellow] {w}", highlight=False)


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


def _load_law(name: str, pick: str | None = None, want_nd: bool = False):
    """A preset name, or a fit JSON: one fit (``scalinglab fit --json``), one row of ``study fit --json``,
    or the whole ``study fit --json`` document, whose row ``pick`` is taken (default: the only row, or for
    an allocation the L(N, D) row)."""
    from scalinglab.errors import InputError
    from scalinglab.laws.fit import FitResult
    from scalinglab.laws.presets import get_preset

    p = Path(name)
    if not (name.endswith(".json") or p.is_file()):
        if pick:
            raise InputError(f"--fit {pick!r} applies to a `study fit --json` file, not to preset {name!r}")
        return get_preset(name)
    if not p.is_file():
        raise InputError(f"fit JSON not found: {p}")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(doc, dict) and isinstance(doc.get("fits"), list):
        rows = {r.get("law"): r for r in doc["fits"] if isinstance(r, dict)}
        laws = [k for k, r in rows.items() if r.get("form") or r.get("params")]
        key = pick or ("L(N,D)" if want_nd and "L(N,D)" in rows else (laws[0] if len(laws) == 1 else None))
        if key is None:
            raise InputError(f"{p} holds the fits {laws}: choose one with --fit LAW")
        if key not in rows:
            raise InputError(f"{p} has no fit {key!r}; it holds {laws}")
        doc = rows[key]
    elif pick:
        raise InputError(f"--fit {pick!r} applies to a `study fit --json` file; {p} holds one fit")
    return FitResult.from_dict(doc)


def _refuse(problems: list[str], force: bool, what: str) -> None:
    """Print why a number must not be acted on; exit 2 unless --force (then it is printed, marked)."""
    if not problems:
        return
    from scalinglab.errors import FitError

    msg = f"{what} refused: " + "; ".join(problems)
    if not force:
        raise FitError(msg + " (--force prints it anyway, marked UNSUPPORTED)")
    typer.echo(f"UNSUPPORTED: {msg}", err=True)


@app.command("predict")
def predict_cmd(
    law: str = typer.Argument(..., help="A preset (see `scalinglab presets`) or a fit JSON file."),
    at: list[str] = typer.Option(None, "--at", help="VAR=VALUE, e.g. --at N=1e9 --at D=1e10 (preset units)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"loss": ...} (or {"B": ...} for bcrit).'),
    pick: str = typer.Option(None, "--fit", help="Which fit of a `study fit --json` file, e.g. 'L(N)'."),
    force: bool = typer.Option(False, "--force", help="Print a prediction the fit cannot support, marked."),
) -> None:
    """Evaluate a law at one point; from a fit, with its 95 % interval (a new run, and the mean curve)."""
    from scalinglab.errors import InputError
    from scalinglab.laws.fit import FitResult

    obj = _load_law(law, pick)
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
    out = {key: y, "law": getattr(obj, "name", form.name), "at": values}
    if isinstance(obj, FitResult):
        _refuse(obj.support_problems(), force, "the prediction")
        if obj.samples is not None and len(obj.samples) >= 2:
            lo, hi = obj.predict_interval(**values)
            mlo, mhi = obj.predict_interval(noise=False, **values)
            out.update({f"{key}_ci": [float(lo), float(hi)], f"{key}_mean_ci": [float(mlo), float(mhi)]})
        out["supported"] = not obj.support_problems()
    if as_json:
        print_json(out)
        return
    from rich.table import Table

    t = Table(title=f"{getattr(obj, 'name', form.name)}: {form.description}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("95% interval: a new run | the mean curve", justify="right")
    t.add_column("unit")
    units = getattr(obj, "units", None) or _UNITS
    for k, v in values.items():
        t.add_row(k, _fmt(v), "", units.get(k, _UNITS.get(k, "")))
    ci = out.get(f"{key}_ci")
    band = "" if ci is None else (f"{ci[0]:.6g} .. {ci[1]:.6g} | {out[key + '_mean_ci'][0]:.6g} .. "
                                  f"{out[key + '_mean_ci'][1]:.6g}")
    t.add_row(key, f"{y:.6g}", band or "(published law: none)", units.get(key, _UNITS.get(key, "")))
    _console().print(t)


@app.command("allocate")
def allocate_cmd(
    flops: str = typer.Argument(..., help="Compute budget C in FLOPs, e.g. 5.76e23."),
    law: str = typer.Option(
        "hoffmann2022",
        "--law",
        help="A preset (hoffmann2022, besiroglu2024, kaplan2020-ND, kaplan2020-frontier), a fit JSON from "
        "`scalinglab fit --json`, or a `study fit --json` file (its L(N,D) row, or --fit LAW).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print N_opt, D_opt, loss (and B, S) as JSON."),
    pick: str = typer.Option(None, "--fit", help="Which fit of a `study fit --json` file (default L(N,D))."),
    force: bool = typer.Option(False, "--force", help="Print an allocation the fit cannot support, marked."),
    inference_tokens: float = typer.Option(
        None, "--inference-tokens", help="Tokens the model will serve: also the (N, D) of least training + "
        "inference FLOPs at the compute-optimal loss (Sardana et al. 2024)."
    ),
    unique_tokens: float = typer.Option(
        None, "--unique-tokens", help="Unique tokens available: the data-constrained optimum and what more "
        "epochs are worth (Muennighoff et al. 2023)."
    ),
    rd_star: float = typer.Option(None, "--rd-star", help="With --unique-tokens: R_D* (default 15.39, C4)."),
    shape: str = typer.Option(None, "--shape", help="gpt or llama: a (n_layer, d_model, n_head) for N_opt."),
) -> None:
    """Compute-optimal model size N and tokens D (C = 6ND) for a budget, with the predicted loss; from a
    fit, each with its 95 % bootstrap interval, or refused with the reason when the fit cannot support it."""
    from scalinglab.cli.budget import allocate_extras, print_extras
    from scalinglab.errors import InputError
    from scalinglab.laws.allocate import allocate

    c = _number("FLOPS", flops)
    if c <= 0:
        raise InputError(f"FLOPS must be positive, got {flops}")
    from scalinglab.laws.presets import HENIGHAN_NOPT

    special = law in ("kaplan2020-frontier", "kaplan2020-table6") or law in HENIGHAN_NOPT
    obj = law if special else _load_law(law, pick, want_nd=True)
    a = allocate(c, obj)
    _refuse([a.refused] if a.refused else [], force, "the allocation")
    extra = allocate_extras(c, obj, a, inference_tokens=inference_tokens, unique_tokens=unique_tokens,
                            rd_star=rd_star, shape=shape)
    if as_json:
        print_json({**a.to_dict(), **extra})
        return
    from rich.table import Table

    banner = "UNSUPPORTED " if a.refused else ""
    t = Table(title=f"{banner}Compute-optimal allocation at C = {c:.4g} FLOPs ({a.law}; {a.method})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("unit")

    def iv(ci, fmt: str) -> str:
        return "" if ci is None else f"{ci[0]:{fmt}} .. {ci[1]:{fmt}}"

    t.add_row("N_opt", f"{a.N_opt:.4g}", iv(a.N_opt_ci, ".4g"), "parameters")
    t.add_row("D_opt", f"{a.D_opt:.4g}", iv(a.D_opt_ci, ".4g"), "tokens")
    t.add_row("D/N", f"{a.tokens_per_param:.3g}", iv(a.tokens_per_param_ci, ".3g"), "tokens per parameter")
    t.add_row("loss", f"{a.loss:.4f}", iv(a.loss_ci, ".4f"), "nats/token (a new run at N_opt, D_opt)")
    if a.a is not None:
        t.add_row("a", f"{a.a:.4f}", iv(a.a_ci, ".4f"), "N_opt ~ C^a (D_opt ~ C^(1-a))")
    if a.B is not None:
        t.add_row("B", f"{a.B:.4g}", "", "tokens per batch")
    if a.S is not None:
        t.add_row("S", f"{a.S:.4g}", "", "optimizer steps")
    con = _console()
    con.print(t)
    if a.n_samples:
        con.print(f"intervals: 95% over {a.n_samples} bootstrap refits of the fit", highlight=False)
    for n in a.notes:
        con.print(f"note: {n}", highlight=False)
    print_extras(extra, con)


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
