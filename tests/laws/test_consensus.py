"""The compute-optimal answer on ladders drawn from a known law: intervals that hold the truth, agreement
and disagreement of the three approaches, back-tests that hold out a whole budget, refusal with reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.laws import synthetic as S
from scalinglab.laws.allocate import allocate
from scalinglab.laws.consensus import Floor, consensus
from scalinglab.laws.fit import FitResult, backtest, fit

T = S.BESIROGLU
A_TRUE = T["beta"] / (T["alpha"] + T["beta"])
BUDGETS = (1e18, 1e19, 1e20, 1e21)


def _ladder(seed: int = 0, sd: float = S.EPOCH_NOISE_SD):
    """Runs (run, N, D, C, loss, budget) and their learning curves: each run's curve is the law along its
    tokens (the envelope is then the law's compute frontier), its end the measured final loss."""
    rng = np.random.default_rng(seed)
    N, D, C = S.isoflop_design(T, BUDGETS, 5, 4.0)
    y = S.observe(T, N, D, rng, sd)
    runs = pd.DataFrame({"run": [f"r{i}" for i in range(N.size)], "N": N, "D": D, "C": 6 * N * D, "loss": y,
                         "budget": C})
    rows = []
    for r in runs.itertuples():
        for f in np.geomspace(0.1, 1.0, 12):
            rows.append({"run": r.run, "N": r.N, "C": 6 * r.N * r.D * f,
                         "loss": float(S.law(T, r.N, r.D * f)) * (r.loss / float(S.law(T, r.N, r.D)))})
    return runs, pd.DataFrame(rows)


def _refit(df):
    return fit("chinchilla", df[["N", "D", "loss"]], bootstrap=100, seed=0, starts=300)


@pytest.fixture(scope="module")
def answer():
    runs, curves = _ladder()
    lnd = _refit(runs)
    target = 1e22
    return consensus(runs, curves, target_C=target, lnd=lnd, fit_lnd=_refit, bootstrap=100), runs, target


def test_the_three_approaches_agree_and_the_allocation_holds_the_truth(answer):
    c, runs, target = answer
    assert set(c.approaches) == {"1", "2", "3"} and c.comparable
    for ap in c.approaches.values():
        assert ap.a_ci[0] < A_TRUE < ap.a_ci[1], (ap.key, ap.a_ci)
    assert c.overlap is not None and c.overlap[0] <= A_TRUE <= c.overlap[1]
    assert c.chosen == "3" and c.refused is None
    a = c.allocation
    n_true, d_true = (float(v) for v in S.optimum(T, target))
    assert a["N_opt_ci"][0] < n_true < a["N_opt_ci"][1] and a["D_opt_ci"][0] < d_true < a["D_opt_ci"][1]
    assert a["loss_ci"][0] < float(S.law(T, n_true, d_true)) < a["loss_ci"][1]
    assert a["tokens_per_param_ci"][0] < d_true / n_true < a["tokens_per_param_ci"][1]
    text = "\n".join(c.lines())
    assert "the 3 intervals overlap" in text and "allocation at C = 1e+22" in text


def test_backtests_hold_out_every_run_of_the_largest_budget(answer):
    c, runs, _ = answer
    for k, ap in c.approaches.items():
        bt = ap.backtest
        assert bt is not None and bt.C == pytest.approx(1e21) and bt.n_runs == 5, k
    bt3 = c.approaches["3"].backtest
    assert abs(bt3.loss_rel_error) < 0.02 and bt3.loss_covered  # the held-out budget's best run
    assert abs(bt3.log_N_error) < np.log(1.5)


def _skewed(res: FitResult, factor: float = 2.0) -> FitResult:
    """The fit with alpha (and every bootstrap alpha) multiplied: a law whose N_opt exponent is wrong."""
    import dataclasses

    i = list(res.form.param_names).index("alpha")
    s = res.samples.copy()
    s[:, i] *= factor
    p = {**res.params, "alpha": res.params["alpha"] * factor}
    return dataclasses.replace(res, params=p, theta=res.form.to_theta(p), samples=s)


def test_disagreeing_approaches_are_said_and_the_best_backtest_answers():
    runs, curves = _ladder(seed=1)
    c = consensus(runs, curves, target_C=1e22, lnd=_skewed(_refit(runs)),
                  fit_lnd=lambda df: _skewed(_refit(df)), bootstrap=100)
    a3 = c.approaches["3"].a_ci
    assert a3[1] < A_TRUE and a3[1] < c.approaches["2"].a_ci[0]  # Approach 3 now disagrees
    assert c.overlap is None and c.best in ("1", "2") and c.chosen == c.best
    bt = {k: abs(ap.backtest.log_N_error) for k, ap in c.approaches.items()}
    assert bt[c.best] == min(bt.values()) and bt["3"] > bt[c.best]
    text = "\n".join(c.lines())
    assert "do NOT overlap" in text and "best back-test" in text and "from Approach" in text
    assert c.allocation["N_opt_ci"] is not None and c.refused is None
    n_true = float(S.optimum(T, 1e22)[0])
    assert c.allocation["N_opt_ci"][0] < n_true < c.allocation["N_opt_ci"][1]


def test_a_non_identified_fit_does_not_feed_the_allocation_and_says_what_would_fix_it():
    runs, curves = _ladder(seed=2)
    small = runs[runs["budget"] <= 1e19]  # two small budgets: the loss never flattens, E is not pinned
    lnd = fit("chinchilla", small[["N", "D", "loss"]].assign(loss=small["loss"] - 1.5), bootstrap=100,
              seed=0, starts=300)
    assert lnd.support_problems()
    c = consensus(small.assign(loss=small["loss"] - 1.5), None, target_C=1e22, lnd=lnd, fit_lnd=_refit)
    assert c.refused and "cannot support it" in c.refused
    assert "to fix: E (the loss floor) needs runs where the loss flattens" in c.refused
    assert any("REFUSED" in x for x in c.lines())


def test_no_loss_is_printed_below_a_fitted_irreducible_loss(answer):
    c, runs, target = answer
    lnd = _refit(runs)
    high = Floor(low=c.allocation["loss"] + 0.05, source="L_inf of L(N)", max_D=1e30)
    c2 = consensus(runs, None, target_C=target, lnd=lnd, fit_lnd=_refit, floors=[high])
    assert c2.allocation["loss"] is None and "below the irreducible loss" in c2.allocation["loss_refused"]
    import re

    printed = [float(v) for x in c2.lines() if "loss" in x for v in re.findall(r"\d+\.\d{4}", x)]
    assert printed and min(printed) >= high.low - 1e-4  # (the floor itself is printed to 4 decimals)
    # a floor that only applies to runs with less data than the allocation's does not bind
    scoped = Floor(low=c.allocation["loss"] + 0.05, source="L_inf of L(N)", max_D=c.allocation["D_opt"] / 10)
    c3 = consensus(runs, None, target_C=target, lnd=lnd, fit_lnd=_refit, floors=[scoped])
    assert c3.allocation["loss"] is not None


def test_allocation_intervals_and_refusal_from_a_fit():
    runs, _ = _ladder(seed=3)
    res = _refit(runs)
    a = allocate(1e23, res)
    assert a.supported and a.N_opt_ci[0] < a.N_opt < a.N_opt_ci[1] and a.a_ci[0] < a.a < a.a_ci[1]
    assert a.D_opt_ci == pytest.approx((1e23 / (6 * a.N_opt_ci[1]), 1e23 / (6 * a.N_opt_ci[0])))
    d = a.to_dict()
    assert d["supported"] and len(d["loss_ci"]) == 2 and d["a"] == pytest.approx(A_TRUE, abs=0.05)
    plain = fit("chinchilla", runs[["N", "D", "loss"]], starts=300)
    b = allocate(1e23, plain)
    assert b.refused and "no bootstrap" in b.refused and b.N_opt_ci is None
    assert any("REFUSED" in x for x in b.lines())
    # a fit JSON round trip keeps everything the allocation needs
    back = FitResult.from_dict(res.to_dict(samples=True))
    assert allocate(1e23, back).N_opt_ci == pytest.approx(a.N_opt_ci)
    # a preset has no interval and says why; a fit's caveats still travel
    p = allocate(1e23, "besiroglu2024")
    assert p.N_opt_ci is None and p.supported and any("published law" in n for n in p.notes)


def test_backtest_by_n_holds_out_every_sibling():
    """Found on a real corpus: holding out one run of the largest N kept its sibling (other D) in the fit."""
    runs, _ = _ladder(seed=4)
    big = runs["N"].max()
    extra = runs[runs["N"] == big].assign(D=lambda d: d["D"] * 3)
    extra = extra.assign(loss=S.observe(T, extra["N"].to_numpy(), extra["D"].to_numpy(),
                                        np.random.default_rng(9)))
    data = pd.concat([runs, extra], ignore_index=True)[["N", "D", "loss"]]
    bt = backtest("chinchilla", data, holdout=1, by="N", bootstrap=50, starts=200)
    assert bt.observed.size == 2 and np.all(bt.variables["N"] == big)
    assert bt.fit.n_points == len(data) - 2


def test_two_token_counts_leave_e_b_beta_unidentified_wherever_the_fit_stops():
    """With runs at two token counts the data pin E + B/D^beta at two values with three parameters: a flat
    valley, where the optimiser may stop at E ~ 0 (caught by its bound) or at an interior E (caught only by
    the Jacobian's null direction). Either way the fit is flagged and cannot feed an allocation."""
    rng = np.random.default_rng(5)
    N = np.repeat(np.geomspace(1e8, 3e9, 5), 2)
    D = np.tile([4e9, 1.6e10], 5)
    y = S.observe(T, N, D, rng)
    r = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=50, starts=300)
    assert {"E", "B", "beta"} <= set(r.not_identified) | set(r.at_bound)
    assert r.support_problems() and allocate(1e22, r).refused
    ok = fit("chinchilla", {"N": N, "D": np.tile([4e9, 1.6e10], 5) * np.geomspace(1, 8, 10), "loss": y},
             starts=300)
    assert not any("not separately identified" in w for w in ok.warnings)
