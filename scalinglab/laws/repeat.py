"""Repeated data: the data-constrained scaling law of Muennighoff et al. 2023 (NeurIPS, "Scaling
Data-Constrained Language Models"), its compute-optimal allocation under a unique-token budget, and the fit of
its decay constants to runs that repeat a fixed subset.

With U unique tokens trained on for D tokens (D / U epochs), the repetitions R_D = D / U - 1 are worth

    D' = U + U R_D* (1 - exp(-R_D / R_D*))                       (effective data, tokens)

unique tokens: the first few repeats are almost as good as fresh data, the value of more decays, and D'
never exceeds U (1 + R_D*). Parameters beyond the compute-optimal size for U, U_N = min(N, N_opt(U)), decay
the same way: N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), R_N = N / U_N - 1, with N_opt(U) the Chinchilla
optimum whose D_opt is U. The loss is the Chinchilla form at (N', D'):

    L(N, D, U) = E + A / N'^alpha + B / D'^beta.

Published constants (their C4 fit, ``MUENNIGHOFF2023``): R_D* = 15.387756, R_N* = 5.309743, alpha = beta =
0.3526596, A = e^6.255414, B = e^7.3049974, E = e^0.6254804. ``repeat_allocate`` minimises L(N, C/(6N), U)
over N at a budget C (their Figure 1 allocation); ``fit_repeat`` fits R_D* (and optionally R_N*) to runs
with the Chinchilla parameters held at a base fit, as they did. Units: N parameters, D and U tokens, C
FLOPs, loss nats/token. Pure numpy/scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError

MUENNIGHOFF2023: dict[str, float] = {
    "E": math.exp(0.6254804),
    "A": math.exp(6.255414),
    "B": math.exp(7.3049974),
    "alpha": 0.3526596,
    "beta": 0.3526596,
    "rd_star": 15.387756,
    "rn_star": 5.309743,
}
"""Muennighoff et al. 2023, their parametric fit (README of huggingface/datablations)."""

BASE_KEYS = ("E", "A", "B", "alpha", "beta")


def effective_data(D, U, rd_star: float = MUENNIGHOFF2023["rd_star"]) -> np.ndarray:
    """D' (tokens): the unique-token equivalent of D tokens drawn from U unique ones (U <= D; U > D: D)."""
    D, U = np.asarray(D, dtype=float), np.asarray(U, dtype=float)
    u = np.minimum(U, D)
    r = np.maximum(D / u - 1.0, 0.0)
    return u + u * rd_star * (1.0 - np.exp(-r / rd_star))


def n_opt_for_data(U, base: Mapping[str, float]) -> np.ndarray:
    """The Chinchilla compute-optimal N whose D_opt equals U tokens: G (U G)^(beta/alpha)."""
    a, b = float(base["alpha"]), float(base["beta"])
    G = (a * float(base["A"]) / (b * float(base["B"]))) ** (1.0 / (a + b))
    return (np.asarray(U, dtype=float) * G) ** (b / a) * G


def effective_params(N, U, base: Mapping[str, float], rn_star: float | None = MUENNIGHOFF2023["rn_star"]):
    """N' (parameters): N discounted beyond U_N = min(N, N_opt(U)) (None: no discount, N' = N)."""
    N = np.asarray(N, dtype=float)
    if rn_star is None:
        return N
    un = np.minimum(N, n_opt_for_data(U, base))
    r = np.maximum(N / un - 1.0, 0.0)
    return un + un * rn_star * (1.0 - np.exp(-r / rn_star))


def repeat_loss(
    N,
    D,
    U,
    params: Mapping[str, float] = MUENNIGHOFF2023,
    *,
    rd_star: float | None = None,
    rn_star: float | None | str = "params",
) -> np.ndarray:
    """L(N, D, U) in nats/token. ``params``: E, A, B, alpha, beta (and rd_star, rn_star unless given).
    ``rn_star``: "params" (take it from ``params``), a number, or None (no excess-parameter discount)."""
    rd = float(params["rd_star"] if rd_star is None else rd_star)
    rn = params.get("rn_star") if rn_star == "params" else rn_star
    U = np.asarray(U, dtype=float)
    if np.any(~(U > 0)) or np.any(~(np.asarray(D, dtype=float) > 0)) or np.any(~(np.asarray(N) > 0)):
        raise InputError("N, D and U must be positive")
    n_eff = effective_params(N, U, params, None if rn is None else float(rn))
    d_eff = effective_data(D, U, rd)
    return params["E"] + params["A"] / n_eff ** params["alpha"] + params["B"] / d_eff ** params["beta"]


def repeat_params(law="muennighoff2023", rd_star: float | None = None, rn_star: float | None = None):
    """(params with rd_star and rn_star, label, caveats) from a law: the ``muennighoff2023`` preset (its own
    constants), a ``repeat`` fit dict (a study's), or any Chinchilla-form law (preset, FitResult, fit JSON),
    which takes Muennighoff's R_D*, R_N* unless given."""
    if isinstance(law, Mapping) and "rd_star" in law.get("params", {}):
        p = dict(law["params"])
        label, caveats = (
            "repeat fit",
            ([] if law.get("converged", True) else ["the repeat fit did not converge"]),
        )
    elif getattr(law, "name", law) == "muennighoff2023":
        p, label, caveats = dict(MUENNIGHOFF2023), "muennighoff2023", []
    else:
        from scalinglab.laws.allocate import _resolve_law
        from scalinglab.laws.forms import ChinchillaND

        form, base, label, caveats = _resolve_law(law)[:4]  # (main's version also returns the fit)
        if not isinstance(form, ChinchillaND):
            raise InputError(
                f"repeated data needs a Chinchilla-form law E + A/N^alpha + B/D^beta; {label} is not"
            )
        p = {k: float(base[k]) for k in BASE_KEYS}
        p.setdefault("rd_star", MUENNIGHOFF2023["rd_star"])
        p.setdefault("rn_star", MUENNIGHOFF2023["rn_star"])
        caveats = list(caveats) + [
            "R_D* and R_N* are Muennighoff et al.'s (C4); a [repeat] study fits your own"
        ]
    if rd_star is not None:
        p["rd_star"] = float(rd_star)
    if rn_star is not None:
        p["rn_star"] = float(rn_star)
    for k in ("rd_star",):
        if not (p.get(k) and p[k] > 0 and math.isfinite(p[k])):
            raise InputError(f"{k} must be a positive number, got {p.get(k)!r}")
    return p, label, caveats


def epochs_at_value(value: float, rd_star: float) -> float:
    """The epoch at which one more repeated token is worth ``value`` of a fresh one: dD'/dD = exp(-R/R_D*),
    so epochs = 1 + R_D* ln(1/value)."""
    if not 0 < value <= 1:
        raise InputError(f"value must be in (0, 1], got {value}")
    return 1.0 + rd_star * math.log(1.0 / value)


@dataclass
class RepeatAllocation:
    """The compute-optimal (N, D) at ``C`` FLOPs when only ``U`` unique tokens exist (data-constrained law),
    against the compute-optimal split with unlimited unique data."""

    C: float
    U: float
    N: float
    D: float
    loss: float
    unlimited_N: float
    unlimited_D: float
    unlimited_loss: float
    rd_star: float
    rn_star: float | None
    law: str
    rows: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> float:
        return self.D / self.U

    @property
    def epochs_half_value(self) -> float:
        """The epoch from which a repeated token is worth less than half a fresh one."""
        return epochs_at_value(0.5, self.rd_star)

    def to_dict(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "U": self.U,
            "N": self.N,
            "D": self.D,
            "epochs": self.epochs,
            "loss": self.loss,
            "unlimited": {
                "N": self.unlimited_N,
                "D": self.unlimited_D,
                "loss": self.unlimited_loss,
                "epochs": self.unlimited_D / self.U,
            },
            "rd_star": self.rd_star,
            "rn_star": self.rn_star,
            "epochs_half_value": self.epochs_half_value,
            "by_epochs": list(self.rows),
            "law": self.law,
            "notes": list(self.notes),
        }


def _argmin_log(f, lo: float, hi: float, n: int = 401) -> float:
    from scipy.optimize import minimize_scalar

    grid = np.linspace(lo, hi, n)
    vals = np.array([f(x) for x in grid])
    i = int(np.argmin(vals))
    if i in (0, n - 1):
        raise FitError("the data-constrained loss has no interior minimum over N at this budget")
    res = minimize_scalar(f, bounds=(grid[i - 1], grid[i + 1]), method="bounded", options={"xatol": 1e-10})
    return float(res.x)


def repeat_allocate(
    C: float,
    unique_tokens: float,
    law="muennighoff2023",
    *,
    rd_star: float | None = None,
    rn_star: float | None = None,
    epochs: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64),
) -> RepeatAllocation:
    """N and D minimising L(N, C/(6N), U) at ``C`` FLOPs with ``unique_tokens`` U; ``rows``: for each
    epoch count in ``epochs``, the model C/(6 epochs U) trained for that many epochs, its effective data
    fraction D'/D, the value of its last repeated token, and its loss."""
    from scalinglab.laws.allocate import chinchilla_optimal

    C, U = float(C), float(unique_tokens)
    if not (C > 0 and math.isfinite(C)):
        raise InputError(f"compute budget must be a positive number of FLOPs, got {C!r}")
    if not (U > 0 and math.isfinite(U)):
        raise InputError(f"unique tokens must be a positive number, got {unique_tokens!r}")
    p, label, caveats = repeat_params(law, rd_star, rn_star)
    rn = p.get("rn_star")

    def loss_at(logn: float) -> float:
        n = math.exp(logn)
        d = C / (6.0 * n)
        return float(repeat_loss(n, d, min(U, d), p, rn_star=rn))

    half = math.log(C / 6.0) / 2.0
    x = _argmin_log(loss_at, half - 25.0, half + 25.0)
    n = math.exp(x)
    d = C / (6.0 * n)
    n_u, d_u = chinchilla_optimal(C, p)
    base = float(p["E"] + p["A"] / n_u ** p["alpha"] + p["B"] / d_u ** p["beta"])
    rows = []
    for e in epochs:
        d_e = e * U
        n_e = C / (6.0 * d_e)
        rows.append(
            {
                "epochs": float(e),
                "N": n_e,
                "D": d_e,
                "effective_data_frac": float(effective_data(d_e, U, p["rd_star"]) / d_e),
                "last_token_value": math.exp(-max(e - 1.0, 0.0) / p["rd_star"]),
                "loss": float(repeat_loss(n_e, d_e, U, p, rn_star=rn)),
            }
        )
    notes = list(caveats)
    if d_u <= U:
        notes.append(
            f"the unconstrained optimum needs D_opt = {d_u:.3g} <= U tokens: no repetition is needed"
        )
    notes.append(
        f"R_D* = {p['rd_star']:.4g}: a repeated token is worth half a fresh one from epoch "
        f"{epochs_at_value(0.5, p['rd_star']):.1f} on; effective data saturates at "
        f"U (1 + R_D*) = {U * (1 + p['rd_star']):.3g} tokens"
    )
    return RepeatAllocation(
        C=C,
        U=U,
        N=n,
        D=d,
        loss=loss_at(x),
        unlimited_N=n_u,
        unlimited_D=d_u,
        unlimited_loss=base,
        rd_star=float(p["rd_star"]),
        rn_star=None if rn is None else float(rn),
        law=label,
        rows=rows,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------- fitting


@dataclass
class RepeatFit:
    """R_D* (and R_N*) fitted to runs with the Chinchilla parameters held at ``base``: summed Huber
    (``delta``) on log loss; 95 % percentile intervals from a bootstrap over runs when ``n_bootstrap``."""

    params: dict[str, float]
    base: dict[str, float]
    objective: float
    n_points: int
    residuals: np.ndarray
    r2_log: float
    converged: bool
    message: str
    delta: float = 1e-3
    fit_rn: bool = False
    ci95: dict[str, tuple[float, float]] | None = None
    se: dict[str, float] | None = None
    n_bootstrap: int = 0
    warnings: list[str] = field(default_factory=list)

    def predict(self, N, D, U) -> np.ndarray:
        return repeat_loss(N, D, U, {**self.base, **self.params}, rn_star=self.params.get("rn_star"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": "repeat",
            "form": "muennighoff2023",
            "params": {**self.base, **self.params, **({} if self.fit_rn else {"rn_star": None})},
            "fitted": sorted(self.params),
            "objective": self.objective,
            "n_points": self.n_points,
            "r2_log": self.r2_log,
            "converged": self.converged,
            "message": self.message,
            "delta": self.delta,
            "ci95": None if self.ci95 is None else {k: list(v) for k, v in self.ci95.items()},
            "se": self.se,
            "n_bootstrap": self.n_bootstrap,
            "warnings": list(self.warnings),
            "residuals": [float(r) for r in self.residuals],
        }


def _fit_once(N, D, U, y, base, fit_rn, delta, w=None):
    """(log R* vector, objective, converged, message, (lo, hi) bounds of log R*): a grid, then a bounded
    Brent search (R_D* alone) or Nelder-Mead (R_D* and R_N*), checked by probing each coordinate."""
    from scipy.optimize import minimize, minimize_scalar

    from scalinglab.laws.optim import huber

    ly = np.log(y)
    w = np.ones_like(ly) if w is None else w
    lo, hi = math.log(1e-2), math.log(1e4)

    def obj(th) -> float:
        th = np.atleast_1d(th)
        if np.any(th < lo) or np.any(th > hi):
            return 1e300
        rd = math.exp(th[0])
        rn = math.exp(th[1]) if fit_rn else None
        with np.errstate(all="ignore"):
            r = ly - np.log(repeat_loss(N, D, U, base, rd_star=rd, rn_star=rn))
        f = float(np.sum(w * huber(r, delta)))
        return f if math.isfinite(f) else 1e300

    grid = np.linspace(lo, hi, 41)
    if not fit_rn:
        vals = [obj(g) for g in grid]
        i = int(np.argmin(vals))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = minimize_scalar(obj, bounds=(a, b), method="bounded", options={"xatol": 1e-10})
        th, f, ok, msg = np.array([res.x]), float(res.fun), bool(res.success), str(res.message)
    else:
        starts = [np.array([a, b]) for a in grid[::4] for b in grid[::4]]
        best = min(starts, key=obj)
        res = minimize(
            obj, best, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-16, "maxiter": 4000}
        )
        th, f, ok, msg = res.x, float(res.fun), bool(res.success), str(res.message)
    for j in range(th.size):  # no lower objective a step away in any coordinate
        for step in (-1e-4, 1e-4):
            t = th.copy()
            t[j] += step
            if obj(t) < f * (1 - 1e-9) - 1e-15:
                ok, msg = False, f"{msg}; a lower objective lies next to the answer"
    return th, f, ok, msg, (lo, hi)


def fit_repeat(
    data,
    base: Mapping[str, float],
    *,
    fit_rn: bool = False,
    delta: float = 1e-3,
    bootstrap: int = 0,
    seed: int = 0,
) -> RepeatFit:
    """Fit R_D* (``fit_rn``: and R_N*) to ``data`` (columns N, D, U, loss; D >= U; at least 3 runs, some
    repeating: D > U), holding E, A, B, alpha, beta at ``base`` (a Chinchilla fit on unique-data runs)."""
    cols = {c: np.asarray(data[c], dtype=float) for c in ("N", "D", "U", "loss")}
    N, D, U, y = cols["N"], cols["D"], cols["U"], cols["loss"]
    if N.size < 3:
        raise FitError(f"repeat fit: need at least 3 runs, got {N.size}")
    for k, v in cols.items():
        if np.any(~(v > 0)) or np.any(~np.isfinite(v)):
            raise InputError(f"repeat fit: column {k} must be positive and finite")
    if not np.any(D > U * 1.01):
        raise FitError("repeat fit: no run repeats its data (D > U): R_D* is not identified")
    base = {k: float(base[k]) for k in BASE_KEYS}
    th, f, ok, msg, (lo, hi) = _fit_once(N, D, U, y, base, fit_rn, delta)
    names = ["rd_star"] + (["rn_star"] if fit_rn else [])
    params = {k: math.exp(t) for k, t in zip(names, th, strict=True)}
    warnings = []
    for k, t in zip(names, th, strict=True):
        if t <= lo + 1e-6 or t >= hi - 1e-6:
            warnings.append(
                f"{k} = {math.exp(t):.3g} is at its bound [{math.exp(lo):g}, {math.exp(hi):g}]: "
                "the runs do not pin it down"
            )
            ok = False
    pred = repeat_loss(N, D, U, base, rd_star=params["rd_star"], rn_star=params.get("rn_star"))
    resid = np.log(y) - np.log(pred)
    ss = float(np.sum((np.log(y) - np.log(y).mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else float("nan")
    ci = se = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(int(bootstrap)):
            w = np.bincount(rng.integers(0, N.size, N.size), minlength=N.size).astype(float)
            if not np.any((D > U * 1.01) & (w > 0)):
                continue
            samples.append(np.exp(_fit_once(N, D, U, y, base, fit_rn, delta, w)[0]))
        if len(samples) < 0.9 * bootstrap:
            warnings.append(f"only {len(samples)} of {bootstrap} bootstrap resamples had a repeating run")
        s = np.array(samples)
        ci = {
            k: (float(np.percentile(s[:, i], 2.5)), float(np.percentile(s[:, i], 97.5)))
            for i, k in enumerate(names)
        }
        se = {k: float(np.std(s[:, i], ddof=1)) for i, k in enumerate(names)}
    return RepeatFit(
        params=params,
        base=base,
        objective=f,
        n_points=int(N.size),
        residuals=resid,
        r2_log=r2,
        converged=ok,
        message=msg,
        delta=delta,
        fit_rn=fit_rn,
        ci95=ci,
        se=se,
        n_bootstrap=int(bootstrap),
        warnings=warnings,
    )
