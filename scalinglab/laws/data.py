"""Reading and checking the data a law is fitted to: one clear error naming the column and the row.

Rows are numbered from 1 over the data rows (the header is not counted), as a spreadsheet user would count.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.forms import Form


def read_table(path: str | Path):
    """CSV, Parquet or JSON lines (by extension; .jsonl/.ndjson/.json) -> pandas DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_json_lines(p)
        return pd.read_csv(p)
    except (ValueError, OSError, ImportError, MemoryError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"could not read {p}: {first}") from None


def _read_json_lines(p: Path):
    """One JSON object per line (blank lines skipped) -> DataFrame; a line that is not an object is named."""
    import json

    import pandas as pd

    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"could not read {p}: line {i} is not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"could not read {p}: line {i} is a JSON {type(row).__name__}, not an object "
                             "(one run per line: {\"N\": ..., \"loss\": ...})")
        rows.append(row)
    return pd.DataFrame(rows)


def _column(data, name: str) -> np.ndarray:
    """One column as float64, with the first non-numeric, NaN or infinite cell reported by row."""
    raw = data[name]
    values = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=object).ravel()
    out = np.empty(values.size)
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InputError(f"column {name!r} row {i + 1}: {str(v)[:40]!r} is not a number") from None
        except OverflowError:  # an integer beyond float range
            raise InputError(f"column {name!r} row {i + 1}: {str(v)[:40]}... is too large") from None
        if np.isnan(x):
            raise InputError(f"column {name!r} row {i + 1}: missing value (NaN)")
        if np.isinf(x):
            raise InputError(f"column {name!r} row {i + 1}: infinite value")
        out[i] = x
    return out


def _numeric(data, name: str) -> np.ndarray:
    raw = data[name]
    try:
        arr = np.asarray(raw, dtype=float).ravel()
    except (TypeError, ValueError, OverflowError):
        return _column(data, name)
    if not np.all(np.isfinite(arr)):
        return _column(data, name)
    return arr


def prepare(form: Form, data, loss: str | None = None, columns: Mapping[str, str] | None = None):
    """Variables and target of ``form`` from a DataFrame or dict of arrays, checked.

    ``columns`` maps a form variable to a column name (e.g. {"N": "Model Size", "C": "Training FLOP"});
    unmapped variables are looked up by their own name. The target is ``loss`` (or, for the loss column,
    also "L"); for ``CriticalBatch`` the target is "B" and the variable "L" may come from "loss".
    D = C/(6N) (or N = C/(6D)) is derived when absent, and that assumption is returned in ``notes``.
    Returns (variables: dict[str, ndarray], target: ndarray, notes: list[str]).
    """
    columns = dict(columns or {})
    names = list(data.columns) if hasattr(data, "columns") else list(data.keys())

    def col_for(var: str) -> str | None:
        if var in columns:
            if columns[var] not in names:
                raise InputError(f"column {columns[var]!r} (for {var}) not found; columns are {names}")
            return columns[var]
        return var if var in names else None

    target_var = form.target
    if target_var == "loss":
        named, default = [columns.get("loss"), loss, columns.get("L")], ["loss", "L"]
    else:
        named, default = [columns.get(target_var)], [target_var]
    named = [c for c in named if c is not None]
    for c in named:  # a column the user named must exist: never fall back to another one silently
        if c not in names:
            raise InputError(f"column {c!r} (for the fitted {target_var}) not found; columns are {names}")
    cands = named + default
    tcol = next((c for c in cands if c in names), None)
    if tcol is None:
        raise InputError(f"missing column {cands[0]!r} for the fitted {target_var}; columns are {names}")

    present: dict[str, np.ndarray] = {}
    wanted = set(form.variables) | {"N", "D", "C"}
    known = ("N", "D", "C", "S", "L", "B", "loss")
    for var in known + tuple(v for v in form.variables if v not in known):  # e.g. t, a context position
        if var in wanted or var in form.variables:
            c = col_for(var)
            if c is not None and c != tcol:
                present[var] = _numeric(data, c)
    if "L" in form.variables and "L" not in present:
        c = col_for("loss")
        if c is not None and c != tcol:
            present["L"] = _numeric(data, c)
    notes = []
    if "D" in form.variables and "D" not in present and "C" in present and "N" in present:
        with np.errstate(divide="ignore", invalid="ignore"):  # N <= 0 is reported below, by row
            present["D"] = present["C"] / (6.0 * present["N"])
        notes.append("D = C/(6N) tokens (no D column; C assumed to be 6ND training FLOPs)")
    if "N" in form.variables and "N" not in present and "C" in present and "D" in present:
        with np.errstate(divide="ignore", invalid="ignore"):
            present["N"] = present["C"] / (6.0 * present["D"])
        notes.append("N = C/(6D) (no N column; C assumed to be 6ND training FLOPs)")
    missing = [v for v in form.variables if v not in present]
    if missing:
        hint = " (or C and N, to derive D = C/(6N))" if "D" in missing else ""
        raise InputError(f"missing column(s) {missing}{hint} for law {form.name!r}; columns are {names}")
    y = _numeric(data, tcol)
    variables = {v: present[v] for v in form.variables}
    derived = {"D": ("C", "N"), "N": ("C", "D")}  # a derived variable is blamed on its source columns
    for v, arr in list(variables.items()) + [(target_var, y)]:
        bad = np.flatnonzero(~(arr > 0) | ~np.isfinite(arr))  # a derived one can be 0/0 or overflow
        if bad.size:
            i = int(bad[0])
            if v != target_var and col_for(v) is None and v in derived:
                src = " and ".join(repr(col_for(u)) for u in derived[v])
                what = "positive" if not arr[i] > 0 else "finite (it overflows)"
                raise InputError(f"row {i + 1}: {v} (from columns {src}) must be {what}, got {arr[i]:g}")
            label = columns.get(v, v) if v != target_var else tcol
            raise InputError(f"column {label!r} row {i + 1}: {v} must be positive, got {arr[i]:g}")
    n_params = len(form.param_names)
    if y.size <= n_params:
        raise FitError(
            f"too few points for law {form.name!r}: {y.size} rows, need more than {n_params} "
            f"(one per parameter {list(form.param_names)} plus one)"
        )
    return variables, y, notes


def decades(x: np.ndarray) -> float:
    """log10(max/min) of a positive array (as a difference of logs: max/min can overflow)."""
    return float(np.log10(np.max(x)) - np.log10(np.min(x)))
