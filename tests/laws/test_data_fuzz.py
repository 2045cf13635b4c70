"""Fuzzed input for the fit loader (``scalinglab.laws.data``: CSV, Parquet, JSON lines): every file either
loads and fits, or raises the project's documented error (InputError / FitError: one line at the CLI); never
another exception. Inputs: raw bytes under each extension, malformed CSV (ragged rows, odd cells, odd
headers), JSON lines of arbitrary JSON values, Parquet files of mixed column types.

Found by these (fixed): a JSON line that is not an object (``0``, ``null``, ``[]``) raised a pandas TypeError;
an integer beyond float range (``1e400`` written as digits) raised OverflowError."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from scalinglab.cli._app import _jsonable
from scalinglab.errors import ScalingLabError
from scalinglab.laws.data import read_table
from scalinglab.laws.fit import fit

# SCALINGLAB_FUZZ_EXAMPLES=5000 for a longer search than the suite's
SETTINGS = settings(max_examples=int(os.environ.get("SCALINGLAB_FUZZ_EXAMPLES", 120)), deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
NAMES = ["N", "D", "C", "S", "L", "B", "loss", "Model Size", "Training FLOP", "", " N", "n", "loss ", "é"]
# (law, var, columns): the forms a user fits, with and without a column mapping
LAWS = [("power", "N", {}), ("power+const", "D", {}), ("chinchilla", None, {}),
        ("chinchilla", None, {"N": "Model Size", "C": "Training FLOP"}), ("kaplan-nd", None, {}),
        ("kaplan-ns", None, {}), ("bcrit", None, {}), ("bnsl", "N", {})]

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-0", "0", "1e-320", "abc", '"1,5"', "1,5",
                     "  7 ", "True", "null", "None", "0x10", "1_000", '"', "'", "\t", "1e", "٣"]),
    st.text(max_size=6),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-(10**20), 10**20) | st.text(max_size=5)
    | st.sampled_from([10**400, -(10**400), 2**64]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
    max_leaves=6,
)

objects = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=5)


def _load_and_fit(path: Path, law: tuple) -> str:
    """read_table + fit as `scalinglab fit` does; the outcome's kind (an assertion error for anything
    else)."""
    name, var, columns = law
    try:
        df = read_table(path)
        with contextlib.redirect_stderr(io.StringIO()):
            res = fit(name, df, columns=columns, var=var, starts=2)
    except ScalingLabError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), f"not one line: {msg!r}"
        return type(e).__name__
    res.summary()  # what the CLI prints, or its --json (inf/NaN as null)
    json.dumps(_jsonable(res.to_dict()), allow_nan=False)
    return "fitted"


def _write(data: bytes | str, suffix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    p = d / f"runs{suffix}"
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return p


@SETTINGS
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl", ".json", ".ndjson", ".parquet",
                                                             ".pq", ".txt", ".CSV"]),
       law=st.sampled_from(LAWS))
def test_raw_bytes(data: bytes, suffix: str, law: tuple) -> None:
    event(_load_and_fit(_write(data, suffix), law))


@SETTINGS
@given(header=st.lists(st.sampled_from(NAMES), min_size=0, max_size=5),
       rows=st.lists(st.lists(cells, min_size=0, max_size=6), max_size=10),
       sep=st.sampled_from([",", ";", "\t"]), law=st.sampled_from(LAWS))
def test_malformed_csv(header: list[str], rows: list[list[str]], sep: str, law: tuple) -> None:
    text = "\n".join([sep.join(header)] + [sep.join(r) for r in rows]) + "\n"
    event(_load_and_fit(_write(text.replace("\x00", ""), ".csv"), law))


@SETTINGS
@given(lines=st.lists(st.one_of(objects.map(json.dumps), json_values.map(json.dumps), st.text(max_size=10)),
                      max_size=10),
       law=st.sampled_from(LAWS))
@example(lines=["{}", "0"], law=LAWS[0])
@example(lines=['{"N": 1' + "0" * 400 + ', "loss": 2}'] * 4, law=LAWS[0])
def test_json_lines(lines: list[str], law: tuple) -> None:
    event(_load_and_fit(_write("\n".join(lines), ".jsonl"), law))


column = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=4, max_size=4),
    st.lists(st.none() | st.floats(min_value=1, max_value=1e12), min_size=4, max_size=4),
    st.lists(st.text(max_size=4), min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
)


@SETTINGS
@given(cols=st.dictionaries(st.sampled_from(NAMES), column, max_size=5), law=st.sampled_from(LAWS))
def test_parquet_columns_of_any_type(cols: dict, law: tuple) -> None:
    path = _write(b"", ".parquet")
    try:
        pd.DataFrame(cols).to_parquet(path)
    except Exception:  # pyarrow cannot write this frame (e.g. an object column of mixed types): not our input
        event("not writable")
        return
    event(_load_and_fit(path, law))


@settings(max_examples=40, deadline=None)
@given(header=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
       rows=st.lists(st.lists(cells, min_size=1, max_size=4), max_size=8), law=st.sampled_from(LAWS))
def test_cli_prints_one_line(header: list[str], rows: list[list[str]], law: tuple) -> None:
    """Through the console entry point: exit 0, or exit 2 with exactly one `error:` line on stderr."""
    from scalinglab.cli._app import main

    path = _write("\n".join([",".join(header)] + [",".join(r) for r in rows]).replace("\x00", ""), ".csv")
    name, var, columns = law
    argv = ["scalinglab", "fit", str(path), "--law", name, "--starts", "2", "--json"]
    argv += [f"--col={k}={v}" for k, v in columns.items()] + (["--var", var] if var else [])
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code
    finally:
        sys.argv = old
    if code == 0:
        json.loads(out.getvalue())
        event("fitted")
    else:
        lines = [x for x in err.getvalue().splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err.getvalue())
        event("one-line error")


positive = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([1.0, 1e-320, 1e308, 2.0]))


@SETTINGS
@given(law=st.sampled_from(LAWS), n=st.integers(0, 12), data=st.data())
def test_numeric_tables_reach_the_fit(law: tuple, n: int, data) -> None:
    """Tables a fit gets to see (the law's columns, positive numbers of any magnitude, repeated values): they
    fit, or give the documented error (e.g. too few points), never a numerical exception."""
    name, var, columns = law
    cols = {"N": "N", "D": "D", "C": "C", "S": "S", "B": "B", "L": "L", **columns}
    keep = data.draw(st.sets(st.sampled_from(sorted(set(cols.values()))), min_size=1))
    table = {c: data.draw(st.lists(positive, min_size=n, max_size=n)) for c in keep}
    table["loss"] = data.draw(st.lists(positive, min_size=n, max_size=n))
    p = _write("", ".csv")
    pd.DataFrame(table).to_csv(p, index=False)
    event(_load_and_fit(p, law))


def test_a_good_table_still_fits(tmp_path: Path) -> None:
    """The fuzz above must not pass by refusing everything: a clean table of a power law loads and fits."""
    p = tmp_path / "runs.csv"
    pd.DataFrame({"N": [1e6, 1e7, 1e8, 1e9], "loss": [4.0, 3.2, 2.6, 2.1]}).to_csv(p, index=False)
    assert _load_and_fit(p, ("power", "N", {})) == "fitted"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "--hypothesis-show-statistics"])
