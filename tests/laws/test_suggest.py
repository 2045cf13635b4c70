"""What to train next: on a known law, the suggested runs shrink the N_opt interval at the target more than
the static ladder's next isoFLOP budget does, for a fraction of its FLOPs."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.laws import synthetic as S
from scalinglab.laws.allocate import allocate
from scalinglab.laws.fit import fit
from scalinglab.laws.suggest import candidate_grid, suggest

T = S.BESIROGLU
TARGET = 1e23


def _width(N, D, y, seed=0):
    r = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=100, seed=seed, starts=200)
    a = allocate(TARGET, r)
    return a.N_opt_ci[1] / a.N_opt_ci[0], r, a


def test_suggested_runs_shrink_the_interval_at_the_target():
    rng = np.random.default_rng(0)
    N, D, _ = S.isoflop_design(T, (1e18, 3e18, 1e19))
    y = S.observe(T, N, D, rng)
    w0, res, _ = _width(N, D, y)
    cap = 3e19
    cand = candidate_grid(np.geomspace(N.min() / 2, 1e10, 30), (D.min() / 2, 1e12), n_D=30, max_flops=cap)
    sg = suggest(res, cand, target_C=TARGET, k=3, max_flops=cap)
    assert len(sg.runs) == 3 and all(r["flops"] <= cap * (1 + 1e-9) for r in sg.runs)
    sds = [sg.sd_now] + [r["sd_after"] for r in sg.runs]
    assert all(b < a for a, b in zip(sds, sds[1:], strict=False))  # each pick is expected to help
    n2 = np.array([r["N"] for r in sg.runs])
    d2 = np.array([r["D"] for r in sg.runs])
    spent = float(np.sum(6 * n2 * d2))
    w_sug = _width(np.r_[N, n2], np.r_[D, d2], np.r_[y, S.observe(T, n2, d2, rng)], 1)[0]
    # the static alternative: the next isoFLOP budget (3x the last), 5 sizes around the true optimum
    ns, ds, _ = S.isoflop_design(T, [cap], 5, 4.0)
    w_sta = _width(np.r_[N, ns], np.r_[D, ds], np.r_[y, S.observe(T, ns, ds, rng)], 1)[0]
    assert w_sug < w_sta < w0, (w0, w_sug, w_sta)
    assert spent < 0.5 * float(np.sum(6 * ns * ds))  # (seeds 0-3: 18-36 % of its FLOPs, narrower each time)
    assert sg.lines()[0].startswith("target: N_opt at C = 1e+23")


def test_suggest_needs_a_bootstrapped_chinchilla_fit():
    rng = np.random.default_rng(1)
    N, D, _ = S.isoflop_design(T, (1e18, 1e19))
    y = S.observe(T, N, D, rng)
    with pytest.raises(FitError, match="bootstrap"):
        suggest(fit("chinchilla", {"N": N, "D": D, "loss": y}, starts=100), [[1e8, 1e9]], target_C=TARGET)
    with pytest.raises(InputError, match="Chinchilla"):
        suggest(fit("power", {"N": N, "loss": y}, var="N", bootstrap=20), [[1e8, 1e9]], target_C=TARGET)
    r = fit("chinchilla", {"N": N, "D": D, "loss": y}, bootstrap=50, starts=100)
    with pytest.raises(InputError, match="within the FLOP limit"):
        suggest(r, [[1e9, 1e12]], target_C=TARGET, max_flops=1e10)
    assert suggest(r, [[1e8, 1e9], [1e9, 1e10]], target_C=TARGET, quantity="loss", k=1).quantity == "loss"
