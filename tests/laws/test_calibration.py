"""The intervals mean what they say: on synthetic ladders from a known law (Epoch-like noise), the 95 %
intervals of E, alpha, beta, a, the back-test and N_opt hold the truth about 95 % of the time. A small,
fast version of bench/bench_calibration.py (200 replicates), with a looser band."""

from __future__ import annotations

import numpy as np

from scalinglab.laws.calibration import QUANTITIES, coverage


def test_intervals_cover_the_truth_at_about_their_level():
    cov = coverage(16, seed=7, bootstrap=100, starts=150)
    assert cov.failed == 0
    for q in QUANTITIES:
        # 16 replicates: a true 95 % rate gives >= 12/16 with probability 0.99; far too wide intervals
        # (which would cover always) are caught by their width below
        assert cov.rate(q) >= 0.75, (q, cov.summary())
    pooled = sum(cov.hits[q] for q in ("E", "alpha", "beta", "a")) / sum(
        cov.trials[q] for q in ("E", "alpha", "beta", "a"))
    assert 0.8 <= pooled <= 1.0
    # honest widths: alpha's interval is a few hundredths wide, not the whole range
    assert np.median(cov.widths["alpha"]) < 0.6 and np.median(cov.widths["backtest_mean"]) < 0.2
