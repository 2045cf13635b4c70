"""The plan schema and the planner: clear errors, idempotent ids, grids, isoFLOP sets, Kaplan's L(N)/L(D)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scalinglab.errors import ConfigError
from scalinglab.model.config import GPTConfig
from scalinglab.model.counting import count_params
from scalinglab.study.plan import batch_from_noise, load_plan, make_runs, parse_plan, pilot_runs, run_id

HERE = Path(__file__).parent
REPO = HERE.parents[1]
V = 256  # byte-level vocabulary


def _plan(**kw):
    base = {
        "model": {"shapes": [{"n_layer": 1, "d_model": 16}, {"n_layer": 2, "d_model": 32}]},
        "tokens": {"absolute": [1e4]},
    }
    base.update(kw)
    return parse_plan(base)


def test_errors_name_the_key_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError) as e:
        parse_plan(
            {
                "model": {"shapes": [{"n_layer": 0, "d_model": 16}]},
                "tokens": {"absolute": [1e4]},
                "lr": {"rule": "cosmic"},
                "executor": {"kind": "k8s"},
                "typo": 1,
            }
        )
    msg = str(e.value)
    assert "model.shapes.0.n_layer = 0" in msg and "greater than or equal to 1" in msg
    assert "lr.rule = 'cosmic'" in msg and "'fixed', 'kaplan' or 'width'" in msg
    assert "executor.kind = 'k8s'" in msg and "typo = 1: unknown key" in msg
    with pytest.raises(ConfigError, match="unknown laws"):
        _plan(fit={"laws": ["L(X)"]})
    with pytest.raises(ConfigError, match="trains nothing"):
        parse_plan({"model": {"shapes": [{"n_layer": 1, "d_model": 16}]}})
    with pytest.raises(ConfigError, match="attention"):
        _plan(model={"shapes": [{"n_layer": 1, "d_model": 16}], "attention": "banded"})
    with pytest.raises(ConfigError, match="weight_decay"):  # trainer fields are checked by TrainConfig
        make_runs(_plan(train={"weight_decay": -1}), V)


@pytest.mark.parametrize(
    "edit, expect",
    [
        ({"tokens": {"absolute": [float("nan")]}}, "tokens.absolute.0 = nan"),
        ({"tokens": {"absolute": [float("inf")]}}, "tokens.absolute.0 = inf"),
        ({"model": {"n_params": [float("nan")]}}, "model.n_params.0 = nan"),
        ({"isoflop": {"budgets": [-1e12]}}, "isoflop.budgets.0 = -1000000000000.0"),
        ({"isoflop": {"budgets": [1e15], "span": float("inf")}}, "isoflop.span = inf"),
        ({"seeds": {"seeds": []}}, "seeds.seeds = []"),
        ({"batch": {"min_size": 64, "max_size": 4}}, "min_size 64 > batch.max_size 4"),
        ({"train": {"batch_size": 4, "lr": 0.1}}, "[train] batch_size is set by the plan: use [batch] size"),
        ({"train": {"seed": 7}}, "use [seeds] seeds"),
    ],
)
def test_values_the_plan_cannot_use_are_refused(edit, expect):
    """Non-finite or non-positive sizes, an empty seed list, an inverted batch range, and trainer fields the
    plan sets itself (which [train] would silently lose) are one clear error, not a traceback or a
    silently different study."""
    with pytest.raises(ConfigError) as e:
        _plan(**edit)
    assert expect in str(e.value), str(e.value)


def test_grid_ids_are_stable_and_shared_runs_are_trained_once():
    plan = _plan(
        tokens={"absolute": [1e4, 2e4], "per_param": [10]},
        kaplan={"long_tokens": 2e4},
        seeds={"seeds": [0, 1]},
    )
    runs = make_runs(plan, V)
    assert [r.run_id for r in runs] == [r.run_id for r in make_runs(plan, V)]
    assert len({r.run_id for r in runs}) == len(runs) == 2 * 2 * 3  # sizes x seeds x (1e4, 2e4, 10 N)
    shared = [r for r in runs if r.config["tokens"] == 20000]
    assert all(r.roles == {"grid", "L(N)"} for r in shared)
    small = [r for r in runs if r.config["d_model"] == 16 and r.config["seed"] == 0]
    assert {r.config["tokens"] for r in small} == {10000, 20000, 12 * 16 * 16 * 10}
    # operational fields do not change a run's id; anything that changes the trajectory does
    cfg = dict(runs[0].config)
    assert run_id({**cfg, "eval_every": 7, "log_every": 3}) == run_id(cfg)
    assert run_id({**cfg, "lr": 1.0}) != run_id(cfg)


def test_isoflop_sets_spend_the_budget_around_the_expected_optimum():
    c = 3e11
    plan = parse_plan(
        {
            "model": {"n_params": [1e4], "aspect_ratio": 16},
            "isoflop": {"budgets": [c], "n_sizes": 5, "span": 4},
        }
    )
    iso = [r for r in make_runs(plan, V) if "isoflop:3e+11" in r.roles]
    assert len(iso) == 5
    ns = []
    for r in iso:
        cfg = r.config
        n = count_params(
            GPTConfig(
                n_layer=cfg["n_layer"],
                d_model=cfg["d_model"],
                n_head=cfg["n_head"],
                vocab_size=V,
                n_ctx=cfg["n_ctx"],
            )
        )["kaplan"]
        assert 6 * n * cfg["tokens"] == pytest.approx(c, rel=1e-4)  # D = C / (6 N)
        ns.append(n)
    n_opt = math.sqrt(c / (6 * 20))
    assert min(ns) < n_opt < max(ns) and max(ns) / min(ns) > 4


def test_sizes_by_n_solve_shapes_and_kaplan_design():
    plan = parse_plan(
        {
            "model": {"n_params": [3e3, 3e4, 3e5], "aspect_ratio": 32, "head_dim": 8},
            "kaplan": {"long_tokens": 5e4, "data_subsets": [1e4, 2e4, 4e4]},
        }
    )
    runs = make_runs(plan, V)
    ln = sorted(
        (r for r in runs if "L(N)" in r.roles), key=lambda r: r.config["d_model"] * r.config["n_layer"]
    )
    for r, target in zip(ln, [3e3, 3e4, 3e5], strict=True):
        n = 12 * r.config["n_layer"] * r.config["d_model"] ** 2
        assert abs(math.log(n / target)) < math.log(1.6)
    ld = [r for r in runs if "L(D)" in r.roles]
    assert sorted(r.config["tokens"] for r in ld) == [10000, 20000, 40000]
    assert len({(r.config["n_layer"], r.config["d_model"]) for r in ld}) == 1  # one (the largest) model


def test_seed_repeats_pilots_and_noise_batches():
    plan = _plan(seeds={"seeds": [0], "repeat": 2}, batch={"rule": "noise_scale", "size": 8, "max_size": 64})
    runs = make_runs(plan, V)
    noise = [r for r in runs if "seed-noise" in r.roles]
    assert sorted(r.config["seed"] for r in noise) == [0, 1, 2]
    pilots = pilot_runs(plan, V)
    assert len(pilots) == 2 and all(p.config["batch_size"] == 8 for p in pilots)
    assert batch_from_noise(64 * 64, plan) == 64 and batch_from_noise(10, plan) == 4  # clamped to [4, 64]
    assert batch_from_noise(64 * 20, plan) == 16
    resolved = make_runs(plan, V, {(1, 16): 32, (2, 32): 16})
    assert {(r.config["d_model"], r.config["batch_size"]) for r in resolved} == {(16, 32), (32, 16)}


def test_bundled_plans_validate():
    for path in [REPO / "examples" / "demo.toml", HERE / "tiny.toml"]:
        if path.is_file():
            plan = load_plan(path)
            assert make_runs(plan, V)
    # the demo's ladder: sizes spanning at least 1.5 decades of Kaplan N (issue 6), >= 3 isoFLOP budgets of
    # >= 5 sizes each, and every law it fits identified by its runs (issue 13)
    from scalinglab.study import design

    demo = design.expand(load_plan(REPO / "examples" / "demo.toml"), V)
    runs = make_runs(demo, V)
    n = sorted({12 * r.config["n_layer"] * r.config["d_model"] ** 2 for r in runs})
    assert len(n) >= 5 and math.log10(n[-1] / n[0]) >= 1.5
    budgets = {role for r in runs for role in r.roles if role.startswith("isoflop:")}
    assert len(budgets) >= 3 and all(sum(b in r.roles for r in runs) >= 5 for b in budgets)
    assert all(c.identified for c in design.check(demo, runs, V))
    with pytest.raises(ConfigError, match="not found"):
        load_plan(HERE / "nope.toml")


def test_lr_rules_fixed_kaplan_and_width():
    """fixed: one LR; kaplan: the trainer's LR(N) (None); width: value * min(1, base_width / d_model)."""
    lrs = {
        rule: {r.config["d_model"]: r.config["lr"] for r in make_runs(_plan(lr=lr), V)}
        for rule, lr in {
            "fixed": {"rule": "fixed", "value": 2e-3},
            "kaplan": {"rule": "kaplan"},
            "width": {"rule": "width", "value": 3e-3, "base_width": 16},
        }.items()
    }
    assert lrs["fixed"] == {16: 2e-3, 32: 2e-3}
    assert lrs["kaplan"] == {16: None, 32: None}
    assert lrs["width"][16] == pytest.approx(3e-3) and lrs["width"][32] == pytest.approx(1.5e-3)
