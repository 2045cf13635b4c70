"""Over-training for inference: the model reaching a loss at the least lifetime cost (Sardana et al. 2024).

Training a model of N parameters on D tokens costs 6 N D FLOPs; serving it costs 2 N FLOPs per token of
inference (prompt and generated tokens alike). For a target loss l and an expected inference volume
D_inf tokens, Sardana et al. minimise

    6 N D + 2 N D_inf   subject to   L(N, D) = l,

i.e. over N alone with D = D(N, l), the tokens a model of size N needs to reach l. With no inference the
answer is the Chinchilla compute-optimal model of that loss; the more inference, the smaller and longer
trained the model. For the Chinchilla form D(N, l) = (B / (l - E - A / N^alpha))^(1/beta) (closed form),
for any other L(N, D) law a bisection in log D; N must exceed N_min, where L(N, inf) = l.

``tokens_for_loss(N, l)`` answers "how many tokens does a model of size N need to reach l". All units:
N parameters, D tokens, FLOPs plain FLOPs, loss nats/token (the law's own units).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.forms import ChinchillaND, Form

TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0
INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0
_D_MAX = 1e40  # "infinitely many tokens" for the bisection of a general law


def _law(law) -> tuple[Form, dict[str, float], str, list[str]]:
    """(form, params, label, caveats) of a preset name, Preset, FitResult, fit dict or JSON path."""
    from scalinglab.laws.allocate import _resolve_law
    from scalinglab.laws.presets import Frontier, HenighanNopt

    form, params, label, caveats = _resolve_law(law)[:4]  # (main's version also returns the fit)
    if isinstance(form, (Frontier, HenighanNopt)) or set(getattr(form, "variables", ())) != {"N", "D"}:
        raise InputError(
            f"law {label!r} is not an L(N, D) law: over-training needs the loss at any (N, D) "
            "(use hoffmann2022, besiroglu2024, kaplan2020-ND or an L(N,D) fit)"
        )
    return form, dict(params), label, list(caveats)


def _loss(form: Form, p: Mapping[str, float], N: float, D: float) -> float:
    return float(form.predict(p, N=N, D=D))


def _floor(form: Form, p: Mapping[str, float], N: float) -> float:
    """L(N, D -> inf): the loss a model of size N approaches with unlimited data."""
    if isinstance(form, ChinchillaND):
        return float(p["E"] + p["A"] / N ** p["alpha"])
    return _loss(form, p, N, _D_MAX)


def _tokens(form: Form, p: Mapping[str, float], N: float, loss: float) -> float:
    """D with L(N, D) = loss (inf when unreachable at this N)."""
    if isinstance(form, ChinchillaND):
        gap = loss - p["E"] - p["A"] / N ** p["alpha"]
        return math.inf if gap <= 0 else float((p["B"] / gap) ** (1.0 / p["beta"]))
    if _floor(form, p, N) >= loss:
        return math.inf
    if _loss(form, p, N, 1.0) <= loss:
        return 1.0
    from scipy.optimize import brentq  # L decreases in D: the root in log D

    x = brentq(
        lambda ld: _loss(form, p, N, math.exp(ld)) - loss,
        0.0,
        math.log(_D_MAX),
        xtol=1e-13,
        rtol=1e-15,
        maxiter=500,
    )
    return math.exp(x)


def _n_min(form: Form, p: Mapping[str, float], loss: float) -> float:
    """The smallest model that can reach ``loss`` at all (L(N, inf) = loss)."""
    if isinstance(form, ChinchillaND):
        gap = loss - p["E"]
        if gap <= 0:
            raise InputError(
                f"loss {loss:g} is at or below the law's irreducible loss E = {p['E']:.4g}: "
                "no model reaches it"
            )
        return float((p["A"] / gap) ** (1.0 / p["alpha"]))
    lo, hi = 0.0, 120.0  # log N
    if _floor(form, p, math.exp(hi)) >= loss:
        raise InputError(f"loss {loss:g} is below what the law reaches with any model size and data")
    if _floor(form, p, 1.0) < loss:
        return 1.0
    from scipy.optimize import brentq

    return math.exp(brentq(lambda ln: _floor(form, p, math.exp(ln)) - loss, lo, hi, xtol=1e-13, maxiter=500))


def tokens_for_loss(N: float, loss: float, law="hoffmann2022") -> float:
    """Training tokens a model of ``N`` parameters needs to reach ``loss`` (nats/token) under an L(N, D) law.
    An InputError says when the loss is out of reach at that size (L(N, inf) >= loss)."""
    N, loss = float(N), float(loss)
    if not (N > 0 and math.isfinite(N) and math.isfinite(loss) and loss > 0):
        raise InputError(f"need N > 0 and a positive finite loss, got N={N!r}, loss={loss!r}")
    form, p, label, _ = _law(law)
    d = _tokens(form, p, N, loss)
    if not math.isfinite(d):
        raise InputError(
            f"a model of N = {N:.4g} cannot reach loss {loss:g} under {label}: its loss with "
            f"unlimited data is {_floor(form, p, N):.4g}"
        )
    return d


@dataclass
class Plan:
    """One (N, D) choice and its costs: train 6 N D and inference 2 N D_inf FLOPs."""

    N: float
    D: float
    train_flops: float
    inference_flops: float

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.inference_flops

    def to_dict(self) -> dict[str, float]:
        return {
            "N": self.N,
            "D": self.D,
            "tokens_per_param": self.D / self.N,
            "train_flops": self.train_flops,
            "inference_flops": self.inference_flops,
            "total_flops": self.total_flops,
        }


@dataclass
class InferenceAllocation:
    """The lifetime-optimal model for ``loss`` (nats/token) and ``inference_tokens`` served (Sardana et al.
    2024), and the compute-optimal (Chinchilla) model of the same loss for comparison."""

    loss: float
    inference_tokens: float
    optimal: Plan
    chinchilla: Plan
    law: str
    notes: list[str] = field(default_factory=list)

    @property
    def N(self) -> float:
        return self.optimal.N

    @property
    def D(self) -> float:
        return self.optimal.D

    @property
    def saving(self) -> float:
        """Total FLOPs saved against the Chinchilla-optimal model of the same loss (FLOPs)."""
        return self.chinchilla.total_flops - self.optimal.total_flops

    @property
    def saving_frac(self) -> float:
        return self.saving / self.chinchilla.total_flops

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "inference_tokens": self.inference_tokens,
            "law": self.law,
            "optimal": self.optimal.to_dict(),
            "chinchilla": self.chinchilla.to_dict(),
            "saving_flops": self.saving,
            "saving_frac": self.saving_frac,
            "notes": list(self.notes),
        }


def _plan(form: Form, p: Mapping[str, float], N: float, loss: float, d_inf: float) -> Plan:
    D = _tokens(form, p, N, loss)
    return Plan(
        N=N,
        D=D,
        train_flops=TRAIN_FLOPS_PER_PARAM_TOKEN * N * D,
        inference_flops=INFERENCE_FLOPS_PER_PARAM_TOKEN * N * d_inf,
    )


def _least_cost(form: Form, p: Mapping[str, float], loss: float, d_inf: float) -> Plan:
    """argmin over log N of 6 N D(N) + 2 N D_inf: a scan from N_min over 40 e-folds, then bounded Brent."""
    from scipy.optimize import minimize_scalar

    lo = math.log(_n_min(form, p, loss))

    def cost(logn: float) -> float:
        n = math.exp(logn)
        d = _tokens(form, p, n, loss)
        return math.log(6.0 * n * d + 2.0 * n * d_inf) if math.isfinite(d) else math.inf

    grid = lo + np.geomspace(1e-9, 40.0, 400)
    vals = np.array([cost(x) for x in grid])
    i = int(np.argmin(vals))
    if not np.isfinite(vals[i]) or i == len(grid) - 1:
        raise FitError(f"no least-cost model found for loss {loss:g}: the cost keeps falling with N")
    a, b = grid[max(i - 1, 0)], grid[i + 1]
    res = minimize_scalar(cost, bounds=(a, b), method="bounded", options={"xatol": 1e-12})
    x = float(res.x) if res.fun <= vals[i] else float(grid[i])
    return _plan(form, p, math.exp(x), loss, d_inf)


def inference_optimal(
    loss: float | None = None, *, C: float | None = None, inference_tokens: float, law="hoffmann2022"
) -> InferenceAllocation:
    """The (N, D) that reaches ``loss`` (nats/token) at the least training + inference FLOPs for
    ``inference_tokens`` served. Instead of a loss, ``C`` (training FLOPs) sets the target to the loss of the
    compute-optimal model at C (the question "what should I train instead of the Chinchilla model of C")."""
    d_inf = float(inference_tokens)
    if not (d_inf >= 0 and math.isfinite(d_inf)):
        raise InputError(f"inference tokens must be a finite number >= 0, got {inference_tokens!r}")
    if (loss is None) == (C is None):
        raise InputError("give either a target loss or a training budget C (FLOPs)")
    form, p, label, caveats = _law(law)
    notes = list(caveats)
    if C is not None:
        from scalinglab.laws.allocate import allocate

        c = float(C)
        if not (c > 0 and math.isfinite(c)):
            raise InputError(f"compute budget must be a positive number of FLOPs, got {C!r}")
        loss = allocate(c, law).loss
        notes.append(f"target loss {loss:.4f} nats/token = the compute-optimal model's at C = {c:.4g} FLOPs")
    loss = float(loss)
    if not (math.isfinite(loss) and loss > 0):
        raise InputError(f"target loss must be a positive finite number (nats/token), got {loss!r}")
    best = _least_cost(form, p, loss, d_inf)
    chin = _least_cost(form, p, loss, 0.0)
    chin = _plan(form, p, chin.N, loss, d_inf)
    notes.append(
        "cost = 6 N D (training) + 2 N per inference token (Sardana et al. 2024); the Chinchilla "
        "row is the compute-optimal model of the same loss, serving the same tokens"
    )
    return InferenceAllocation(
        loss=loss, inference_tokens=d_inf, optimal=best, chinchilla=chin, law=label, notes=notes
    )
