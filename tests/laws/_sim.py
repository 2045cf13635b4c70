"""Simulated data with known parameters for the laws tests (1% multiplicative log-normal noise)."""

from __future__ import annotations

import numpy as np

from scalinglab.laws.forms import get_form

# form name, var, true params, variable ranges (log10 low, high), number of points
CASES = {
    "power": ("N", {"N_c": 8.8e13, "alpha": 0.076}, {"N": (6, 10)}, 200),
    "power+const": ("N", {"L_inf": 2.0, "N_0": 5.1e3, "alpha": 0.16}, {"N": (2, 10)}, 600),
    "chinchilla": (
        None,
        {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366},
        {"N": (7, 10.5), "D": (9, 12.5)},
        300,
    ),
    "kaplan-nd": (
        None,
        {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103},
        {"N": (6, 10), "D": (7, 11)},
        300,
    ),
    "kaplan-ns": (
        None,
        {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76},
        {"N": (6, 10), "S": (3.5, 6)},
        300,
    ),
    "bcrit": (None, {"B_star": 2.1e8, "alpha_B": 0.21}, {"L": (0.3, 0.7)}, 150),
    "bnsl": ("C", {"L_inf": 1.0, "b": 3.0, "c0": 0.1, "c1": 0.5, "d1": 1e4, "f1": 0.25}, {"C": (0, 10)}, 600),
}


def simulate(name: str, seed: int = 0, noise: float = 0.01, n: int | None = None):
    """(form, data dict with the form's columns, true params)."""
    var, truth, ranges, n_default = CASES[name]
    form = get_form(name, var=var)
    rng = np.random.default_rng(seed)
    n = n or n_default
    data = {v: 10 ** rng.uniform(lo, hi, n) for v, (lo, hi) in ranges.items()}
    y = form.predict(truth, **data) * np.exp(noise * rng.normal(size=n))
    data[form.target] = y
    return form, data, truth
