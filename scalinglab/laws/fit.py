"""Fit a scaling-law form to runs: multi-start Huber fit, bootstrap intervals, diagnostics, back-test.

``fit(form, data)`` minimises the summed Huber loss (delta = 1e-3) of log y - log yhat (Hoffmann 2022 as
replicated by Besiroglu et al. 2024) from every point of the form's start grid (4,500 for Chinchilla):

1. all starts at once, batched Levenberg-Marquardt in float32 (``optim.batched_lm``);
2. the best 32 starts continue in float64 to a relative gain below 1e-12;
3. the best is polished with L-BFGS-B (analytic gradient, objective rescaled to ~1, ftol 1e-15) unless it is
   already stationary (relative projected gradient below ``GRAD_RTOL``);
4. the other starts within 1% of the best that are not yet within ``OPT_RTOL`` of the polished optimum
   continue in float64 like stage 2 (the count of starts at the optimum is that of refining them all).

A start "reached the optimum" when its final objective is within ``OPT_RTOL`` (1e-6, relative) of the
polished best. The verdict ``converged`` needs the polish's projected gradient to be small *and* a fresh
float64 LM run from the answer to find no lower objective. Every problem (no convergence, a parameter at
a bound, |corr| > 0.95 between exponents, a variable spanning under 1.5 decades, failed bootstrap refits)
is written into ``warnings`` and shown by ``summary()``: never a silent number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws import optim
from scalinglab.laws.data import decades, prepare
from scalinglab.laws.forms import Form, complete_variables, form_class, get_form

OPT_RTOL = 1e-6  # a start reached the optimum if its objective is within this relative distance of the best
GRAD_RTOL = 1e-4  # converged if max |projected gradient| / objective is below this (theta coordinates)
CORR_MAX = 0.95  # |corr| between two exponents above this: not separately identifiable
MIN_DECADES = 1.5  # a variable spanning fewer decades than this cannot pin its exponent down
POOR_R2 = 0.5  # R^2 of log y below this: a poor fit, warned
REFINE_TOP = 32  # stage 2 refines the best this many starts first (the optimum comes from them)


@dataclass
class FitResult:
    """A fitted law: parameters, fit quality, convergence verdict, optional bootstrap uncertainty."""

    form: Form
    params: dict[str, float]
    theta: np.ndarray
    objective: float
    n_points: int
    residuals: np.ndarray  # log y - log yhat at the data
    r2_log: float  # R^2 of log y
    converged: bool
    message: str
    n_starts: int
    n_at_optimum: int
    delta: float = 1e-3
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    se: dict[str, float] | None = None
    ci95: dict[str, tuple[float, float]] | None = None
    corr: dict[str, dict[str, float]] | None = None
    n_bootstrap: int = 0
    seed: int | None = None
    samples: np.ndarray | None = None  # (n_bootstrap, n_params) in param space, not serialised by default
    at_bound: list[str] = field(default_factory=list)  # parameters at an end of their search range
    not_identified: list[str] = field(default_factory=list)  # parameters the data do not pin down
    interval_at_bound: list[str] = field(default_factory=list)  # bootstrap interval reaching a search bound
    bootstrap_method: str = ""  # "parametric" or "pairs" (``bootstrap_fit``)

    @property
    def law(self) -> str:
        return self.form.name

    def conf_int(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile interval of every parameter from the bootstrap samples, at ``level`` (0 < level < 1)."""
        if not 0 < level < 1:
            raise InputError(f"level={level!r}: a probability between 0 and 1")
        if self.samples is None or len(self.samples) < 2:
            raise FitError("intervals need a bootstrap: fit(..., bootstrap=K)")
        q = 100 * (1 - level) / 2
        lo, hi = np.percentile(self.samples, [q, 100 - q], axis=0)
        return {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(self.form.param_names)}

    def support_problems(self) -> list[str]:
        """Why this fit cannot support a number a user acts on (an allocation, a loss at a budget): it did
        not converge, a parameter sits at a bound or is not identified, or there is no bootstrap (so no
        interval). Empty when the fit supports one."""
        out = []
        if not self.converged:
            out.append("the fit did not converge")
        for k in self.at_bound:
            out.append(f"{k} = {self.params[k]:.4g} is at a bound of its search range")
        for k in self.not_identified:
            if k not in self.at_bound:
                out.append(f"{k} is not identified by these runs")
        for k in self.interval_at_bound:
            if k not in self.at_bound and k not in self.not_identified:
                lo, hi = (self.ci95 or {}).get(k, (float("nan"), float("nan")))
                out.append(f"{k}'s 95 % interval [{lo:.3g}, {hi:.3g}] runs into the end of its search range: "
                           "the runs do not bound it")
        if self.samples is None or len(self.samples) < 2:
            out.append("the fit has no bootstrap samples, so nothing it predicts has an interval "
                       "(fit with bootstrap=K; `scalinglab fit --bootstrap 1000 --json`)")
        elif self.ci95 and not all(np.isfinite(v).all() for v in self.ci95.values()):
            out.append("a parameter's bootstrap interval is not finite")
        return out

    def predict(self, **variables) -> np.ndarray:
        """The fitted law at the given variables (same units as the data)."""
        return self.form.predict(self.params, **variables)

    def predict_interval(self, level: float = 0.95, noise: bool = True, **variables):
        """(low, high) prediction interval from the bootstrap fits; needs ``bootstrap > 0``.

        Each bootstrap parameter vector predicts; with ``noise`` a log residual of the fit drawn at random
        (seeded; rescaled by sqrt(n / (n - p)) for the p fitted parameters) is added to each, so the interval
        is for a new observation, not only for the mean curve.
        """
        if self.samples is None or len(self.samples) == 0:
            raise FitError("prediction intervals need a bootstrap: fit(..., bootstrap=K)")
        names = self.form.param_names
        variables = complete_variables(self.form, variables)
        arrs = np.broadcast_arrays(*[np.asarray(variables[v], dtype=float) for v in self.form.variables])
        shape = arrs[0].shape
        logx = {v: np.log(a.ravel()) for v, a in zip(self.form.variables, arrs, strict=True)}
        thetas = np.array([self.form.to_theta(dict(zip(names, s, strict=True))) for s in self.samples])
        with np.errstate(over="ignore", invalid="ignore"):
            lp = self.form.log_eval(thetas, logx, jac=False)  # (B, m)
        if noise and self.residuals.size:
            # the fit's log residuals, rescaled by sqrt(n / (n - p)): the fit absorbed p degrees of freedom
            n, p = self.residuals.size, len(names)
            r = self.residuals * np.sqrt(n / (n - p)) if n > p else self.residuals
            rng = np.random.default_rng(0 if self.seed is None else self.seed + 1)
            lp = lp + rng.choice(r, size=lp.shape)
        q = (1.0 - level) / 2.0
        lo, hi = np.nanquantile(np.exp(lp), [q, 1.0 - q], axis=0)
        return lo.reshape(shape), hi.reshape(shape)

    def bootstrap_results(self) -> list[dict[str, Any]]:
        """Each bootstrap refit as a minimal fit dict (law, var, params) that ``allocate`` accepts."""
        if self.samples is None:
            return []
        names = self.form.param_names
        var = getattr(self.form, "var", None)
        return [
            {"law": self.form.name, "var": var, "params": dict(zip(names, map(float, s), strict=True))}
            for s in self.samples
        ]

    def summary(self) -> str:
        """A readable table: parameters (SE and 95% interval when bootstrapped), fit quality, warnings."""
        lines = [f"Law {self.form.name}: {self.form.description}   ({self.form.units})"]
        lines.append(
            f"points {self.n_points}   objective (summed Huber, delta={self.delta:g}) {self.objective:.6e}"
            f"   R^2(log) {self.r2_log:.4f}"
        )
        lines.append(
            f"converged: {'yes' if self.converged else 'NO'} ({self.message}); "
            f"{self.n_at_optimum} of {self.n_starts} starts reached the optimum"
        )
        head = f"{'param':>10} {'estimate':>13}"
        if self.se:
            head += f" {'SE':>11} {'95% low':>12} {'95% high':>12}"
        lines.append(head)
        for k in self.form.param_names:
            row = f"{k:>10} {self.params[k]:>13.6g}"
            if self.se:
                lo, hi = self.ci95[k]
                row += f" {self.se[k]:>11.4g} {lo:>12.6g} {hi:>12.6g}"
            lines.append(row)
        if self.n_bootstrap:
            how = f"{self.bootstrap_method} " if self.bootstrap_method else ""
            lines.append(f"bootstrap: {self.n_bootstrap} {how}resamples, seed {self.seed}, percentile CIs")
        for n in self.notes:
            lines.append(f"note: {n}")
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        return "\n".join(lines)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """JSON-able dict (the ``scalinglab fit --json`` output); ``from_dict`` reads it back."""
        d: dict[str, Any] = {
            "law": self.form.name,
            "var": getattr(self.form, "var", None),
            "description": self.form.description,
            "params": dict(self.params),
            "theta": [float(t) for t in self.theta],
            "converged": bool(self.converged),
            "message": self.message,
            "objective": self.objective,
            "delta": self.delta,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "n_at_optimum": self.n_at_optimum,
            "r2_log": self.r2_log,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "residuals": [float(r) for r in self.residuals],
            "n_bootstrap": self.n_bootstrap,
            "seed": self.seed,
            "form": self.form.name,
            "at_bound": list(self.at_bound),
            "not_identified": list(self.not_identified),
            "interval_at_bound": list(self.interval_at_bound),
            "bootstrap_method": self.bootstrap_method,
        }
        if self.se is not None:
            d["se"] = dict(self.se)
            d["ci95"] = {k: [float(v[0]), float(v[1])] for k, v in self.ci95.items()}
            d["corr"] = self.corr
        if samples and self.samples is not None:
            d["samples"] = self.samples.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitResult:
        """A fit dict (``to_dict``; a ``study fit --json`` row, whose "law" is the study's name such as
        "L(N,D)" and "form" the form's) back into a FitResult; a missing or non-numeric value is one
        InputError naming it."""
        if not isinstance(d, Mapping):
            raise InputError(f"a fit JSON must be an object, got {type(d).__name__}")
        name = d.get("form") or d.get("law")
        if name is None:
            raise InputError("fit JSON is missing key 'law' (or 'form')")
        form = get_form(str(name), var=d.get("var"))
        raw = d.get("params")
        if not isinstance(raw, Mapping):
            raise InputError("fit JSON is missing key 'params' (an object of parameter values)")
        params = {}
        for k in form.param_names:
            if k not in raw:
                raise InputError(f"fit JSON: parameter {k!r} of law {form.name!r} is missing")
            params[k] = _finite(raw[k], f"parameter {k!r}")
        names = form.param_names
        samples = _array(d, "samples", ndim=2)
        if samples is not None and samples.shape[1:] != (len(names),):
            raise InputError(f"fit JSON: samples must be rows of {len(names)} values {list(names)}")
        ci = d.get("ci95")
        try:
            se = None if d.get("se") is None else {k: float(d["se"][k]) for k in names}
            ci95 = None if ci is None else {k: (float(ci[k][0]), float(ci[k][1])) for k in names}
            return cls(
                form=form,
                params=params,
                theta=form.to_theta(params),
                objective=float(d.get("objective", float("nan"))),
                n_points=int(d.get("n_points", 0)),
                residuals=_array(d, "residuals", ndim=1) if d.get("residuals") else np.zeros(0),
                r2_log=float(d["r2_log"]) if d.get("r2_log") is not None else float("nan"),
                converged=bool(d.get("converged", False)),
                message=str(d.get("message", "")),
                n_starts=int(d.get("n_starts", 0)),
                n_at_optimum=int(d.get("n_at_optimum", 0)),
                delta=float(d.get("delta", 1e-3)),
                warnings=[str(w) for w in d.get("warnings") or []],
                notes=[str(n) for n in d.get("notes") or []],
                se=se,
                ci95=ci95,
                corr=d.get("corr"),
                n_bootstrap=int(d.get("n_bootstrap") or (0 if samples is None else len(samples))),
                seed=d.get("seed"),
                samples=samples,
                at_bound=[str(k) for k in d.get("at_bound") or []],
                not_identified=[str(k) for k in d.get("not_identified") or []],
                interval_at_bound=[str(k) for k in d.get("interval_at_bound") or []],
                bootstrap_method=str(d.get("bootstrap_method") or ""),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise InputError(f"fit JSON: a malformed field ({type(e).__name__}: {e})") from None


def _array(d: Mapping[str, Any], key: str, ndim: int) -> np.ndarray | None:
    """A numeric array field of a fit JSON (None when absent); ragged or non-numeric: an InputError."""
    v = d.get(key)
    if v is None:
        return None
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"fit JSON: {key} must be numbers (rows of equal length)") from None
    if a.ndim != ndim:
        raise InputError(f"fit JSON: {key} must be a {ndim}-dimensional array of numbers")
    return a


def _finite(v, what: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"fit JSON: {what} = {v!r} is not a number") from None
    if not np.isfinite(x):
        raise InputError(f"fit JSON: {what} = {v!r} is not finite")
    return x


def _resolve_form(form: Form | str, data, var: str | None) -> Form:
    if isinstance(form, Form):
        return form
    if var is None and form_class(str(form)).free_variable:
        names = list(data.columns) if hasattr(data, "columns") else list(data.keys())
        cands = [v for v in ("N", "D", "C", "S") if v in names]
        if len(cands) != 1:
            raise InputError(f"law {form!r} has one variable: say which (var=...), columns are {names}")
        var = cands[0]
    return get_form(form, var=var)


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, (int, float)) and np.isfinite(delta) and delta > 0):
        raise InputError(f"delta={delta!r}: the Huber threshold must be a finite number > 0 (default 1e-3)")


def _starts(form: Form, logx, logy, starts, seed: int) -> np.ndarray:
    grid = form.start_grid(logx, logy)
    if starts is None:
        return grid
    if isinstance(starts, (int, np.integer)):
        if starts < 1:
            raise InputError(f"starts={starts}: need at least 1 (None = the full grid of {len(grid)})")
        if starts >= len(grid):
            return grid
        rng = np.random.default_rng(seed)
        return grid[np.sort(rng.choice(len(grid), int(starts), replace=False))]
    if isinstance(starts, Mapping):
        starts = [starts]
    rows = [form.to_theta(s) if isinstance(s, Mapping) else np.asarray(s, dtype=float) for s in starts]
    if not rows:
        raise InputError("starts is empty: give at least one start, or None for the full grid")
    out = np.atleast_2d(np.array(rows, dtype=float))
    if out.shape[1] != len(form.theta_names):
        raise InputError(f"starts for {form.name!r} need {len(form.theta_names)} values {form.theta_names}")
    return out


def _multistart(form: Form, theta0: np.ndarray, logx, logy, delta: float):
    """Stages 1-3 of the module docstring; returns (polish result, final objectives of every start)."""
    with optim.blas_single_thread():
        return _multistart_inner(form, theta0, logx, logy, delta)


def _multistart_inner(form: Form, theta0: np.ndarray, logx, logy, delta: float):
    a = optim.batched_lm(form, theta0, logx, logy, delta, ftol=1e-6, dtype=np.float32)
    f = optim.objective(form, a.theta, logx, logy, delta)  # float64 re-evaluation
    theta = a.theta.copy()
    best = np.min(f)
    if not np.isfinite(best):
        raise FitError(f"no start of law {form.name!r} gives a finite objective on this data")
    near = f <= best * 1.01
    # float64 to a relative gain below 1e-12: first the best few (they find the optimum, polished next)...
    top = np.argsort(f, kind="stable")[: min(REFINE_TOP, int(near.sum()))]
    _refine(form, theta, f, top, logx, logy, delta)
    pol = optim.polish(form, theta[int(np.argmin(f))], logx, logy, delta, stationary=GRAD_RTOL)
    # ...then the other near starts, only those not already within OPT_RTOL of the optimum: refining one
    # that is can only lower its objective, so it counts as at the optimum either way
    rest = near.copy()
    rest[top] = False
    rest &= f > pol.f * (1 + OPT_RTOL)
    _refine(form, theta, f, np.flatnonzero(rest), logx, logy, delta)
    return pol, f


def _refine(form: Form, theta: np.ndarray, f: np.ndarray, rows: np.ndarray, logx, logy, delta: float) -> None:
    """Stage 2 on ``rows``, in place: float64 LM to a relative gain below 1e-12."""
    if rows.size:
        b = optim.batched_lm(form, theta[rows], logx, logy, delta, ftol=1e-12, max_iter=200)
        theta[rows], f[rows] = b.theta, b.f


def _verdict(form: Form, pol: optim.PolishResult, logx, logy, delta: float) -> tuple[bool, str]:
    """Converged when no local method lowers the objective: a further LM run must not (relative 1e-8), and
    either the projected gradient is small (GRAD_RTOL) or, where it is not, a derivative-free Nelder-Mead
    probe finds no descent either. The second case is a kink of the Huber objective: with residuals beyond
    delta it is nearly piecewise linear, and its minimum need not have a small gradient."""
    scale = optim.objective_scale(pol.f, logy.size)
    again = optim.batched_lm(form, pol.theta[None, :], logx, logy, delta, ftol=1e-14, max_iter=50)
    improved = (pol.f - again.f[0]) / scale
    info = f"relative projected gradient {pol.grad_norm:.1e}"
    if pol.nit:
        info += f"; L-BFGS-B stopped with: {pol.message.strip() or 'no message'}"
    if improved >= 1e-8:
        return False, f"a further LM run lowered the objective by {improved:.1e} (relative); {info}"
    if pol.grad_norm < GRAD_RTOL:
        return True, f"stationary point: {info}"
    probe = optim.descent_probe(form, pol.theta, logx, logy, delta)
    if probe >= 1e-8:
        return False, f"a Nelder-Mead probe lowered the objective by {probe:.1e} (relative); {info}"
    return True, f"minimum at a kink of the Huber objective (neither LM nor Nelder-Mead lowers it); {info}"


def _at_bounds(form: Form, theta: np.ndarray) -> dict[str, str]:
    """Parameters whose search coordinate sits at a bound, with a warning naming the law's own parameter
    and value (the coordinates are internal, e.g. e = log L_inf)."""
    out = {}
    params = form.to_params(theta)
    for name, pname, t, (lo, hi) in zip(
        form.theta_names, form.param_names, theta, form.theta_bounds(), strict=True
    ):
        tol = 1e-6 * (hi - lo)
        if t <= lo + tol or t >= hi - tol:
            side = "lower" if t <= lo + tol else "upper"
            coord = "" if name == pname else f" (search coordinate {name} = {t:g})"
            out[pname] = (
                f"parameter {pname} = {params[pname]:.4g} is at the {side} end of its search range{coord}: "
                "the optimum lies outside the allowed range or the parameter is not identified"
            )
    return out


def _local_corr(form: Form, theta: np.ndarray, logx) -> np.ndarray | None:
    """Correlation of the theta estimates from the Gauss-Newton matrix (J^T J)^-1 (no bootstrap)."""
    _, J = form.log_eval(theta[None, :], logx)
    JTJ = J[0].T @ J[0]
    try:
        cov = np.linalg.inv(JTJ)
    except np.linalg.LinAlgError:
        return None
    d = np.sqrt(np.abs(np.diag(cov)))
    if not np.all(np.isfinite(d)) or np.any(d == 0):
        return None
    return cov / np.outer(d, d)


def _identifiability(form: Form, theta, logx, variables, y, corr_params: dict | None):
    """(warnings, names of parameters that are not identified) about what the data can pin down."""
    out, unidentified = [], []
    # B_crit(L): losses never span decades; what pins 1/alpha_B down is the range of B itself
    spans = {form.target: y} if form.target != "loss" else variables
    for v, x in spans.items():
        dec = decades(x)
        if dec < MIN_DECADES:
            out.append(
                f"{v} spans only {dec:.2f} decades (< {MIN_DECADES}): its exponent is poorly identified"
            )
    _, J = form.log_eval(np.asarray(theta, dtype=float)[None, :], logx)
    sens = np.max(np.abs(J[0]), axis=0)
    for name, pname, col in zip(form.theta_names, form.param_names, sens, strict=True):
        if col < 1e-3:
            unidentified.append(pname)
            coord = "" if name == pname else f" (its search coordinate {name})"
            out.append(
                f"parameter {pname} barely changes the prediction anywhere in the data "
                f"(max |d log y/d {name}| = {col:.1e}{coord}): it is not identified by these data"
            )
    for names in _null_directions(form, J[0]):
        unidentified += [k for k in names if k not in unidentified]
        out.append(
            f"parameters {', '.join(names)} are not separately identified: the prediction is unchanged "
            "along a combination of them (the data do not vary enough, e.g. two token counts for E, B, "
            "beta); only that combination is pinned down"
        )
    exps = list(form.exponents)
    if corr_params is not None:
        for i, a in enumerate(exps):
            for b in exps[i + 1 :]:
                c = corr_params.get(a, {}).get(b)
                if c is not None and abs(c) > CORR_MAX:
                    out.append(
                        f"|corr({a}, {b})| = {abs(c):.3f} > {CORR_MAX} (bootstrap): not separately "
                        f"identifiable"
                    )
    else:
        C = _local_corr(form, theta, logx)
        if C is None:
            out.append("the Jacobian is singular at the optimum: some parameters are not identifiable")
        else:
            idx = {n: i for i, n in enumerate(form.theta_names)}
            for i, a in enumerate(exps):
                for b in exps[i + 1 :]:
                    c = C[idx[a], idx[b]]
                    if abs(c) > CORR_MAX:
                        out.append(
                            f"|corr({a}, {b})| = {abs(c):.3f} > {CORR_MAX} (local estimate): not "
                            f"separately identifiable"
                        )
    return out, unidentified


NULL_RTOL = 1e-8  # smallest / largest singular value of the column-scaled Jacobian below this: degenerate
NULL_WEIGHT = 0.1  # a parameter takes part in a null direction when its share of the direction is above this


def _null_directions(form: Form, J: np.ndarray) -> list[list[str]]:
    """Structural non-identifiability: directions in parameter space along which the prediction does not
    change at all at the optimum (singular values of the column-scaled (n, p) Jacobian below NULL_RTOL of the
    largest), each as the names of the parameters taking part in it. A flat valley the optimiser can stop
    anywhere in (and a bootstrap started at one point of it need not leave), which no bound or per-parameter
    check sees: with runs at two token counts, E + B/D^beta is pinned at two values by three parameters.
    Well-posed ladders sit around 5e-3 (the demo, Epoch's runs, the synthetic ladders); such a valley at
    1e-16."""
    norms = np.linalg.norm(J, axis=0)
    if not np.all(np.isfinite(J)) or np.any(norms == 0):
        return []
    _, sv, vt = np.linalg.svd(J / norms, full_matrices=False)
    out = []
    for k in np.flatnonzero(sv < NULL_RTOL * sv[0]):
        out.append([p for p, w in zip(form.param_names, vt[k], strict=True) if abs(w) >= NULL_WEIGHT])
    return [names for names in out if names]


BOOTSTRAPS = ("parametric", "pairs")


def bootstrap_fit(
    form: Form,
    theta_hat: np.ndarray,
    logx,
    logy,
    delta: float,
    n_boot: int,
    seed: int,
    n_perturbed: int = 1,
    method: str = "parametric",
) -> tuple[np.ndarray, np.ndarray]:
    """Refit ``n_boot`` bootstrap data sets (seeded) all at once; returns (thetas, converged).

    - ``parametric`` (the default): the design (the runs' N, D, ...) fixed, the losses redrawn as
      log y* = log yhat + eps, eps ~ Normal(0, s^2) with s the SD of the fit's log residuals rescaled by
      sqrt(n / (n - p)) for the p fitted parameters. The sizes of a ladder are chosen by whoever planned it;
      what is random is the measured loss.
    - ``pairs``: the runs resampled with replacement (nonparametric; robust to a wrong noise model, but
      with a ladder's 20-40 runs its intervals are too wide: each resample leaves out a third of the runs).

    On ladders drawn from a known Chinchilla law with Epoch-like (heavy-tailed) noise, 150 replicates
    (``laws.calibration``), the 95 % percentile intervals of E, alpha, beta and beta/(alpha+beta) held the
    truth in 94 / 91 / 96 / 97 % of replicates with ``parametric``, 99 / 98 / 99 / 100 % with ``pairs``, and
    93 / 87 / 95 / 94 % when the residuals themselves are resampled (why that is not offered).

    Each data set is refitted from the full-data optimum and from ``n_perturbed`` jittered copies of it
    (5% of |theta|, at least 0.02); the best start per data set is kept.
    """
    if method not in BOOTSTRAPS:
        raise InputError(f"bootstrap method {method!r}: choose one of {', '.join(BOOTSTRAPS)}")
    n = logy.size
    rng = np.random.default_rng(seed)
    k = 1 + n_perturbed
    W = ly = None
    if method == "pairs":
        idx = rng.integers(0, n, size=(n_boot, n))
        W = np.zeros((n_boot, n))
        np.add.at(W, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
        W = np.repeat(W, k, axis=0)
    else:
        fitted = form.log_eval(theta_hat[None, :], logx, jac=False)[0]
        p = theta_hat.size
        s = float(np.std(logy - fitted) * np.sqrt(n / max(n - p, 1)))
        ly = np.repeat(fitted[None, :] + rng.normal(0.0, s, size=(n_boot, n)), k, axis=0)
    starts = np.repeat(theta_hat[None, :], n_boot * k, axis=0)
    scale = np.maximum(np.abs(theta_hat), 0.02) * 0.05
    jitter = rng.normal(size=(n_boot, n_perturbed, theta_hat.size)) * scale
    starts = starts.reshape(n_boot, k, -1)
    starts[:, 1:] += jitter
    starts = starts.reshape(n_boot * k, -1)
    with optim.blas_single_thread():
        res = optim.batched_lm(form, starts, logx, logy if ly is None else ly, delta, weights=W, ftol=1e-10,
                               max_iter=200)
    f = res.f.reshape(n_boot, k)
    best = np.argmin(f, axis=1)
    thetas = res.theta.reshape(n_boot, k, -1)[np.arange(n_boot), best]
    conv = res.converged.reshape(n_boot, k)[np.arange(n_boot), best] & np.isfinite(f.min(axis=1))
    return thetas, conv


def fit(
    form: Form | str,
    data,
    *,
    loss: str | None = None,
    columns: Mapping[str, str] | None = None,
    var: str | None = None,
    delta: float = 1e-3,
    starts=None,
    bootstrap: int = 0,
    seed: int = 0,
    drop_highest: int = 0,
    bootstrap_method: str = "parametric",
) -> FitResult:
    """Fit ``form`` (a Form or a name, see ``forms.get_form``) to ``data`` (DataFrame or dict of arrays).

    Columns are named after the form's variables (N, D, C, S, L) and the target (``loss`` or L; B for
    ``bcrit``), or mapped with ``columns={"N": "Model Size", ...}``. D = C/(6N) is derived when only C and N
    are given (noted in ``.notes``). ``starts``: None = the form's full grid; an int = a seeded subsample of
    it; or explicit starts (param dicts or theta rows). ``drop_highest`` drops the K rows with the highest
    target first (the Chinchilla replication drops 5). ``bootstrap`` = number of resamples for SE, 95%
    percentile intervals and correlations (seeded by ``seed``; ``bootstrap_method`` "parametric" or "pairs",
    see ``bootstrap_fit``).
    """
    _check_delta(delta)
    if bootstrap != 0 and not (isinstance(bootstrap, (int, np.integer)) and bootstrap >= 2):
        raise InputError(f"bootstrap={bootstrap!r}: 0 (off) or a number of resamples >= 2")
    if bootstrap_method not in BOOTSTRAPS:
        raise InputError(f"bootstrap_method={bootstrap_method!r}: choose one of {', '.join(BOOTSTRAPS)}")
    form = _resolve_form(form, data, var)
    variables, y, notes = prepare(form, data, loss=loss, columns=columns)
    if drop_highest:
        if drop_highest < 0 or drop_highest >= y.size:
            raise InputError(
                f"drop_highest={drop_highest} must be between 0 and the number of rows ({y.size})"
            )
        keep = np.sort(np.argsort(y, kind="stable")[: y.size - drop_highest])
        variables = {k: v[keep] for k, v in variables.items()}
        y = y[keep]
        notes.append(f"dropped the {drop_highest} rows with the highest {form.target}")
        if y.size <= len(form.param_names):
            raise FitError(f"too few points left for law {form.name!r}: {y.size}")
    logx = {k: np.log(v) for k, v in variables.items()}
    logy = np.log(y)
    theta0 = _starts(form, logx, logy, starts, seed)
    pol, f_all = _multistart(form, theta0, logx, logy, delta)
    f_best = pol.f
    # within OPT_RTOL of the best, or an exact fit (below the floor) like the best
    n_at = int(np.sum(f_all <= max(f_best * (1 + OPT_RTOL), optim.objective_scale(0.0, y.size)))) or 1
    converged, message = _verdict(form, pol, logx, logy, delta)
    theta = pol.theta
    params = form.to_params(theta)
    resid = logy - form.log_eval(theta[None, :], logx, jac=False)[0]
    ss_tot = float(np.sum((logy - logy.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    warnings: list[str] = []
    if not converged:
        warnings.append(f"the fit did not converge: {message}")
    bounds = _at_bounds(form, theta)
    warnings += list(bounds.values())
    if len(theta0) > 1 and n_at == 1:
        warnings.append(f"only 1 of {len(theta0)} starts reached the optimum: it may not be the global one")
    if np.isfinite(r2) and r2 < POOR_R2:
        warnings.append(
            f"a poor fit: the law explains only {100 * max(r2, 0):.0f}% of the variance of log {form.target} "
            f"(R^2(log) {r2:.2f} < {POOR_R2}); its parameters describe little of these data"
        )
    boot: dict[str, Any] = {}
    if bootstrap:
        boot, bad = _bootstrap_summary(form, theta, logx, logy, delta, int(bootstrap), seed, bootstrap_method)
        if bad:
            warnings.append(f"{bad} of {bootstrap} bootstrap refits did not converge and were left out")
        for k in boot["interval_at_bound"]:
            if k not in bounds:
                lo, hi = boot["ci95"][k]
                warnings.append(f"the 95 % interval of {k}, [{lo:.4g}, {hi:.4g}], reaches the end of its "
                                "search range: the runs do not bound it")
        boot.update(n_bootstrap=int(bootstrap), seed=seed, bootstrap_method=bootstrap_method)
    idw, unidentified = _identifiability(form, theta, logx, variables, y, boot.get("corr"))
    return FitResult(
        form=form,
        params=params,
        theta=theta,
        objective=f_best,
        n_points=int(y.size),
        residuals=resid,
        r2_log=r2,
        converged=converged,
        message=message,
        n_starts=len(theta0),
        n_at_optimum=n_at,
        delta=delta,
        warnings=warnings + idw,
        notes=notes,
        at_bound=list(bounds),
        not_identified=unidentified,
        **boot,
    )


def _bootstrap_summary(form, theta, logx, logy, delta, n_boot, seed, method):
    """Bootstrap refits (``bootstrap_fit``) -> (FitResult fields samples, se, ci95, corr, interval_at_bound;
    number of refits left out)."""
    thetas, conv = bootstrap_fit(form, theta, logx, logy, delta, n_boot, seed, method=method)
    names = form.param_names
    samples = np.array([[form.to_params(t)[k] for k in names] for t in thetas[conv]])
    if len(samples) < 2:
        raise FitError("the bootstrap produced fewer than 2 converged refits")
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # a scale at 1e300 (N_c of alpha ~ 0)
        C = np.corrcoef(samples, rowvar=False)
        se = np.std(samples, axis=0, ddof=1)
    # a coordinate at a bound in more than 2.5 % of the refits: that end of its interval is the bound
    ok = thetas[conv]
    edge = [
        pname
        for j, (pname, (blo, bhi)) in enumerate(zip(names, form.theta_bounds(), strict=True))
        if np.mean((ok[:, j] <= blo + 1e-6 * (bhi - blo)) | (ok[:, j] >= bhi - 1e-6 * (bhi - blo))) > 0.025
    ]
    return {
        "interval_at_bound": edge,
        "samples": samples,
        "se": {k: float(se[i]) for i, k in enumerate(names)},
        "ci95": {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)},
        "corr": {a: {b: float(C[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
    }, int(np.sum(~conv))


def assess(
    form: Form | str,
    data,
    params: Mapping[str, float],
    *,
    loss: str | None = None,
    columns: Mapping[str, str] | None = None,
    var: str | None = None,
    delta: float = 1e-3,
) -> FitResult:
    """Judge given parameters (e.g. another tool's answer) on ``data`` without optimising: objective,
    residuals, and the same convergence verdict ``fit`` gives (is this a minimum of the summed Huber?)."""
    _check_delta(delta)
    form = _resolve_form(form, data, var)
    variables, y, notes = prepare(form, data, loss=loss, columns=columns)
    logx = {k: np.log(v) for k, v in variables.items()}
    logy = np.log(y)
    theta = form.to_theta(params)
    f, g = optim.gradient(form, theta, logx, logy, delta)
    gn = optim.projected_grad_norm(form, theta, g) / optim.objective_scale(f, logy.size)
    pol = optim.PolishResult(theta=theta, f=f, success=False, message="given parameters", nit=0, grad_norm=gn)
    with optim.blas_single_thread():
        converged, message = _verdict(form, pol, logx, logy, delta)
    resid = logy - form.log_eval(theta[None, :], logx, jac=False)[0]
    ss_tot = float(np.sum((logy - logy.mean()) ** 2))
    warnings = [] if converged else [f"not a minimum of the summed Huber objective: {message}"]
    return FitResult(
        form=form,
        params={k: float(params[k]) for k in form.param_names},
        theta=theta,
        objective=f,
        n_points=int(y.size),
        residuals=resid,
        r2_log=1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan"),
        converged=converged,
        message=message,
        n_starts=0,
        n_at_optimum=0,
        delta=delta,
        warnings=warnings + list(_at_bounds(form, theta).values()),
        notes=notes,
    )


def _value_groups(x: np.ndarray, rel_tol: float = 1e-4) -> np.ndarray:
    """Rank of each value's group, values within ``rel_tol`` (relative, chained in sorted order) as one."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.ones(xs.size, dtype=bool)
    new[1:] = xs[1:] > xs[:-1] * (1 + rel_tol)
    ranks = np.empty(x.size, dtype=int)
    ranks[order] = np.cumsum(new) - 1
    return ranks


@dataclass
class BacktestResult:
    """Fit on the smaller runs, predict the held-out larger ones (loss units as in the data)."""

    fit: FitResult
    by: str
    observed: np.ndarray
    predicted: np.ndarray
    low: np.ndarray
    high: np.ndarray
    variables: dict[str, np.ndarray]

    @property
    def rel_error(self) -> np.ndarray:
        """(predicted - observed) / observed per held-out point."""
        return (self.predicted - self.observed) / self.observed

    @property
    def mean_abs_rel_error(self) -> float:
        return float(np.mean(np.abs(self.rel_error)))

    @property
    def covered(self) -> np.ndarray:
        return (self.observed >= self.low) & (self.observed <= self.high)

    @property
    def coverage(self) -> float:
        return float(np.mean(self.covered))

    def summary(self) -> str:
        lines = [
            f"Back-test of {self.fit.law}: fit on {self.fit.n_points} runs, predict the {self.observed.size} "
            f"largest by {self.by}",
            f"mean |relative error| {self.mean_abs_rel_error:.4f}; 95% prediction-interval coverage "
            f"{int(self.covered.sum())}/{self.covered.size}",
        ]
        for o, p, lo, hi in zip(self.observed, self.predicted, self.low, self.high, strict=True):
            lines.append(f"  observed {o:.4f}  predicted {p:.4f}  [{lo:.4f}, {hi:.4f}]")
        return "\n".join(lines)


def backtest(
    form: Form | str,
    data,
    holdout: int | float = 0.2,
    *,
    by: str | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    **fit_kwargs,
) -> BacktestResult:
    """Hold out the runs at the ``holdout`` largest values (a count, or a fraction < 1 of the distinct
    values) of variable ``by`` (default C = 6ND for a law of N and D, else the form's first variable), fit
    the rest with a bootstrap, and check the held-out runs against the predictions and the fit's own 95%
    prediction intervals. Every run at a held-out value goes (two runs of the largest N at different D
    are both held out: a sibling left in the fit would make the extrapolation look better than it is);
    values within a relative 1e-4 count as one (runs of one isoFLOP budget)."""
    form = _resolve_form(form, data, fit_kwargs.pop("var", None))
    variables, y, notes = prepare(form, data, loss=fit_kwargs.get("loss"), columns=fit_kwargs.get("columns"))
    if by is None:
        by = "C" if "N" in variables and "D" in variables else form.variables[0]
    if by == "C" and "C" not in variables:
        size = variables["N"] * variables["D"] * 6.0 if "N" in variables and "D" in variables else None
        if size is None:
            raise InputError("backtest by C needs a C column or N and D")
    elif by in variables:
        size = variables[by]
    else:
        raise InputError(f"backtest: unknown variable {by!r}; choose from {list(variables)}")
    groups = _value_groups(size)
    n_g = int(groups.max()) + 1
    k = int(round(holdout * n_g)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    test_mask = groups >= n_g - k
    if k < 1 or int(np.sum(~test_mask)) <= len(form.param_names):
        raise InputError(
            f"holdout={holdout} leaves {int(np.sum(~test_mask))} points to fit and {int(test_mask.sum())} "
            f"to test"
        )
    train, test = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    train_data = {**{v: variables[v][train] for v in form.variables}, form.target: y[train]}
    fit_kwargs.pop("columns", None)
    fit_kwargs.pop("loss", None)
    res = fit(form, train_data, bootstrap=bootstrap, seed=seed, **fit_kwargs)
    res = dataclasses.replace(res, notes=notes + res.notes)
    test_vars = {v: variables[v][test] for v in form.variables}
    pred = res.predict(**test_vars)
    lo, hi = res.predict_interval(**test_vars)
    return BacktestResult(
        fit=res, by=by, observed=y[test], predicted=np.asarray(pred), low=lo, high=hi, variables=test_vars
    )
