"""Compute-optimal allocation and the three Chinchilla approaches to N_opt(C).

- ``allocate(C, law)``: N_opt, D_opt (C = 6 N D), predicted loss, and B, S where the law has them.
  Closed form for the Chinchilla form (Hoffmann 2022; SPEC (e)):
  N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)),
  G = (alpha A/(beta B))^(1/(alpha+beta));
  any other (N, D) law: the numerical minimum of L(N, C/(6N)) over log N. Kaplan's Table 6 frontier gives
  N, B, S and D directly from C_min in PF-days.
- ``frontier(curves)`` + ``approach1``: the lower envelope of learning curves over C (Approach 1).
- ``isoflop(runs)``: a parabola in log N per compute budget, then N_opt ~ C^a (Approach 2).
- ``kaplan_contradiction()``: where L(C_min) meets L(D(C_min)) (Kaplan sec. 6.3, Figure 15).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.forms import ChinchillaND, Form
from scalinglab.laws.presets import (
    HENIGHAN_NOPT,
    KAPLAN_FRONTIER,
    PF_DAY,
    Frontier,
    HenighanNopt,
    Preset,
    get_preset,
)


@dataclass
class Allocation:
    """Compute-optimal split of C FLOPs: N_opt params, D_opt tokens, loss (nats/token); B tokens, S steps."""

    C: float
    N_opt: float
    D_opt: float
    loss: float
    B: float | None = None
    S: float | None = None
    method: str = ""
    law: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {
            "C": self.C,
            "N_opt": self.N_opt,
            "D_opt": self.D_opt,
            "loss": self.loss,
            "method": self.method,
            "law": self.law,
            "notes": list(self.notes),
        }
        if self.B is not None:
            d["B"] = self.B
        if self.S is not None:
            d["S"] = self.S
        return d


def _resolve_law(law) -> tuple[Form | Frontier, dict[str, float], str, list[str]]:
    """A preset name, Preset, FitResult, fit JSON dict or path to it -> (form or frontier, params, label,
    caveats). The caveats carry a fit's own verdict (non-convergence, warnings) into what is made of it."""
    from scalinglab.laws.fit import FitResult

    if isinstance(law, (str, Path)) and (str(law).endswith(".json") or Path(str(law)).is_file()):
        import json

        p = Path(law)
        if not p.is_file():
            raise InputError(f"fit JSON not found: {p}")
        try:
            law = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{p} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(law, str):
        if law in ("kaplan2020-frontier", "kaplan2020-table6"):
            return KAPLAN_FRONTIER, {}, KAPLAN_FRONTIER.name, []
        if law in HENIGHAN_NOPT:
            return HENIGHAN_NOPT[law], {}, law, []
        law = get_preset(law)
    if isinstance(law, (Frontier, HenighanNopt)):
        return law, {}, law.name, []
    if isinstance(law, Preset):
        return law.form, dict(law.params), law.name, []
    # a dict without a "converged" key (hand-written, a bootstrap row) carries no verdict: no caveat
    said_converged = law.get("converged", True) if isinstance(law, Mapping) else None
    if isinstance(law, Mapping):
        law = FitResult.from_dict(law)
    if isinstance(law, FitResult):
        ok = law.converged if said_converged is None else bool(said_converged)
        caveats = [] if ok else ["CAUTION: the fit this allocation comes from did not converge"]
        caveats += [f"fit warning: {w}" for w in law.warnings]
        return law.form, dict(law.params), f"fit ({law.form.name})", caveats
    raise InputError(f"cannot allocate with {law!r}: give a preset name, a FitResult or a fit JSON")


def chinchilla_optimal(C: float, p: Mapping[str, float]) -> tuple[float, float]:
    """Closed-form (N_opt, D_opt) for E + A/N^alpha + B/D^beta under C = 6ND (Hoffmann 2022, eq. 4)."""
    a, b = float(p["alpha"]), float(p["beta"])
    for k in ("A", "B", "alpha", "beta"):
        if not (np.isfinite(float(p[k])) and float(p[k]) > 0):
            raise InputError(
                f"no compute-optimal split: {k} = {float(p[k]):g}, but A, B, alpha and beta must all be > 0 "
                "(with a zero exponent or coefficient the loss does not trade N against D)"
            )
    G = (a * float(p["A"]) / (b * float(p["B"]))) ** (1.0 / (a + b))
    return G * (C / 6.0) ** (b / (a + b)), (C / 6.0) ** (a / (a + b)) / G


def numeric_optimal(C: float, form: Form, params: Mapping[str, float]) -> tuple[float, float]:
    """(N_opt, D_opt) minimising L(N, C/(6N)) over log N (bounded scalar search, xatol 1e-10 in log N)."""
    from scipy.optimize import minimize_scalar

    if set(form.variables) != {"N", "D"}:
        raise InputError(f"law {form.name!r} is not a function of N and D: no compute-optimal split")
    half = math.log(C / 6.0) / 2.0

    def f(logn: float) -> float:
        n = math.exp(logn)
        return float(np.log(form.predict(params, N=n, D=C / (6.0 * n))))

    # coarse scan to bracket the minimum, then a bounded Brent search around it
    grid = np.linspace(half - 40.0, half + 40.0, 161)
    vals = np.array([f(x) for x in grid])
    i = int(np.argmin(vals))
    if i in (0, len(grid) - 1):
        raise FitError(f"L(N, C/6N) has no interior minimum for C={C:g}: the optimum is at N->0 or N->C/6")
    res = minimize_scalar(f, bounds=(grid[i - 1], grid[i + 1]), method="bounded", options={"xatol": 1e-10})
    n = math.exp(res.x)
    return n, C / (6.0 * n)


def allocate(C_flops: float, law="hoffmann2022", method: str = "auto") -> Allocation:
    """Compute-optimal N, D (and B, S for Kaplan's frontier) at a budget of ``C_flops`` FLOPs.

    ``law``: a preset name (``hoffmann2022``, ``besiroglu2024``, ``kaplan2020-ND``, ``kaplan2020-frontier``),
    a ``FitResult``, a fit JSON dict or its path. ``method``: "auto" (closed form for Chinchilla),
    "closed" or "numeric".
    """
    C = float(C_flops)
    if not (C > 0 and math.isfinite(C)):
        raise InputError(f"compute budget must be a positive number of FLOPs, got {C_flops!r}")
    form, params, label, caveats = _resolve_law(law)
    if isinstance(form, Frontier):
        c = C / PF_DAY
        at = form.at(c)
        loss = float(get_preset(form.loss_law).predict(C=c))
        return Allocation(
            C=C,
            N_opt=at["N_opt"],
            D_opt=at["D_opt"],
            loss=loss,
            B=at["B"],
            S=at["S"],
            method="Kaplan Table 6 (C_min in PF-days)",
            law=label,
            notes=[
                f"C_min = {c:.4g} PF-days; N non-embedding; B tokens; S = S_min steps; "
                f"loss = L(C_min) (kaplan2020-Cmin)"
            ],
        )
    if isinstance(form, HenighanNopt):
        c = C / PF_DAY
        n = form.at(c)
        loss = float(get_preset(form.loss_law).predict(C=c)) if form.loss_law else float("nan")
        return Allocation(
            C=C,
            N_opt=n,
            D_opt=C / (6.0 * n),
            loss=loss,
            method="Henighan Table 1 N_opt(C)",
            law=label,
            notes=[
                f"C = {c:.4g} PF-days; N non-embedding; D = C/(6N); loss = L(C) of "
                f"the domain ({form.loss_law})"
            ],
        )
    use_closed = isinstance(form, ChinchillaND) and method in ("auto", "closed")
    if method == "closed" and not isinstance(form, ChinchillaND):
        raise InputError(f"no closed form for law {form.name!r}; use method='numeric'")
    if use_closed:
        n, d = chinchilla_optimal(C, params)
        how = "closed form (Chinchilla)"
    else:
        n, d = numeric_optimal(C, form, params)
        how = "numerical minimum of L(N, C/(6N))"
    loss = float(form.predict(params, N=n, D=d))
    notes = caveats + ["C = 6 N D"]
    if isinstance(form, ChinchillaND):
        notes.append(
            f"loss bound: E = {params['E']:.4g} nats/token (irreducible term, reached only as C -> inf)"
        )
    return Allocation(C=C, N_opt=n, D_opt=d, loss=loss, method=how, law=label, notes=notes)


def kaplan_contradiction(D_e: float = 4e10, p_D: float = 0.26) -> dict[str, float]:
    """Kaplan 2020 sec. 6.3: where L(C_min) (Table 5) meets L(D(C_min)), D(C_min) = 4e10 C^0.26 (eq. 6.7).

    Returns C* (PF-days and FLOPs), D* tokens, N* (Table 6's N_opt at C*), L* nats/token. The paper quotes
    C* ~ 1e4 PF-days, N* ~ 1e12, D* ~ 1e12, L* ~ 1.7, "uncertain by an order of magnitude".
    """
    lc, ld = get_preset("kaplan2020-Cmin"), get_preset("kaplan2020-D")
    a_c, c_c = lc.params["alpha"], lc.params["C_c"]
    a_d, d_c = ld.params["alpha"], ld.params["D_c"]
    # a_c (log C_c - log C) = a_d (log D_c - log D_e - p_D log C)
    log_c = (a_d * (math.log(d_c) - math.log(D_e)) - a_c * math.log(c_c)) / (a_d * p_D - a_c)
    c = math.exp(log_c)
    d = D_e * c**p_D
    return {
        "C_pfdays": c,
        "C_flops": c * PF_DAY,
        "D": d,
        "N": KAPLAN_FRONTIER.at(c)["N_opt"],
        "L": float(lc.predict(C=c)),
    }


def gpt_infinity(C_flops: float = 1e36, law: str = "besiroglu2024") -> dict:
    """The 'GPT-infinity' question: at C FLOPs, the compute-optimal N and D and the loss, with its lower bound
    E (the irreducible loss; no amount of compute goes below it) and Kaplan's extrapolation for contrast."""
    a = allocate(C_flops, law)
    E = (
        get_preset(law).params["E"]
        if law in ("hoffmann2022", "besiroglu2024", "hoffmann2022-unrounded")
        else None
    )
    kap = allocate(C_flops, "kaplan2020-frontier")
    cstar = kaplan_contradiction()
    return {
        "C": C_flops,
        "law": law,
        "N_opt": a.N_opt,
        "D_opt": a.D_opt,
        "loss": a.loss,
        "loss_bound_E": E,
        "reducible": None if E is None else a.loss - E,
        "kaplan_loss": kap.loss,
        "kaplan_N_opt": kap.N_opt,
        "note": f"Kaplan's L(C_min) is past its own contradiction point (C* ~ {cstar['C_flops']:.1e} FLOPs) "
        f"and should not be trusted here; the Chinchilla form is bounded below by E.",
    }


# --- Approach 1: envelope of learning curves -----------------------------------------------------


@dataclass
class PowerFit:
    """y = k x^a fitted by least squares in log-log, with a 95% t-interval for a."""

    a: float
    k: float
    a_ci95: tuple[float, float]
    n: int
    r2: float
    x: np.ndarray
    y: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def predict(self, x):
        return self.k * np.asarray(x, dtype=float) ** self.a

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "k": self.k,
            "a_ci95": list(self.a_ci95),
            "n": self.n,
            "r2": self.r2,
            "warnings": list(self.warnings),
        }


def _loglog(x: np.ndarray, y: np.ndarray) -> PowerFit:
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3:
        raise FitError(f"need at least 3 points to fit N_opt ~ C^a, got {x.size}")
    lx, ly = np.log(x), np.log(y)
    res = stats.linregress(lx, ly)
    t = stats.t.ppf(0.975, x.size - 2)
    warn = []
    if np.log10(x.max() / x.min()) < 1.5:
        warn.append(
            f"C spans only {np.log10(x.max() / x.min()):.2f} decades: the exponent is poorly determined"
        )
    return PowerFit(
        a=float(res.slope),
        k=float(np.exp(res.intercept)),
        a_ci95=(float(res.slope - t * res.stderr), float(res.slope + t * res.stderr)),
        n=int(x.size),
        r2=float(res.rvalue**2),
        x=x,
        y=y,
        warnings=warn,
    )


def frontier(
    curves,
    *,
    C: str = "C",
    loss: str = "loss",
    N: str = "N",
    run: str | None = None,
    bins_per_decade: int = 10,
):
    """Lower envelope of learning curves over compute (Kaplan's L(C_min) frontier; Hoffmann Approach 1).

    ``curves``: a DataFrame with one row per logged point: cumulative C (FLOPs), loss, N and a run id
    (column ``run``; default: "run" or "run_id" when present). For each log-spaced C bin
    (``bins_per_decade``), the row with the lowest loss: returns a DataFrame with columns C, loss, N, run
    (one per bin that has data), sorted by C.
    """
    import pandas as pd

    if run is None:
        run = next((c for c in ("run", "run_id") if c in curves.columns), None)
    for col in (C, loss, N) + ((run,) if run else ()):
        if col not in curves.columns:
            raise InputError(f"frontier: missing column {col!r}; columns are {list(curves.columns)}")
    df = curves[[C, loss, N]].copy()
    df["run"] = curves[run].to_numpy() if run else np.arange(len(df))
    run = "run"
    for col in (C, loss, N):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df[np.isfinite(df[C]) & np.isfinite(df[loss]) & (df[C] > 0) & (df[N] > 0)]
    if df.empty:
        raise InputError("frontier: no rows with positive, finite C, N and loss")
    b = np.floor(np.log10(df[C].to_numpy()) * bins_per_decade).astype(int)
    df = df.assign(_bin=b)
    idx = df.groupby("_bin")[loss].idxmin()
    env = df.loc[idx, [C, loss, N, run]].rename(columns={C: "C", loss: "loss", N: "N", run: "run"})
    return env.sort_values("C").reset_index(drop=True)


def approach1(curves, **kw) -> PowerFit:
    """Hoffmann Approach 1: fit N_opt ~ C^a on the envelope points of ``frontier(curves, **kw)``."""
    env = frontier(curves, **kw)
    return _loglog(env["C"].to_numpy(), env["N"].to_numpy())


# --- Approach 2: isoFLOP parabolas ---------------------------------------------------------------


@dataclass
class IsoFlopResult:
    """Per budget the parabola minimum N_opt; then N_opt ~ C^a (and D_opt = C/(6 N_opt) ~ C^(1-a))."""

    budgets: np.ndarray
    n_opt: np.ndarray
    loss_opt: np.ndarray
    fit: PowerFit | None  # None: fewer than 3 budgets (``isoflop(..., min_budgets=1)``), no exponent
    warnings: list[str]
    n_lo: np.ndarray | None = None  # 95% delta-method interval of each parabola minimum (NaN: <= 4 sizes)
    n_hi: np.ndarray | None = None
    coef: np.ndarray | None = None  # (n_budgets, 3): loss = c2 (ln N)^2 + c1 ln N + c0 per budget

    @property
    def minima(self) -> list[dict[str, float]]:
        """Per budget: budget (FLOPs), N_opt with its 95% interval N_lo..N_hi, loss_opt (nats/token)."""
        lo = self.n_lo if self.n_lo is not None else np.full(self.budgets.size, np.nan)
        hi = self.n_hi if self.n_hi is not None else np.full(self.budgets.size, np.nan)
        return [
            {"budget": float(c), "N_opt": float(n), "N_lo": float(a), "N_hi": float(b), "loss_opt": float(lv)}
            for c, n, a, b, lv in zip(self.budgets, self.n_opt, lo, hi, self.loss_opt, strict=True)
        ]

    @property
    def a(self) -> float:
        """The exponent of N_opt ~ C^a (NaN when there were too few budgets to fit it)."""
        return self.fit.a if self.fit is not None else float("nan")

    @property
    def a_ci95(self) -> tuple[float, float]:
        return self.fit.a_ci95 if self.fit is not None else (float("nan"), float("nan"))

    def to_dict(self) -> dict:
        return {
            "budgets": self.budgets.tolist(),
            "N_opt": self.n_opt.tolist(),
            "loss_opt": self.loss_opt.tolist(),
            "minima": self.minima,
            "coef": None if self.coef is None else self.coef.tolist(),
            **(self.fit.to_dict() if self.fit is not None else {}),
            "warnings": list(self.warnings),
        }


def isoflop(
    runs, *, C: str = "C", N: str = "N", loss: str = "loss", rel_tol: float = 0.05, min_budgets: int = 3
) -> IsoFlopResult:
    """Hoffmann Approach 2. ``runs``: DataFrame of final losses with the run's budget C (FLOPs) and N.

    Runs whose C agree within ``rel_tol`` (relative) share a budget. Per budget with >= 3 sizes: fit
    loss = c2 (log N)^2 + c1 log N + c0, N_opt = exp(-c1/(2 c2)); budgets with c2 <= 0 are skipped
    (warned), and a minimum outside the sampled N range is warned as extrapolated. N_opt ~ C^a is fitted
    from 3 budgets on; ``min_budgets`` below 3 also returns the minima of fewer budgets (``fit`` None).
    """
    import pandas as pd

    for col in (C, N, loss):
        if col not in runs.columns:
            raise InputError(f"isoflop: missing column {col!r}; columns are {list(runs.columns)}")
    df = runs[[C, N, loss]].apply(pd.to_numeric, errors="coerce").dropna()
    df = df[(df[C] > 0) & (df[N] > 0) & (df[loss] > 0)].sort_values(C)
    groups: list[list[int]] = []
    last = None
    for i, c in zip(df.index, df[C].to_numpy(), strict=True):
        if last is None or c > last * (1 + rel_tol):
            groups.append([])
            last = c
        groups[-1].append(i)
    budgets, nopt, lopt, nlo, nhi, coefs, warnings = [], [], [], [], [], [], []
    for g in groups:
        sub = df.loc[g]
        if sub[N].nunique() < 3:
            continue
        c = float(np.exp(np.mean(np.log(sub[C]))))
        lx = np.log(sub[N].to_numpy())
        yv = sub[loss].to_numpy()
        c2, c1, c0 = np.polyfit(lx, yv, 2)
        sd = float("nan")
        if lx.size > 4:  # delta method on the parabola's covariance: x0 = -c1 / (2 c2)
            _, cov = np.polyfit(lx, yv, 2, cov=True)
            grad = np.array([c1 / (2 * c2 * c2), -1 / (2 * c2)])
            sd = float(np.sqrt(max(grad @ cov[:2, :2] @ grad, 0.0)))
        if c2 <= 0:
            warnings.append(f"budget C={c:.3g}: the parabola opens downward; skipped")
            continue
        x0 = -c1 / (2 * c2)
        if x0 < lx.min() or x0 > lx.max():
            warnings.append(
                f"budget C={c:.3g}: N_opt {np.exp(x0):.3g} lies outside the sampled sizes (extrapolated)"
            )
        budgets.append(c)
        nopt.append(float(np.exp(x0)))
        nlo.append(float(np.exp(x0 - 1.96 * sd)))
        nhi.append(float(np.exp(x0 + 1.96 * sd)))
        lopt.append(float(c0 - c1 * c1 / (4 * c2)))
        coefs.append((float(c2), float(c1), float(c0)))
    need = max(1, min_budgets)
    if len(budgets) < need:
        raise FitError(f"isoflop: need {need} or more budgets with >= 3 model sizes each, got {len(budgets)}")
    pf = _loglog(np.array(budgets), np.array(nopt)) if len(budgets) >= 3 else None
    if pf is None:
        warnings.append(f"{len(budgets)} budget(s): N_opt ~ C^a needs at least 3, so no exponent")
    return IsoFlopResult(
        budgets=np.array(budgets),
        n_opt=np.array(nopt),
        loss_opt=np.array(lopt),
        fit=pf,
        warnings=warnings + (pf.warnings if pf is not None else []),
        n_lo=np.array(nlo),
        n_hi=np.array(nhi),
        coef=np.array(coefs),
    )
