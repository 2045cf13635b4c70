"""Allocation beyond the compute-optimal point: inference-aware over-training (Sardana et al. 2024), tokens to
reach a loss, the data-constrained law (Muennighoff et al. 2023) and its fit, against published numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import InputError
from scalinglab.laws.allocate import allocate
from scalinglab.laws.overtrain import inference_optimal, tokens_for_loss
from scalinglab.laws.repeat import (
    MUENNIGHOFF2023,
    effective_data,
    epochs_at_value,
    fit_repeat,
    repeat_allocate,
    repeat_loss,
)

# Sardana et al. quote Chinchilla's fit with these exponents; their Figure 1 is reproduced with them below.
SARDANA = {"law": "chinchilla", "params": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.336, "beta": 0.283}}


def _chinchilla_point(p, n):
    """The compute-optimal (N, D) whose N is n, and its loss."""
    a, b = p["alpha"], p["beta"]
    g = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
    d = (n / g) ** (a / b) / g
    return d, p["E"] + p["A"] / n**a + p["B"] / d**b


def test_sardana_figure_1():
    # "An LLM developer seeking to train a 13B model who expects 2 trillion tokens of inference demand ... can
    # reduce their total compute by 1.7e22 FLOPs (17%) by instead training a 7B model on more data."
    p = SARDANA["params"]
    d13, loss13 = _chinchilla_point(p, 13e9)
    r = inference_optimal(loss13, inference_tokens=2e12, law=SARDANA)
    assert r.chinchilla.N == pytest.approx(13e9, rel=1e-5)
    assert r.chinchilla.D == pytest.approx(d13, rel=1e-5)
    assert round(r.N / 1e9) == 7
    assert r.saving == pytest.approx(1.7e22, rel=0.02)
    assert round(100 * r.saving_frac) == 17
    assert r.D > r.chinchilla.D  # smaller and longer trained
    assert tokens_for_loss(r.N, loss13, SARDANA) == pytest.approx(r.D, rel=1e-9)


def test_no_inference_is_the_chinchilla_optimum():
    a = allocate(1e22, "hoffmann2022")
    r = inference_optimal(C=1e22, inference_tokens=0, law="hoffmann2022")
    assert r.loss == pytest.approx(a.loss, rel=1e-12)
    assert r.N == pytest.approx(a.N_opt, rel=1e-5) and r.D == pytest.approx(a.D_opt, rel=1e-5)
    assert r.saving == pytest.approx(0.0, abs=1e-6 * r.chinchilla.total_flops)


def test_optimum_satisfies_the_lagrange_condition_and_moves_with_inference():
    p = SARDANA["params"]
    ns = []
    for d_inf in (1e11, 1e12, 1e13, 1e14):
        r = inference_optimal(C=1e23, inference_tokens=d_inf, law=SARDANA)
        n, d = r.N, r.D
        # grad(6ND + 2N D_inf) parallel to grad L: (6D + 2D_inf)/(alpha A N^-alpha-1) = 6N/(beta B D^-beta-1)
        lhs = (6 * d + 2 * d_inf) / (p["alpha"] * p["A"] * n ** (-p["alpha"] - 1))
        rhs = 6 * n / (p["beta"] * p["B"] * d ** (-p["beta"] - 1))
        assert lhs == pytest.approx(rhs, rel=1e-4)
        # and it is the minimum of a dense scan along the iso-loss curve
        n_min = (p["A"] / (r.loss - p["E"])) ** (1 / p["alpha"])  # below it the loss is out of reach
        grid = np.geomspace(max(n / 3, n_min * 1.001), n * 3, 2001)
        cost = [6 * x * tokens_for_loss(x, r.loss, SARDANA) + 2 * x * d_inf for x in grid]
        assert r.optimal.total_flops <= min(cost) * (1 + 1e-9)
        ns.append(n)
    assert ns == sorted(ns, reverse=True)  # more inference: a smaller model


def test_general_law_and_errors():
    r = inference_optimal(C=1e22, inference_tokens=1e12, law="kaplan2020-ND")
    assert r.N < r.chinchilla.N and r.saving > 0
    with pytest.raises(InputError, match="cannot reach loss"):
        tokens_for_loss(1e6, 1.8, "hoffmann2022")
    with pytest.raises(InputError, match="irreducible"):
        inference_optimal(1.5, inference_tokens=1e12)
    with pytest.raises(InputError, match="not an L\\(N, D\\) law"):
        inference_optimal(C=1e22, inference_tokens=1e12, law="kaplan2020-frontier")
    with pytest.raises(InputError, match="either"):
        inference_optimal(2.0, C=1e22, inference_tokens=1)


# ---------------------------------------------------------------------------------------------- repeat


def test_muennighoff_published_losses():
    # huggingface/datablations README, "Models in Figure 1 (right)", printed to 16 digits
    assert float(repeat_loss(6.34e9, 242e9, 25e9)) == pytest.approx(2.2256440889984477, rel=1e-13)
    assert float(repeat_loss(8.67e9, 178e9, 25e9)) == pytest.approx(2.2269634075087867, rel=1e-13)


def test_muennighoff_optimal_allocation():
    # their grid search from (8.67e9, 178e9, 25e9) at fixed C: "227B tokens, 9.1 epochs, 6.8B parameters"
    a = repeat_allocate(6 * 8.67e9 * 178e9, 25e9)
    assert a.D / 1e9 == pytest.approx(227, abs=0.5)
    assert round(a.epochs, 1) == 9.1
    assert round(a.N / 1e9, 1) == 6.8
    assert a.loss <= float(repeat_loss(6.34e9, 242e9, 25e9))
    assert a.unlimited_D > 25e9 and a.unlimited_loss < a.loss  # unlimited data would do better


def test_effective_data_shape():
    rd = MUENNIGHOFF2023["rd_star"]
    assert float(effective_data(1e9, 1e9)) == 1e9  # one epoch: all unique
    assert float(effective_data(5e8, 1e9)) == 5e8  # fewer tokens than the subset: nothing repeated
    four = float(effective_data(4e9, 1e9)) / 4e9
    assert 0.9 < four < 0.95  # "up to 4 epochs ... negligible changes": 93 % of fresh data
    assert float(effective_data(1e15, 1e9)) == pytest.approx(1e9 * (1 + rd), rel=1e-6)  # saturates
    assert epochs_at_value(0.5, rd) == pytest.approx(1 + rd * math.log(2))


def test_fit_recovers_the_decay_constant():
    base = {k: MUENNIGHOFF2023[k] for k in ("E", "A", "B", "alpha", "beta")}
    rng = np.random.default_rng(3)
    rows = []
    for n in (1e8, 3e8, 1e9):
        for u in (2e9, 5e9):
            for e in (1, 2, 4, 8, 16, 40):
                rows.append({"N": n, "D": e * u, "U": u})
    df = pd.DataFrame(rows)
    truth = 6.0
    df["loss"] = repeat_loss(df["N"], df["D"], df["U"], base, rd_star=truth, rn_star=None)
    df["loss"] *= np.exp(rng.normal(0, 0.002, len(df)))
    res = fit_repeat(df, base, bootstrap=40, seed=1)
    assert res.converged and not res.warnings
    assert res.params["rd_star"] == pytest.approx(truth, rel=0.08)
    lo, hi = res.ci95["rd_star"]
    assert lo < truth < hi
    d = res.to_dict()
    assert d["law"] == "repeat" and d["params"]["rd_star"] == res.params["rd_star"]
    json.dumps(d)


def test_fit_needs_repeats():
    from scalinglab.errors import FitError

    base = {k: MUENNIGHOFF2023[k] for k in ("E", "A", "B", "alpha", "beta")}
    df = pd.DataFrame({"N": [1e8, 2e8, 3e8], "D": [1e9] * 3, "U": [1e9] * 3, "loss": [3.0, 2.9, 2.8]})
    with pytest.raises(FitError, match="no run repeats"):
        fit_repeat(df, base)


# ---------------------------------------------------------------------------------------------- CLI


def test_allocate_cli_extras(cli):
    code, out, err = cli(
        "allocate",
        "1e22",
        "--inference-tokens",
        "1e13",
        "--unique-tokens",
        "1e11",
        "--shape",
        "gpt",
        "--json",
    )
    assert code == 0, err
    d = json.loads(out)
    ref = inference_optimal(C=1e22, inference_tokens=1e13)
    assert d["inference"]["optimal"]["N"] == pytest.approx(ref.N, rel=1e-9)
    assert d["repeat"]["N"] == pytest.approx(repeat_allocate(1e22, 1e11, "hoffmann2022").N, rel=1e-9)
    s = d["shape"]
    assert s["n_params"] == s["counts"]["total"] and abs(s["rel_error"]) < 0.05
    assert d["N_opt"] == pytest.approx(allocate(1e22).N_opt)  # allocate's own keys are unchanged
    code, out, err = cli("allocate", "1e22", "--inference-tokens", "1e13")
    assert code == 0 and "inference-optimal" in out and "saving" in out
    code, out, err = cli("allocate", "1e22", "--rd-star", "5")
    assert code == 2 and "--rd-star needs --unique-tokens" in err


def test_tokens_needed_cli(cli):
    code, out, err = cli("tokens-needed", "--n", "7e9", "--loss", "2.0", "--json")
    assert code == 0, err
    assert json.loads(out)["D"] == pytest.approx(tokens_for_loss(7e9, 2.0), rel=1e-12)
    code, out, err = cli("tokens-needed", "--n", "1e6", "--loss", "1.8")
    assert code == 2 and "cannot reach loss" in err


def test_fit_recovers_both_constants():
    base = {k: MUENNIGHOFF2023[k] for k in ("E", "A", "B", "alpha", "beta")}
    rows = [
        {"N": n, "D": e * u, "U": u}
        for n in (1e8, 1e9, 1e10)
        for u in (1e8, 2e9)
        for e in (1, 2, 4, 8, 16, 40)
    ]
    df = pd.DataFrame(rows)
    df["loss"] = repeat_loss(df["N"], df["D"], df["U"], base, rd_star=10.0, rn_star=3.0)
    df["loss"] *= np.exp(np.random.default_rng(0).normal(0, 0.002, len(df)))
    res = fit_repeat(df, base, fit_rn=True)
    assert res.converged, res.message
    assert res.params["rd_star"] == pytest.approx(10.0, rel=0.1)
    assert res.params["rn_star"] == pytest.approx(3.0, rel=0.1)
