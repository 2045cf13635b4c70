"""Plans for Kaplan's architecture experiments: the shape design, two model families, extra eval sets."""

from __future__ import annotations

import math

import pytest

from scalinglab.errors import ConfigError
from scalinglab.study.plan import make_runs, parse_plan
from scalinglab.study.runner import counts_for

BASE = {"data": {"n_ctx": 32}, "lr": {"rule": "kaplan"}}


def _n(cfg: dict) -> int:
    return counts_for(cfg, 256)["params"]["kaplan"]


def test_shape_design_holds_n_and_d_and_sweeps_the_shape():
    plan = parse_plan({**BASE, "design": "shape", "model": {"n_params": [5e4, 2e5]},
                       "shape": {"tokens": 1e5, "ff_ratios": [1, 4, 16], "head_dims": [8, 16, 32]}})
    runs = make_runs(plan, 256)
    assert {r.config["tokens"] for r in runs} == {100_000}
    for target in (5e4, 2e5):
        tag = f"@{target:.3g}"
        aspect = [r.config for r in runs if "shape:aspect" + tag in r.roles]
        ratios = sorted(c["d_model"] / c["n_layer"] for c in aspect)
        assert len(aspect) >= 5 and math.log10(ratios[-1] / ratios[0]) >= 1.5  # Kaplan: >= 1.5 decades
        assert len({c["n_layer"] for c in aspect}) == len(aspect)  # one shape per depth
        for c in aspect:
            assert abs(math.log(_n(c) / target)) < 0.1, c  # N held within 10 % (d_model a multiple of 4)
            assert c["d_model"] % 4 == 0 and c["d_model"] % c["n_head"] == 0
        ff = [r.config for r in runs if "shape:ff" + tag in r.roles]
        ff_ratio = sorted((c.get("d_ff") or 4 * c["d_model"]) / c["d_model"] for c in ff)
        assert ff_ratio == pytest.approx([1, 4, 16], rel=0.05) and len({c["n_layer"] for c in ff}) == 1
        assert all(abs(math.log(_n(c) / target)) < 0.1 for c in ff)
        heads = [r.config for r in runs if "shape:head" + tag in r.roles]
        assert len({(c["n_layer"], c["d_model"]) for c in heads}) == 1 and len(heads) == 3
    # the default-ratio runs are one run shared by the three sweeps
    shared = [r for r in runs if len([x for x in r.roles if x.endswith("@5e+04")]) == 3]
    assert len(shared) == 1 and "d_ff" not in shared[0].config
    by_depth = parse_plan({**BASE, "design": "shape", "model": {"n_params": [1e5]},
                           "shape": {"tokens": 1e5, "n_layers": [1, 2, 4, 10]}})
    assert sorted(r.config["n_layer"] for r in make_runs(by_depth, 256)) == [1, 2, 4, 10]


@pytest.mark.parametrize("bad,msg", [
    ({"model": {"n_params": [1e5]}}, "needs \\[shape\\] tokens"),
    ({"model": {"shapes": [{"n_layer": 1, "d_model": 32}]}, "shape": {"tokens": 1e5}}, "n_params"),
    ({"model": {"n_params": [1e5], "arch": "lstm"}, "shape": {"tokens": 1e5}}, "must be \"gpt\""),
    ({"model": {"n_params": [1e5]}, "shape": {"tokens": 1e5, "aspect_ratio": [2]}}, "unknown key"),
])
def test_shape_design_refuses_what_it_cannot_do(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_plan({**BASE, "design": "shape", **bad})


def test_two_families_and_eval_sets_leave_transformer_ids_alone():
    one = parse_plan({**BASE, "model": {"n_params": [2e4, 1e5]}, "tokens": {"absolute": [5e4]}})
    both = parse_plan({**BASE, "model": {"n_params": [2e4, 1e5], "arch": ["gpt", "lstm"]},
                       "tokens": {"absolute": [5e4]}, "eval": {"sets": ["text:xz-docs"]}})
    gpt_ids = {r.run_id for r in make_runs(one, 256)}
    runs = make_runs(both, 256)
    assert {r.run_id for r in runs if "arch" not in r.config} == gpt_ids  # eval sets are operational
    lstm = [r.config for r in runs if r.config.get("arch") == "lstm"]
    assert len(lstm) == 2 and all("n_head" not in c for c in lstm)
    for c, target in zip(sorted(lstm, key=_n), (2e4, 1e5), strict=True):
        assert abs(math.log(_n(c) / target)) < 0.15  # each family solves its own shapes for the N
    assert all(r.config["eval_sets"] == ["text:xz-docs"] for r in runs)
    with pytest.raises(ConfigError, match="split=test"):
        parse_plan({**BASE, "model": {"n_params": [1e4]}, "tokens": {"absolute": [5e4]},
                    "eval": {"sets": ["text:default"]}})
    with pytest.raises(ConfigError, match="expected text:SOURCE"):
        parse_plan({**BASE, "model": {"n_params": [1e4]}, "tokens": {"absolute": [5e4]},
                    "eval": {"sets": ["wiki"]}})
