"""Gradient noise scale and critical batch size (McCandlish 2018; Kaplan 2020 sec. 5). numpy only.

The two-batch estimators (McCandlish App. A): with |G_b|^2 the squared norm of a gradient averaged over b
examples, E|G_b|^2 = |G|^2 + tr(Sigma)/b, so two batch sizes b_small < b_big give unbiased estimates

    |G|^2     ~= (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
    tr(Sigma) ~= (|G_small|^2 - |G_big|^2) / (1/b_small - 1/b_big)

and B_simple = tr(Sigma)/|G|^2 (in the unit of b: examples, i.e. sequences, unless converted to tokens).
Both estimates are noisy and can be negative; average each (``NoiseScaleEMA``) and take the ratio of the
averages, never the average of per-step ratios (a ratio of noisy quantities is biased and heavy-tailed).

Batch-size trade-off (Kaplan eqs. 5.4, 5.5; McCandlish): S_min = S/(1 + B_crit/B), E_min = E/(1 + B/B_crit),
C_min = C/(1 + B/B_crit). B and B_crit must be in the same unit (sequences or tokens).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scalinglab.errors import InputError

ArrayLike = Any  # float | np.ndarray


WARMUP_FRAC = 0.1  # measurements before this fraction of a run's steps are left out of B_crit(L) fits


def past_warmup(step: ArrayLike, total_steps: ArrayLike, frac: float = WARMUP_FRAC) -> np.ndarray:
    """Which noise-scale measurements to fit: those at or after ``frac`` of their run's steps (before it the
    EMAs are still filling and the loss is in its first transient). The one rule the study's B_crit(L),
    ``scalinglab noise-scale`` and the report all use."""
    return np.asarray(step, dtype=float) >= frac * np.asarray(total_steps, dtype=float)


def _check_sizes(b_small: ArrayLike, b_big: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    bs, bb = np.asarray(b_small, dtype=float), np.asarray(b_big, dtype=float)
    if not (np.all(np.isfinite(bs)) and np.all(np.isfinite(bb))):
        raise InputError(f"batch sizes must be finite, got b_small={b_small}, b_big={b_big}")
    if np.any(bs <= 0) or np.any(bb <= 0):
        raise InputError(f"batch sizes must be positive, got b_small={b_small}, b_big={b_big}")
    if np.any(bs == bb):
        raise InputError(f"b_small must differ from b_big (both {b_small}): the estimate needs two sizes")
    if np.any(bs > bb):
        raise InputError(f"b_small must be smaller than b_big, got b_small={b_small} > b_big={b_big}")
    return bs, bb


def noise_scale_estimates(
    sq_norm_small: ArrayLike, sq_norm_big: ArrayLike, b_small: ArrayLike, b_big: ArrayLike
) -> tuple[ArrayLike, ArrayLike]:
    """Unbiased (|G|^2, tr(Sigma)) from squared gradient norms at two batch sizes (McCandlish App. A).

    ``sq_norm_small``: |G_{b_small}|^2 (e.g. the mean over devices/micro-batches of each one's squared norm);
    ``sq_norm_big``: |G_{b_big}|^2 of the gradient averaged over b_big examples. Scalars or arrays
    (broadcast). tr(Sigma) is per example, so B_simple = tr(Sigma)/|G|^2 is in the unit of b.
    """
    bs, bb = _check_sizes(b_small, b_big)
    s, g = np.asarray(sq_norm_small, dtype=float), np.asarray(sq_norm_big, dtype=float)
    g2 = (bb * g - bs * s) / (bb - bs)
    trace = (s - g) / (1.0 / bs - 1.0 / bb)
    if g2.ndim == 0 and trace.ndim == 0:
        return float(g2), float(trace)
    return g2, trace


def b_simple(g2: ArrayLike, trace_sigma: ArrayLike) -> ArrayLike:
    """B_simple = tr(Sigma)/|G|^2 from (averaged) estimates; NaN where |G|^2 <= 0 (no signal yet)."""
    g2a, ta = np.asarray(g2, dtype=float), np.asarray(trace_sigma, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(g2a > 0, ta / np.where(g2a > 0, g2a, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


class NoiseScaleEMA:
    """Bias-corrected exponential moving averages of |G|^2 and tr(Sigma); B_simple = their ratio.

    ``beta`` is the decay per update (Adam-style bias correction: avg / (1 - beta^t)). The state is plain
    floats, so ``state_dict()`` is JSON-able and can be stored in a checkpoint.
    """

    def __init__(self, beta: float = 0.99) -> None:
        if not 0.0 <= beta < 1.0:
            raise InputError(f"NoiseScaleEMA beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        self._g2 = 0.0
        self._trace = 0.0
        self.n_updates = 0

    def update(self, g2: float, trace_sigma: float) -> None:
        """Add one pair of estimates (e.g. from ``noise_scale_estimates``); non-finite pairs are ignored."""
        g2, trace_sigma = float(g2), float(trace_sigma)
        if not (np.isfinite(g2) and np.isfinite(trace_sigma)):
            return
        self._g2 = self.beta * self._g2 + (1.0 - self.beta) * g2
        self._trace = self.beta * self._trace + (1.0 - self.beta) * trace_sigma
        self.n_updates += 1

    def _correct(self, value: float) -> float:
        if self.n_updates == 0:
            return float("nan")
        return value / (1.0 - self.beta**self.n_updates)

    @property
    def g2(self) -> float:
        """Bias-corrected average of |G|^2 (NaN before the first update)."""
        return self._correct(self._g2)

    @property
    def trace_sigma(self) -> float:
        """Bias-corrected average of tr(Sigma), per example (NaN before the first update)."""
        return self._correct(self._trace)

    @property
    def b_simple(self) -> float:
        """tr(Sigma)/|G|^2 as the ratio of the two averages, in the unit of the batch sizes given."""
        return b_simple(self.g2, self.trace_sigma) if self.n_updates else float("nan")

    def state_dict(self) -> dict[str, float | int]:
        return {"beta": self.beta, "g2": self._g2, "trace": self._trace, "n_updates": self.n_updates}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        try:
            self.beta = float(state["beta"])
            self._g2 = float(state["g2"])
            self._trace = float(state["trace"])
            self.n_updates = int(state["n_updates"])
        except KeyError as e:
            raise InputError(f"NoiseScaleEMA state is missing key {e}") from None


def sequences_to_tokens(b_sequences: ArrayLike, seq_len: int) -> ArrayLike:
    """A batch size (or B_simple) in sequences -> tokens: times the sequence length (tokens per sequence)."""
    if seq_len <= 0:
        raise InputError(f"seq_len must be positive, got {seq_len}")
    out = np.asarray(b_sequences, dtype=float) * seq_len
    return float(out) if out.ndim == 0 else out


def _trade(x: ArrayLike, ratio: ArrayLike) -> ArrayLike:
    out = np.asarray(x, dtype=float) / (1.0 + np.asarray(ratio, dtype=float))
    return float(out) if out.ndim == 0 else out


def _check_b(B: ArrayLike, B_crit: ArrayLike) -> None:
    if np.any(np.asarray(B, dtype=float) <= 0) or np.any(np.asarray(B_crit, dtype=float) <= 0):
        raise InputError(f"batch size B and B_crit must be positive, got B={B}, B_crit={B_crit}")


def s_min(S: ArrayLike, B: ArrayLike, B_crit: ArrayLike) -> ArrayLike:
    """Minimum steps to reach the same loss at a very large batch: S_min = S / (1 + B_crit/B) (Kaplan 5.4)."""
    _check_b(B, B_crit)
    return _trade(S, np.asarray(B_crit, dtype=float) / np.asarray(B, dtype=float))


def e_min(E: ArrayLike, B: ArrayLike, B_crit: ArrayLike) -> ArrayLike:
    """Minimum examples (or tokens) to reach the same loss at a very small batch: E / (1 + B/B_crit)."""
    _check_b(B, B_crit)
    return _trade(E, np.asarray(B, dtype=float) / np.asarray(B_crit, dtype=float))


def c_min(C: ArrayLike, B: ArrayLike, B_crit: ArrayLike) -> ArrayLike:
    """Minimum compute (FLOPs or PF-days, as given): C_min = C / (1 + B/B_crit) (Kaplan 5.5)."""
    _check_b(B, B_crit)
    return _trade(C, np.asarray(B, dtype=float) / np.asarray(B_crit, dtype=float))


def b_crit(loss: ArrayLike, B_star: float = 2.1e8, alpha_B: float = 0.21) -> ArrayLike:
    """Kaplan's critical batch B_crit(L) = B_star / L^(1/alpha_B), tokens, loss in nats/token (eq. 1.4)."""
    L = np.asarray(loss, dtype=float)
    if np.any(L <= 0):
        raise InputError(f"loss must be positive for B_crit(L), got {loss}")
    out = B_star / L ** (1.0 / alpha_B)
    return float(out) if out.ndim == 0 else out


def fit_tradeoff(B: ArrayLike, S: ArrayLike) -> dict[str, Any]:
    """Fit (S/S_min - 1)(E/E_min - 1) = 1 with E = B S to runs that reached the same loss (McCandlish Fig. 1).

    ``B``: batch size of each run (sequences or tokens; E_min and B_crit come out in that unit); ``S``: the
    optimizer steps it took to reach the target loss. The hyperbola is S = S_min + E_min/B, linear in 1/B;
    fitted by non-negative least squares on relative errors ((S - S_hat)/S). Returns ``S_min`` (steps),
    ``E_min``, ``B_crit`` = E_min/S_min, ``rel_residuals`` per run and ``hyperbola`` =
    (S/S_min - 1)(E/E_min - 1) per run (1 on the curve). Needs >= 3 runs at >= 2 distinct batch sizes.
    """
    from scipy.optimize import nnls

    b, s = np.asarray(B, dtype=float).ravel(), np.asarray(S, dtype=float).ravel()
    if b.shape != s.shape:
        raise InputError(f"fit_tradeoff: B and S must have the same length, got {b.size} and {s.size}")
    if b.size < 3 or np.unique(b).size < 2:
        raise InputError(f"fit_tradeoff needs >= 3 runs at >= 2 distinct batch sizes, got B={b.tolist()}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s)) and np.all(b > 0) and np.all(s > 0)):
        raise InputError(
            f"fit_tradeoff: B and S must be positive and finite, got B={b.tolist()}, S={s.tolist()}"
        )
    A = np.column_stack([1.0 / s, 1.0 / (b * s)])  # rows divided by S: relative residuals
    (smin, emin), _ = nnls(A, np.ones_like(s))
    if not (smin > 0 and emin > 0):
        raise InputError(
            "fit_tradeoff: no positive (S_min, E_min) fits these runs: the batch sizes do not "
            f"straddle the critical batch (B={b.tolist()}, S={s.tolist()})"
        )
    shat = smin + emin / b
    with np.errstate(divide="ignore", invalid="ignore"):
        hyper = (s / smin - 1.0) * (b * s / emin - 1.0)
    return {
        "S_min": float(smin),
        "E_min": float(emin),
        "B_crit": float(emin / smin),
        "rel_residuals": (s - shat) / s,
        "hyperbola": hyper,
    }
