"""Presets against the numbers the papers state; allocation closed form vs numerical; Approaches 1 and 2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.laws import allocate as al
from scalinglab.laws import presets as P


def test_required_presets_exist_and_list():
    names = {r["name"] for r in P.list_presets()}
    for n in (
        "kaplan2020-N",
        "kaplan2020-D",
        "kaplan2020-Cmin",
        "kaplan2020-ND",
        "kaplan2020-NS",
        "hoffmann2022",
        "besiroglu2024",
        "kaplan2020-C",
        "kaplan2020-Bcrit",
        "kaplan2020-frontier",
        "henighan2020-language-N",
        "henighan2020-image-8x8-C",
    ):
        assert n in names
    with pytest.raises(InputError, match="unknown preset"):
        P.get_preset("kaplan2021")


def test_kaplan_numbers_from_the_paper():
    assert P.get_preset("kaplan2020-N").predict(N=1.5e9) == pytest.approx(2.30, abs=0.005)  # SPEC a.5
    assert 2 ** -P.get_preset("kaplan2020-N").params["alpha"] == pytest.approx(
        0.95, abs=0.002
    )  # per doubling
    bc = P.get_preset("kaplan2020-Bcrit")
    # B_crit doubles for every ~13% decrease in loss (Kaplan sec. 5.1)
    assert bc.predict(L=0.87 * 3.0) / bc.predict(L=3.0) == pytest.approx(2.0, rel=0.05)
    # Table 6 at C_min = 1 PF-day, and the exponents: D = B S up to the constants
    f = P.KAPLAN_FRONTIER
    assert f.at(1.0) == {"N_opt": 1.3e9, "B": 2.0e6, "S": 5.4e3, "D_opt": 2e10}
    a = al.allocate(1e4 * P.PF_DAY, "kaplan2020-frontier")
    assert a.N_opt == pytest.approx(1.3e9 * 1e4**0.73) and a.B == pytest.approx(2.0e6 * 1e4**0.24)
    assert a.S == pytest.approx(5.4e3 * 1e4**0.03) and a.D_opt == pytest.approx(2e10 * 1e4**0.27)
    assert a.loss == pytest.approx((3.1e8 / 1e4) ** 0.05)


def test_henighan_language_nopt_is_kaplans():
    for c in (1e-3, 1.0, 1e4):  # PF-days
        assert P.henighan_n_opt("language", c) == pytest.approx(1.3e9 * c**0.73, rel=0.01)
    a = al.allocate(10 * P.PF_DAY, "henighan2020-language-Nopt")
    assert a.N_opt == pytest.approx(1.3e9 * 10**0.73, rel=0.01) and a.loss == pytest.approx(
        (10 / 3.47e8) ** -0.048
    )
    img = P.get_preset("henighan2020-image-8x8-N")
    assert img.predict(N=8.0e1) == pytest.approx(3.12 + 1.0)  # L_inf + (N/N_0)^-alpha at N = N_0
    with pytest.raises(InputError):
        P.henighan_n_opt("text-to-image-text", 1.0)


def test_chinchilla_allocation_closed_form_agrees_with_numerical_minimum():
    for name in ("hoffmann2022", "besiroglu2024", "hoffmann2022-unrounded"):
        pr = P.get_preset(name)
        for c in (1e18, 5.76e23, 1e28):
            n1, d1 = al.chinchilla_optimal(c, pr.params)
            n2, d2 = al.numeric_optimal(c, pr.form, pr.params)
            assert n1 == pytest.approx(n2, rel=1e-6) and d1 == pytest.approx(d2, rel=1e-6)
            assert 6 * n1 * d1 == pytest.approx(c)


def test_published_tokens_per_parameter():
    # fitting notes: D/N at C = 5.88e23 is 17.9 at Epoch's estimate and 59.0 with Hoffmann's unrounded fit
    a = al.allocate(5.88e23, "besiroglu2024")
    assert a.D_opt / a.N_opt == pytest.approx(17.9, rel=0.02)
    h = al.allocate(5.88e23, "hoffmann2022-unrounded")
    assert h.D_opt / h.N_opt == pytest.approx(59.0, rel=0.02)


def test_kaplan_nd_allocation_is_an_interior_minimum():
    pr = P.get_preset("kaplan2020-ND")
    a = al.allocate(1e22, pr)
    for f in (0.8, 1.25):
        n = a.N_opt * f
        assert pr.predict(N=n, D=1e22 / (6 * n)) > a.loss
    with pytest.raises(InputError, match="closed form"):
        al.allocate(1e22, pr, method="closed")


def test_kaplan_figure15_contradiction_point():
    c = al.kaplan_contradiction()
    # paper: C* ~ 1e4 PF-days, N* ~ 1e12, D* ~ 1e12, L* ~ 1.7, "uncertain by an order of magnitude"
    assert 1e3 < c["C_pfdays"] < 1e6
    assert 1e11 < c["N"] < 1e13 and 1e11 < c["D"] < 1e13
    assert 1.3 < c["L"] < 2.0
    # at C*, the two laws agree
    d = P.get_preset("kaplan2020-D").predict(D=c["D"])
    assert d == pytest.approx(c["L"], rel=1e-9)


def test_gpt_infinity():
    g = al.gpt_infinity(1e36)
    assert 6 * g["N_opt"] * g["D_opt"] == pytest.approx(1e36)
    assert g["loss"] > g["loss_bound_E"] and g["reducible"] < 0.01  # almost at the irreducible loss
    assert g["kaplan_loss"] < g["loss_bound_E"]  # Kaplan's pure power law has no floor: past C* it is wrong


def test_gpt3_table_flags_the_two_inconsistent_cells():
    rows = {r["name"]: r for r in P.GPT3_MODELS}
    assert len(rows) == 8
    assert rows["gpt3-xl"]["n_head"] * rows["gpt3-xl"]["d_head"] != rows["gpt3-xl"]["d_model"]
    assert "flags" in rows["gpt3-xl"] and "flags" in rows["gpt3-13b"]
    assert rows["gpt3-13b"]["d_model"] == 5140 and rows["gpt3-13b"]["d_model_likely"] == 5120
    for r in rows.values():
        d = r.get("d_model_likely", r["d_model"])
        n = 12 * r["n_layer"] * d**2 + (50257 + 2048) * d
        assert n == pytest.approx(r["n_params"], rel=0.05)  # SPEC (d): Table D.1 counts
        assert ("flags" in r) == (r["n_head"] * r["d_head"] != r["d_model"])


def _chinchilla_runs(budgets, p, sizes_per_budget=9, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n0, _ = al.chinchilla_optimal(c, p)
        for n in n0 * np.logspace(-0.6, 0.6, sizes_per_budget):
            d = c / (6 * n)
            loss = P.get_preset("besiroglu2024").form.predict(p, N=n, D=d) * np.exp(noise * rng.normal())
            rows.append({"C": c, "N": n, "D": d, "loss": loss})
    return pd.DataFrame(rows)


def test_isoflop_recovers_the_allocation_exponent():
    p = P.get_preset("besiroglu2024").params
    a_true = p["beta"] / (p["alpha"] + p["beta"])
    res = al.isoflop(_chinchilla_runs(np.logspace(18, 22, 9), p, noise=0.002))
    assert res.a == pytest.approx(a_true, abs=0.02)
    assert res.a_ci95[0] < a_true < res.a_ci95[1]
    m = res.minima
    assert len(m) == 9 and all(r["N_lo"] < r["N_opt"] < r["N_hi"] for r in m)
    # two budgets: no exponent (it needs 3), but the report still gets each budget's minimum
    runs = _chinchilla_runs(np.logspace(18, 22, 9), p, noise=0.002)
    two = runs[runs["C"].isin(sorted(runs["C"].unique())[:2])]
    with pytest.raises(FitError, match="need 3 or more budgets"):
        al.isoflop(two)
    res2 = al.isoflop(two, min_budgets=1)
    assert res2.fit is None and np.isnan(res2.a) and len(res2.minima) == 2
    assert [r["N_opt"] for r in res2.minima] == pytest.approx([r["N_opt"] for r in m[:2]])


def test_frontier_and_approach1():
    p = P.get_preset("besiroglu2024").params
    form = P.get_preset("besiroglu2024").form
    rows = []
    for i, n in enumerate(np.logspace(7, 10, 13)):
        d = np.logspace(8, 12.5, 60)
        for di in d:
            rows.append(
                {"run_id": f"r{i}", "N": n, "C": 6 * n * di, "loss": float(form.predict(p, N=n, D=di))}
            )
    curves = pd.DataFrame(rows)
    env = al.frontier(curves, bins_per_decade=4)
    assert list(env.columns) == ["C", "loss", "N", "run"] and np.all(np.diff(env["loss"]) < 0)
    pf = al.approach1(curves[(curves.C > 1e17) & (curves.C < 1e21)], bins_per_decade=4)
    a_true = p["beta"] / (p["alpha"] + p["beta"])
    assert pf.a == pytest.approx(a_true, abs=0.08)  # envelope over 13 discrete sizes: coarse
    with pytest.raises(InputError, match="missing column"):
        al.frontier(curves.drop(columns=["loss"]))


def test_allocation_refuses_a_law_without_a_tradeoff_and_carries_fit_caveats():
    params = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.0, "beta": 0.37}
    fit_json = {"law": "chinchilla", "params": params, "converged": True}
    with pytest.raises(InputError, match="alpha = 0"):
        al.allocate(1e24, fit_json)
    fit_json["params"]["alpha"] = 0.34
    fit_json.update(converged=False, warnings=["parameter E is at its lower bound"])
    a = al.allocate(1e24, fit_json)
    assert a.notes[0].startswith("CAUTION: the fit") and "E is at its lower bound" in a.notes[1]
    assert not any("CAUTION" in n for n in al.allocate(1e24, "hoffmann2022").notes)
