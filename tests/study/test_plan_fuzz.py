"""Fuzzed study plans: every `study.toml` either loads and plans (``load_plan`` / ``parse_plan``, then
``make_runs`` and the trainer config and counts of every planned run, as `study run` does before training) or
raises ConfigError (one line at the CLI); never another exception, never a hang. Inputs: raw bytes, random
edits of a valid plan's text, and valid plans with a few keys set to arbitrary TOML values.

Found by these (fixed): a plan that is not UTF-8 raised UnicodeDecodeError; `isoflop.n_sizes` or
`seeds.repeat` = 10**9 planned forever; a quoted key holding a newline made a two-line error."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
from pathlib import Path

import tomllib
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from scalinglab.errors import ConfigError, ScalingLabError
from scalinglab.study.plan import Plan, load_plan, make_runs, parse_plan

TINY = (Path(__file__).parent / "tiny.toml").read_text()
BASE = tomllib.loads(TINY)
# SCALINGLAB_FUZZ_EXAMPLES=5000 for a longer search than the suite's
SETTINGS = settings(max_examples=int(os.environ.get("SCALINGLAB_FUZZ_EXAMPLES", 150)), deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

# the schema's sections and their keys (plus a few that do not exist)
SECTIONS = {name: list(f.annotation.model_fields) + ["bogus"] for name, f in Plan.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
SECTIONS["train"] = ["schedule", "warmup_tokens", "eval_every", "grad_clip", "dtype", "n_layer", "bogus"]
TOP = [k for k in Plan.model_fields if k not in SECTIONS] + ["bogus"]

scalars = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.text(max_size=8),
    st.sampled_from([0, 1, 2, -1, 10**9, 10**12, 1e30, 1e-30, 0.5, "dense", "banded:0", "alternating:4",
                     "fixed", "noise_scale", "kaplan", "width", "L(N)", "local", "ray", "text:default", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.sampled_from(["n_layer", "d_model"]), inner,
                                        max_size=3), max_leaves=8)


def _plan_and_count(plan: Plan) -> int:
    """What `study run` does with a plan before training: plan the runs, build each run's trainer config and
    its parameter and FLOP counts."""
    from scalinglab.study.runner import counts_for

    runs = make_runs(plan, 256)
    for r in runs:
        counts = counts_for(r.config, 256)
        assert counts["params"]["total"] > 0
    return len(runs)


def _outcome(fn) -> str:
    try:
        n = fn()
    except ScalingLabError as e:
        assert isinstance(e, ConfigError), f"{type(e).__name__}: {e}"
        msg = str(e)
        assert msg and "\n" not in msg.strip(), f"not one line: {msg!r}"
        return "ConfigError"
    return "planned" if n else "no runs"


def _load_file(data: bytes) -> str:
    p = Path(tempfile.mkdtemp(prefix="plan-fuzz-")) / "study.toml"
    p.write_bytes(data)
    return _outcome(lambda: _plan_and_count(load_plan(p)))


@SETTINGS
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe name = 1")
def test_raw_bytes(data: bytes) -> None:
    event(_load_file(data))


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(TINY)), st.integers(0, 3), st.text(max_size=4)),
                      min_size=1, max_size=4))
def test_edited_plan_text(edits: list) -> None:
    text = TINY
    for pos, cut, new in edits:
        pos = min(pos, len(text))
        text = text[:pos] + new + text[pos + cut:]
    event(_load_file(text.encode("utf-8", "surrogatepass")))


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(SECTIONS) + TOP), st.integers(0, 20), values,
                                  st.booleans()), min_size=1, max_size=3))
@example(changes=[("isoflop", 0, [1e12], False), ("isoflop", 1, 10**9, False)])  # planned forever
@example(changes=[("seeds", 1, 10**9, False)])
@example(changes=[("model", 0, [{"\n": 0}], False)])  # a quoted key holding a newline: still one line
@example(changes=[("tokens", 0, [1e300], False)])
@example(changes=[("model", 0, [{"n_layer": 10**6, "d_model": 2}], False)])
def test_plans_with_arbitrary_values(changes: list) -> None:
    d = copy.deepcopy(BASE)
    for section, i, value, delete in changes:
        if section in SECTIONS:
            key = SECTIONS[section][i % len(SECTIONS[section])]
            table = d.setdefault(section, {})
            if not isinstance(table, dict):
                continue
            if delete:
                table.pop(key, None)
            else:
                table[key] = value
        elif delete:
            d.pop(section, None)
        else:
            d[section] = value
    event(_outcome(lambda: _plan_and_count(parse_plan(d))))


def test_the_base_plan_plans() -> None:
    """The fuzz must not pass by refusing everything: the unedited plan plans its 6 runs."""
    assert _outcome(lambda: _plan_and_count(parse_plan(copy.deepcopy(BASE)))) == "planned"
    assert len(make_runs(parse_plan(copy.deepcopy(BASE)), 256)) == 6


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    from scalinglab.cli._app import main

    p = tmp_path / "study.toml"
    p.write_bytes(b"\xff\xfe[model]\nshapes = 3\n")
    err = io.StringIO()
    old = sys.argv
    sys.argv = ["scalinglab", "study", "run", str(p), "--out", str(tmp_path / "s")]
    try:
        with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
            main()
    finally:
        sys.argv = old
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "study.toml" in lines[0], lines
