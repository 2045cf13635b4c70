"""Synthetic scaling-law ladders with a known truth, for calibration checks, benchmarks and tests.

The truth is a Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta (nats/token; N parameters, D tokens);
a run's measured loss is the law times exp(eps), eps drawn from "Epoch-like" noise: Student-t with 5
degrees of freedom scaled to a standard deviation of 0.0075 in log loss, the residual scatter of the
Chinchilla fit to Epoch AI's digitised Hoffmann et al. runs (../shared/data, 240 rows: SD 0.0075, robust SD
0.0048), heavier-tailed than a normal as those residuals are. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scalinglab.laws.forms import ChinchillaND

# Besiroglu et al. 2024's fit of Hoffmann et al.'s runs (SPEC (e)): a law in the regime of real LLMs
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
EPOCH_NOISE_SD = 0.0075  # SD of log loss around the fitted law on Epoch's data
T_DOF = 5


def epoch_noise(rng: np.random.Generator, size, sd: float = EPOCH_NOISE_SD) -> np.ndarray:
    """Log-loss noise: Student-t (5 dof) scaled to standard deviation ``sd``."""
    return rng.standard_t(T_DOF, size=size) * sd / np.sqrt(T_DOF / (T_DOF - 2))


def law(truth: Mapping[str, float], N, D) -> np.ndarray:
    """The true L(N, D) in nats/token."""
    return ChinchillaND().predict(truth, N=N, D=D)


def optimum(truth: Mapping[str, float], C) -> tuple[np.ndarray, np.ndarray]:
    """The true compute-optimal (N_opt, D_opt) at C FLOPs (C = 6 N D; Hoffmann's closed form)."""
    a, b = truth["alpha"], truth["beta"]
    G = (a * truth["A"] / (b * truth["B"])) ** (1 / (a + b))
    c = np.asarray(C, dtype=float) / 6.0
    return G * c ** (b / (a + b)), c ** (a / (a + b)) / G


def isoflop_design(
    truth: Mapping[str, float], budgets, n_sizes: int = 5, span: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, budget) of an isoFLOP ladder: per budget ``n_sizes`` sizes from N_opt/span to N_opt*span
    (geometric) around the true optimum, D = C / (6 N)."""
    rows = []
    for c in np.atleast_1d(np.asarray(budgets, dtype=float)):
        n0 = float(optimum(truth, c)[0])
        for f in np.geomspace(1 / span, span, n_sizes):
            rows.append((n0 * f, c / (6 * n0 * f), c))
    a = np.array(rows)
    return a[:, 0], a[:, 1], a[:, 2]


def observe(truth: Mapping[str, float], N, D, rng: np.random.Generator, sd: float = EPOCH_NOISE_SD):
    """Measured final losses of runs at (N, D): the law times exp(Epoch-like noise)."""
    N = np.asarray(N, dtype=float)
    return law(truth, N, D) * np.exp(epoch_noise(rng, N.shape, sd))
