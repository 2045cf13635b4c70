"""``scalinglab plot FIT.json``: draw one fit made by ``scalinglab fit --json`` (a FitResult dict).

Left: the fitted law on log axes (one curve per second-variable value for two-variable laws), the fitted
points when the JSON carries them (key ``data``: column -> list, the form's variable names and target),
and the 95% band when it carries bootstrap ``samples``. Right: the log residuals of the fit. The box
lists the parameters with their 95% intervals and the convergence verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scalinglab.errors import InputError
from scalinglab.report import style

# display ranges when the JSON has no data points (units: N params, D tokens, C FLOPs, S steps, L nats/token)
DEFAULT_RANGE = {"N": (1e6, 1e11), "D": (1e8, 1e13), "C": (1e17, 1e24), "S": (1e2, 1e6), "L": (2.0, 6.0)}
LABEL = {
    "N": "N, parameters",
    "D": "D, tokens",
    "C": "C, training compute (FLOPs)",
    "S": "S, optimizer steps",
    "L": "L, loss (nats/token)",
    "loss": "loss, nats/token",
    "B": "B_crit, tokens",
}


def load_fit(path: Path):
    """(FitResult, data dict or None) from a ``scalinglab fit --json`` file or a store ``fits`` row."""
    from scalinglab.laws.fit import FitResult

    path = Path(path)
    if not path.is_file():
        raise InputError(f"fit file {path} does not exist")
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path} is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object (a FitResult dict)")
    if "result" in d and isinstance(d["result"], dict):  # a store row {"law", "result", "backtest"}
        d = {**d["result"], **({"data": d["data"]} if "data" in d else {})}
    if "fit" in d and isinstance(d["fit"], dict):  # {"fit": FitResult dict, "data": ..., "backtest": ...}
        d = {**d["fit"], **({"data": d["data"]} if "data" in d else {})}
    data = d.get("data")
    res = FitResult.from_dict(d)
    if not data:
        return res, None
    try:
        return res, {k: np.asarray(v, float) for k, v in dict(data).items()}
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'data' must map each variable to a list of numbers") from None


def _range(var: str, data: dict | None) -> tuple[float, float]:
    if data is not None and var in data and np.all(data[var] > 0):
        return float(data[var].min()), float(data[var].max())
    return DEFAULT_RANGE.get(var, (1.0, 1e6))


def draw_fit(res, data: dict | None = None):
    """The standalone fit figure (a matplotlib Figure)."""
    form = res.form
    fig, (ax, axr) = style.figure(2)
    xv = form.variables[0]
    lo, hi = _range(xv, data)
    x = np.geomspace(lo / 1.5, hi * 1.5, 150)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(form.variables) == 1:
        groups = [({}, "black", "fit")]
    else:
        zv = form.variables[1]
        zlo, zhi = _range(zv, data)
        zs = np.geomspace(zlo, zhi, 4)
        cols, _, _ = style.n_colors(zs)
        groups = [({zv: z}, c, f"{zv} = {style.fmt_si(z)}") for z, c in zip(zs, cols, strict=True)]
    for extra, col, lab in groups:
        v = {xv: x, **{k: np.full_like(x, z) for k, z in extra.items()}}
        ax.plot(x, res.predict(**v), color=col, lw=1.4, label=lab)
        if res.samples is not None and len(res.samples):
            blo, bhi = res.predict_interval(noise=False, **v)
            ax.fill_between(x, blo, bhi, color=col, alpha=0.15, lw=0)
    if data is not None and xv in data and form.target in data:
        c = "0.3"
        if len(form.variables) > 1 and form.variables[1] in data:
            cols, _, _ = style.n_colors(data[form.variables[1]])
            c = cols
        ax.scatter(data[xv], data[form.target], s=12, c=c, zorder=3, label="fitted points")
    ax.set_xlabel(LABEL.get(xv, xv))
    ax.set_ylabel(LABEL.get(form.target, form.target))
    ax.set_title(f"{form.name}: {form.description}")
    ax.legend(loc="upper right")
    lines = [
        f"{k} = {style.fmt_num(v)}"
        + (f"  [{style.fmt_num(res.ci95[k][0])}, {style.fmt_num(res.ci95[k][1])}]" if res.ci95 else "")
        for k, v in res.params.items()
    ]
    lines.append(
        f"{'converged' if res.converged else 'NOT converged'}; {res.n_points} points; "
        f"R2(log) {res.r2_log:.4f}"
    )
    axr.text(
        0.02,
        0.98,
        "\n".join(lines),
        transform=axr.transAxes,
        fontsize=6.5,
        va="top",
        family="monospace",
        bbox=dict(boxstyle="round", fc="white", ec="0.8", alpha=0.9),
        zorder=5,
    )
    r = np.asarray(res.residuals, float)
    if r.size:
        axr.hist(100 * r, bins=min(30, max(5, r.size // 4)), color="C0", alpha=0.8)
        axr.axvline(0, color="black", lw=0.8)
        axr.set_title(f"Residuals, RMS {100 * np.sqrt(np.mean(r**2)):.2f}%")
    else:
        axr.text(0.5, 0.5, "no residuals stored", ha="center", transform=axr.transAxes)
    axr.set_xlabel("log observed - log fitted (%)")
    axr.set_ylabel("points")
    style.finish(fig)
    return fig


def read_points(res, table: Path, columns: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The fit's variables and target from a runs table (CSV, Parquet, JSONL), as ``scalinglab fit`` reads
    it (``laws.data.read_table`` and ``prepare``; ``columns`` maps VAR -> column name)."""
    from scalinglab.laws.data import prepare, read_table

    variables, y, _ = prepare(res.form, read_table(table), columns=columns)
    return {**variables, res.form.target: y}


def plot_fit(
    fit_json: Path,
    out: Path | None = None,
    *,
    data: Path | None = None,
    columns: dict[str, str] | None = None,
) -> Path:
    """Draw ``fit_json`` into ``out`` (.png, .pdf or .svg; default: next to the JSON, .png), with the points
    of the runs table ``data`` when given (else those stored in the JSON). Returns the path written."""
    res, points = load_fit(fit_json)
    if data is not None:
        points = read_points(res, data, columns)
    data = points
    out = Path(out) if out is not None else Path(fit_json).with_suffix(".png")
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("png", "pdf", "svg"):
        raise InputError(f"--out {out}: the image must end in .png, .pdf or .svg")
    fig = draw_fit(res, data)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format=fmt, **({"dpi": style.PNG_DPI} if fmt == "png" else {}))  # as the report's PNGs
    tmp.replace(out)
    return out
