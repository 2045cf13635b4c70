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
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.approaches import IsoFlopResult, PowerFit, approach1, frontier, isoflop  # noqa: F401
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

Interval = tuple[float, float]


@dataclass
class Allocation:
    """Compute-optimal split of C FLOPs: N_opt params, D_opt tokens, loss (nats/token); B tokens, S steps.

    From a fit with bootstrap samples every number a user acts on has a 95 % interval (``*_ci``): each
    bootstrap parameter vector's own optimum for N_opt and D_opt, and for the loss the interval of a new
    run trained at (N_opt, D_opt) (``FitResult.predict_interval``: the parameter spread plus the fit's
    run-to-run scatter). ``a`` is the exponent of N_opt ~ C^a at C, ``tokens_per_param`` D_opt / N_opt.
    ``refused`` says why the numbers must not be acted on (a fit that did not converge, a parameter at a
    bound or not identified, no bootstrap, or a loss below an irreducible loss fitted elsewhere); they are
    kept for inspection, and the CLI, the study summary and the report print the reason instead.
    """

    C: float
    N_opt: float
    D_opt: float
    loss: float
    B: float | None = None
    S: float | None = None
    method: str = ""
    law: str = ""
    notes: list[str] = field(default_factory=list)
    N_opt_ci: Interval | None = None
    D_opt_ci: Interval | None = None
    loss_ci: Interval | None = None
    a: float | None = None
    a_ci: Interval | None = None
    tokens_per_param_ci: Interval | None = None
    n_samples: int = 0
    refused: str | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.D_opt / self.N_opt

    @property
    def supported(self) -> bool:
        return self.refused is None

    def to_dict(self) -> dict:
        d = {
            "C": self.C,
            "N_opt": self.N_opt,
            "D_opt": self.D_opt,
            "loss": self.loss,
            "method": self.method,
            "law": self.law,
            "notes": list(self.notes),
            "tokens_per_param": self.tokens_per_param,
            "a": self.a,
            "n_samples": self.n_samples,
            "supported": self.supported,
            "refused": self.refused,
        }
        for k in ("N_opt_ci", "D_opt_ci", "loss_ci", "a_ci", "tokens_per_param_ci"):
            v = getattr(self, k)
            d[k] = None if v is None else [float(v[0]), float(v[1])]
        if self.B is not None:
            d["B"] = self.B
        if self.S is not None:
            d["S"] = self.S
        return d

    def lines(self) -> list[str]:
        """The allocation as printed lines: each number with its 95 % interval, or the refusal."""
        head = f"C = {self.C:.4g} FLOPs ({self.law}; {self.method})"
        if self.refused:
            return [head, f"REFUSED: {self.refused}"]
        d = self.to_dict()
        out = [head, *allocation_lines(d)]
        if self.a is not None:
            out.append(f"a     {interval_text(self.a, d['a_ci'], '.3f')} (N_opt ~ C^a)")
        if self.n_samples:
            out.append(f"[low, high]: 95 % bootstrap intervals ({self.n_samples} refits)")
        return out


def interval_text(x: float, ci, fmt: str) -> str:
    """``x [low, high]`` in format ``fmt`` (just ``x`` without an interval)."""
    return f"{x:{fmt}}" + ("" if ci is None else f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]")


def allocation_lines(a: dict[str, Any], indent: str = "") -> list[str]:
    """N_opt, D_opt, D/N and the loss of an allocation dict (``Allocation.to_dict()`` keys; the loss may be
    refused, ``loss_refused``), each with its interval: the lines ``Allocation.lines`` and the study's
    summary (``Consensus.lines_of``) print."""
    tpp = interval_text(a["tokens_per_param"], a.get("tokens_per_param_ci"), ".3g")
    out = [
        f"{indent}N_opt {interval_text(a['N_opt'], a.get('N_opt_ci'), '.4g')} parameters",
        f"{indent}D_opt {interval_text(a['D_opt'], a.get('D_opt_ci'), '.4g')} tokens",
        f"{indent}D/N   {tpp} tokens per parameter",
    ]
    if a.get("loss") is not None:
        out.append(f"{indent}loss  {interval_text(a['loss'], a.get('loss_ci'), '.4f')} nats/token")
    elif a.get("loss_refused"):
        out.append(f"{indent}loss  REFUSED: {a['loss_refused']}")
    return out


def _resolve_law(law) -> tuple[Form | Frontier, dict[str, float], str, list[str], Any]:
    """A preset name, Preset, FitResult, fit JSON dict or path to it -> (form or frontier, params, label,
    caveats, the FitResult or None). The caveats carry a fit's own verdict (non-convergence, warnings)
    into what is made of it; a dict without a "converged" key (hand-written parameters, one bootstrap
    row) is a law like a preset, with no verdict and no FitResult."""
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
            return KAPLAN_FRONTIER, {}, KAPLAN_FRONTIER.name, [], None
        if law in HENIGHAN_NOPT:
            return HENIGHAN_NOPT[law], {}, law, [], None
        law = get_preset(law)
    if isinstance(law, (Frontier, HenighanNopt)):
        return law, {}, law.name, [], None
    if isinstance(law, Preset):
        return law.form, dict(law.params), law.name, [], None
    if isinstance(law, Mapping):
        has_verdict = "converged" in law
        law = FitResult.from_dict(law)
        if not has_verdict:
            return law.form, dict(law.params), f"given parameters ({law.form.name})", [], None
    if isinstance(law, FitResult):
        caveats = [] if law.converged else ["CAUTION: the fit this allocation comes from did not converge"]
        caveats += [f"fit warning: {w}" for w in law.warnings]
        return law.form, dict(law.params), f"fit ({law.form.name})", caveats, law
    raise InputError(f"cannot allocate with {law!r}: give a preset name, a FitResult or a fit JSON")


def chinchilla_optimal(C: float, p: Mapping[str, float]) -> tuple[float, float]:
    """Closed-form (N_opt, D_opt) for E + A/N^alpha + B/D^beta under C = 6ND (Hoffmann 2022, eq. 4)."""
    return ChinchillaND().optimal_split(C, p)


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


def allocate(C_flops: float, law="hoffmann2022", method: str = "auto", level: float = 0.95) -> Allocation:
    """Compute-optimal N, D (and B, S for Kaplan's frontier) at a budget of ``C_flops`` FLOPs.

    ``law``: a preset name (``hoffmann2022``, ``besiroglu2024``, ``kaplan2020-ND``, ``kaplan2020-frontier``),
    a ``FitResult``, a fit JSON dict or its path. ``method``: "auto" (closed form for Chinchilla),
    "closed" or "numeric". From a fit, ``level`` intervals come from its bootstrap samples and
    ``refused`` is set when the fit cannot support the answer (``FitResult.support_problems``).
    """
    C = float(C_flops)
    if not (C > 0 and math.isfinite(C)):
        raise InputError(f"compute budget must be a positive number of FLOPs, got {C_flops!r}")
    form, params, label, caveats, fitres = _resolve_law(law)
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
            a=form.p_N,
            notes=[
                f"C_min = {c:.4g} PF-days; N non-embedding; B tokens; S = S_min steps; "
                f"loss = L(C_min) (kaplan2020-Cmin)",
                PUBLISHED_NOTE,
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
                f"the domain ({form.loss_law})",
                PUBLISHED_NOTE,
            ],
        )
    if set(form.variables) != {"N", "D"}:
        raise InputError(f"law {form.name!r} is not a function of N and D: no compute-optimal split")
    closed = type(form).optimal_split is not Form.optimal_split  # the form has a closed form
    use_closed = closed and method in ("auto", "closed")
    if method == "closed" and not closed:
        raise InputError(f"no closed form for law {form.name!r}; use method='numeric'")
    optimum = form.optimal_split if use_closed else (lambda c, p: numeric_optimal(c, form, p))
    how = f"closed form ({form.name})" if use_closed else "numerical minimum of L(N, C/(6N))"
    n, d = optimum(C, params)
    out = Allocation(
        C=C,
        N_opt=n,
        D_opt=d,
        loss=float(form.predict(params, N=n, D=d)),
        method=how,
        law=label,
        notes=caveats + ["C = 6 N D"],
        a=_exponent(optimum, C, params),
    )
    floor = form.irreducible(params)
    if floor is not None:
        out.notes.append(
            f"loss bound: E = {floor:.4g} nats/token (irreducible term, reached only as C -> inf)"
        )
    if fitres is None:
        out.notes.append(PUBLISHED_NOTE if label == getattr(law, "name", law) else GIVEN_NOTE)
        return out
    problems = fitres.support_problems()
    if fitres.samples is not None and len(fitres.samples) >= 2:
        _intervals(out, fitres, optimum, level)
    if problems:
        out.refused = "; ".join(problems)
    return out


PUBLISHED_NOTE = "a published law: no interval (its source's uncertainty is not modelled here)"
GIVEN_NOTE = "parameters given without a fit: no interval"


def _exponent(optimum, C: float, params) -> float:
    """d log N_opt / d log C at C (central difference over a factor of 1.01)."""
    lo, hi = optimum(C / 1.01, params)[0], optimum(C * 1.01, params)[0]
    return math.log(hi / lo) / (2 * math.log(1.01))


def _intervals(out: Allocation, fitres, optimum, level: float) -> None:
    """Fill the allocation's intervals from the fit's bootstrap samples (each sample's own optimum)."""
    names = fitres.form.param_names
    ns, as_ = [], []
    for s in fitres.samples:
        p = dict(zip(names, map(float, s), strict=True))
        try:
            ns.append(optimum(out.C, p)[0])
            as_.append(_exponent(optimum, out.C, p))
        except (InputError, FitError):  # a sample without a trade-off (an exponent at 0): no optimum
            continue
    q = 100 * (1 - level) / 2
    if len(ns) >= 2:
        ns_a = np.array(ns)
        n_lo, n_hi = np.percentile(ns_a, [q, 100 - q])
        out.N_opt_ci = (float(n_lo), float(n_hi))
        out.D_opt_ci = (out.C / (6 * n_hi), out.C / (6 * n_lo))
        tpp = out.C / (6 * ns_a * ns_a)
        out.tokens_per_param_ci = tuple(float(v) for v in np.percentile(tpp, [q, 100 - q]))
        out.a_ci = tuple(float(v) for v in np.percentile(as_, [q, 100 - q]))
    lo, hi = fitres.predict_interval(level=level, N=np.array([out.N_opt]), D=np.array([out.D_opt]))
    out.loss_ci = (float(lo[0]), float(hi[0]))
    out.n_samples = len(ns)
    if len(ns) < len(fitres.samples):
        gone = len(fitres.samples) - len(ns)
        out.notes.append(f"{gone} bootstrap samples have no optimum and are left out")


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
