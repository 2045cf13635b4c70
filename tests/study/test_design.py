"""Study designs laid out from a total budget, and the identifiability check that runs before training."""

from __future__ import annotations

import json
import math

import pytest

from scalinglab.errors import ConfigError
from scalinglab.study import design
from scalinglab.study.plan import count_n, make_runs, parse_plan

V = 256


def _flops(plan, runs):
    return sum(6 * count_n(r.config["n_layer"], r.config["d_model"], plan, V, r.config.get("n_head"))
               * r.config["tokens"] for r in runs)


@pytest.mark.parametrize("kind", ["isoflop", "grid", "kaplan", "chinchilla"])
def test_a_budget_alone_gives_a_full_plan_that_identifies_its_laws(kind):
    plan = design.expand(parse_plan({"design": kind, "budget": 3e14}), V)
    runs = make_runs(plan, V)
    assert plan.fit.laws == design.LAWS_OF[kind] and plan.fit.bootstrap == 200
    table = design.check(plan, runs, V)  # raises when a law is not identified
    assert all(c.identified for c in table) and {c.law for c in table} == set(plan.fit.laws)
    # the runs spend the budget (shapes are quantised to head_dim multiples: within a factor 1.5)
    assert 3e14 / 1.5 < _flops(plan, runs) < 3e14 * 1.5
    if kind in ("isoflop", "chinchilla"):
        b = plan.isoflop.budgets
        assert len(b) == 4 and all(math.isclose(b[i + 1] / b[i], 3, rel_tol=0.01) for i in range(3))
        per = {}
        for r in runs:
            for role in r.roles:
                per.setdefault(role, set()).add(r.config["d_model"] * 100 + r.config["n_layer"])
        assert all(len(v) >= 5 for k, v in per.items() if k.startswith("isoflop:"))
    if kind == "chinchilla":  # the grid runs move D at fixed N
        grid = [r for r in runs if "grid" in r.roles]
        by_shape = {}
        for r in grid:
            by_shape.setdefault((r.config["n_layer"], r.config["d_model"]), set()).add(r.config["tokens"])
        assert grid and all(max(v) / min(v) > 10 for v in by_shape.values())


def test_expanding_twice_changes_nothing_and_explicit_tables_win():
    p = parse_plan({"design": "isoflop", "budget": 1e14, "isoflop": {"budgets": [1e11, 1e12, 1e13]}})
    e = design.expand(p, V)
    assert e.isoflop.budgets == [1e11, 1e12, 1e13] and design.expand(e, V) == e
    p = parse_plan({"design": "grid", "budget": 1e14, "fit": {"laws": ["L(N,D)"], "bootstrap": 50}})
    e = design.expand(p, V)
    assert e.fit.laws == ["L(N,D)"] and e.fit.bootstrap == 50


def test_two_isoflop_budgets_are_refused_before_training_with_what_to_add():
    """Found on a real corpus: a 2-budget isoFLOP plan passed validation, trained 7 minutes, then failed."""
    plan = parse_plan({"isoflop": {"budgets": [1e12, 1e13]}, "fit": {"laws": ["isoflop", "L(N,D)"]}})
    with pytest.raises(ConfigError) as e:
        design.check(plan, make_runs(plan, V), V)
    msg = str(e.value)
    assert "isoflop: Approach 2 needs >= 3 isoFLOP budgets" in msg and "add isoflop.budgets" in msg


def test_a_law_whose_variable_spans_too_little_names_the_fix():
    plan = parse_plan({
        "model": {"shapes": [{"n_layer": 1, "d_model": d} for d in (16, 32, 48, 64)]},
        "tokens": {"absolute": [1e5, 2e5]},
        "fit": {"laws": ["L(N,D)"]},
    })
    fix = r"L\(N,D\) needs D over >= 1 decade, got 0.30: add budgets or a grid"
    with pytest.raises(ConfigError, match=fix):
        design.check(plan, make_runs(plan, V), V)
    warned = []
    plan.fit.check = "warn"
    table = design.check(plan, make_runs(plan, V), V, warned.append)
    assert not table[0].identified and warned and warned[0].startswith("warning: the plan cannot identify")


def test_design_needs_a_budget_and_a_budget_needs_a_design():
    with pytest.raises(ConfigError, match="needs a total compute `budget`"):
        parse_plan({"design": "grid"})
    with pytest.raises(ConfigError, match="budget applies to a design"):
        parse_plan({"budget": 1e14, "tokens": {"absolute": [1e4]}, "model": {"n_params": [1e4]}})
    with pytest.raises(ConfigError, match="design = 'nope'|design"):
        parse_plan({"design": "nope", "budget": 1e14})


def test_study_plan_command_trains_nothing_and_prints_the_table(tmp_path, capsys, monkeypatch):
    import sys

    from scalinglab.cli._app import main

    toml = tmp_path / "s.toml"
    toml.write_text('name = "p"\ndesign = "chinchilla"\nbudget = 1e12\n[data]\nn_ctx = 32\n')

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["scalinglab", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr()

    code, out = run("study", "plan", toml, "--json")
    assert code == 0, out.err
    d = json.loads(out.out)
    assert d["identified"] and d["design"] == "chinchilla" and len(d["runs"]) >= 20
    assert d["est_wall_s"] > 0 and d["step_model"]["flops_per_s"] > 0
    assert sum(r["flops"] for r in d["runs"]) == pytest.approx(d["total_flops"])
    assert {c["law"] for c in d["identifiability"]} == {"isoflop", "L(C_min)", "L(N,D)"}
    assert not (tmp_path / "runs").exists() and not (tmp_path / "p").exists()  # nothing trained or created
    bad = tmp_path / "bad.toml"
    bad.write_text('[isoflop]\nbudgets = [1e11, 1e12]\n[fit]\nlaws = ["isoflop"]\n[data]\nn_ctx = 32\n')
    code, out = run("study", "plan", bad, "--no-calibrate")
    assert code == 2 and "NO: Approach 2 needs >= 3" in out.out
    assert out.err.startswith("error: the plan cannot")
