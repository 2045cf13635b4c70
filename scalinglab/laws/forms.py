"""Scaling-law forms: named parameters, ``predict``, and a log-space parametrisation for fitting.

Every form predicts a positive quantity y (loss in nats/token, or B_crit in tokens for ``CriticalBatch``)
from positive variables (N parameters, D tokens, C FLOPs or PF-days, S steps, L loss). For fitting, each
form is written as log y = f(theta; log x) with an analytic Jacobian, evaluated for many parameter vectors
at once (theta has shape (K, p)): that is what lets ``fit`` run thousands of starts in one numpy pass.

Sums of power-law terms are log-sum-exps of linear terms, e.g. Chinchilla (Hoffmann et al. 2022, as fitted by
Besiroglu et al. 2024): log L = LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b, E = e^e.
A pure power (x_c/x)^alpha is written exp(a - alpha log x) with a = alpha log x_c, which is far better
conditioned than (log x_c, alpha) when x_c is 1e13 and alpha 0.07.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from scalinglab.errors import InputError

Bounds = list[tuple[float, float]]


def _lse(*terms: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """log(sum(exp(terms))) and the softmax weight of each term (numerically stable)."""
    m = terms[0]
    for t in terms[1:]:
        m = np.maximum(m, t)
    ex = [np.exp(t - m) for t in terms]
    s = ex[0] + ex[1]
    for e in ex[2:]:
        s += e
    inv = 1.0 / s
    return m + np.log(s), [e * inv for e in ex]


def _grid(*axes) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=float)


class Form:
    """Base class. Subclasses define names, the log-space model and its Jacobian, bounds and starts."""

    name: str = ""
    description: str = ""
    param_names: tuple[str, ...] = ()
    theta_names: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    target: str = "loss"  # the fitted quantity's column
    exponents: tuple[str, ...] = ()  # the dimensionless exponents among param_names
    units: str = "loss in nats/token"
    gn_kernel: str | None = None  # name of a structured Gauss-Newton kernel in ``optim.GN_KERNELS``, if any
    free_variable: bool = False  # one variable, chosen by the caller (``var=``: N, D, C or S)

    # --- the model in fitting coordinates -------------------------------------------------------
    def log_eval(self, theta: np.ndarray, logx: Mapping[str, np.ndarray], jac: bool = True):
        """log y for theta (K, p) at log variables (n,): (K, n) and, if jac, d log y/d theta (K, n, p)."""
        raise NotImplementedError

    def to_params(self, theta: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def to_theta(self, params: Mapping[str, float]) -> np.ndarray:
        raise NotImplementedError

    def theta_bounds(self) -> Bounds:
        raise NotImplementedError

    def start_grid(self, logx: Mapping[str, np.ndarray], logy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- what allocation needs (a form of N and D) ----------------------------------------------------
    def optimal_split(self, C: float, params: Mapping[str, float]) -> tuple[float, float] | None:
        """Closed-form compute-optimal (N params, D tokens) at C = 6ND FLOPs, or None when the form has none
        (``allocate`` then minimises L(N, C/(6N)) numerically)."""
        return None

    def irreducible(self, params: Mapping[str, float]) -> float | None:
        """The loss no amount of compute goes below (nats/token), when the form has such a term."""
        return None

    # --- user-facing ------------------------------------------------------------------------------
    def predict(self, params: Mapping[str, float], **variables) -> np.ndarray:
        """The law's prediction at the given variables (arrays broadcast; D = C/(6N) filled in if absent)."""
        missing = [p for p in self.param_names if p not in params]
        if missing:
            raise InputError(f"form {self.name!r} needs parameters {missing}")
        variables = complete_variables(self, variables)
        arrs = np.broadcast_arrays(*[np.asarray(variables[v], dtype=float) for v in self.variables])
        shape = arrs[0].shape
        for v, a in zip(self.variables, arrs, strict=True):
            if np.any(~(a > 0)):
                raise InputError(
                    f"{v} must be positive and finite to evaluate {self.name}, got {a.ravel()[:3]}"
                )
        logx = {v: np.log(a.ravel()) for v, a in zip(self.variables, arrs, strict=True)}
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            ly = self.log_eval(self.to_theta(params)[None, :], logx, jac=False)[0]
        out = np.exp(ly).reshape(shape)
        return out if out.ndim else out[()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}: {self.description})"


FORMS: dict[str, type[Form]] = {}  # name -> class, filled by ``register_form``


def register_form(name: str):
    """Class decorator: ``get_form(name)`` builds this form. Adding a form is one class (in this module or
    any module that is imported): its maths (``log_eval``, bounds, starts), ``free_variable`` if the caller
    names its one variable, and for a law of N and D ``optimal_split`` / ``irreducible`` if it has them."""

    def deco(cls: type[Form]) -> type[Form]:
        key = name.lower()
        if key in FORMS and FORMS[key] is not cls:
            raise ValueError(f"law form {name!r} registered twice")
        FORMS[key] = cls
        return cls

    return deco


@register_form("power")
class PowerLaw(Form):
    """y = (x_c / x)^alpha (Kaplan L(N), L(D), L(C_min)). Fitted as a - alpha log x, a = alpha log x_c."""

    free_variable = True

    def __init__(self, var: str = "N") -> None:
        self.var = var
        self.name = "power"
        self.description = f"L = ({var}_c/{var})^alpha"
        self.param_names = (f"{var}_c", "alpha")
        self.theta_names = ("a", "alpha")
        self.variables = (var,)
        self.exponents = ("alpha",)

    def log_eval(self, theta, logx, jac=True):
        a, al = theta[:, 0:1], theta[:, 1:2]
        lx = logx[self.var][None, :]
        ly = a - al * lx
        if not jac:
            return ly
        J = np.empty(ly.shape + (2,))
        J[..., 0] = 1.0
        J[..., 1] = -lx
        return ly, J

    def to_params(self, theta):
        a, al = float(theta[0]), float(theta[1])
        return {f"{self.var}_c": float(np.exp(a / al)) if al != 0 else float("inf"), "alpha": al}

    def to_theta(self, params):
        al = float(params["alpha"])
        return np.array([al * np.log(float(params[f"{self.var}_c"])), al])

    def theta_bounds(self):
        return [(-200.0, 200.0), (-5.0, 5.0)]

    def start_grid(self, logx, logy):
        med = float(np.median(logx[self.var]))
        alphas = np.array([0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
        levels = float(np.median(logy)) + np.array([-1.0, 0.0, 1.0])
        return np.array([[lv + al * med, al] for al in alphas for lv in levels])


@register_form("power+const")
class PowerLawPlusConstant(Form):
    """y = L_inf + (x_0/x)^alpha (Henighan et al. 2020 eq. 1.1). Fitted as LSE(e, a - alpha log x)."""

    free_variable = True

    def __init__(self, var: str = "N") -> None:
        self.var = var
        self.name = "power+const"
        self.description = f"L = L_inf + ({var}_0/{var})^alpha"
        self.param_names = ("L_inf", f"{var}_0", "alpha")
        self.theta_names = ("e", "a", "alpha")
        self.variables = (var,)
        self.exponents = ("alpha",)

    def log_eval(self, theta, logx, jac=True):
        e, a, al = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        lx = logx[self.var][None, :]
        t = a - al * lx
        ly, (we, wt) = _lse(np.broadcast_to(e, t.shape), t)
        if not jac:
            return ly
        J = np.stack([we, wt, -wt * lx], axis=-1)
        return ly, J

    def to_params(self, theta):
        e, a, al = (float(v) for v in theta)
        return {
            "L_inf": float(np.exp(e)),
            f"{self.var}_0": float(np.exp(a / al)) if al else float("inf"),
            "alpha": al,
        }

    def to_theta(self, params):
        al = float(params["alpha"])
        return np.array([np.log(float(params["L_inf"])), al * np.log(float(params[f"{self.var}_0"])), al])

    def theta_bounds(self):
        return [(-20.0, 10.0), (-300.0, 300.0), (0.0, 5.0)]

    def start_grid(self, logx, logy):
        med, ly = float(np.median(logx[self.var])), float(np.median(logy))
        es = ly + np.log([0.1, 0.3, 0.6, 0.9])
        alphas = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
        levels = ly + np.log([0.03, 0.1, 0.3, 1.0])
        return np.array([[e, lv + al * med, al] for e in es for al in alphas for lv in levels])


@register_form("chinchilla")
class ChinchillaND(Form):
    """L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann 2022 Approach 3). N all parameters, D tokens.

    Fitted as log L = LSE(a - alpha log N, b - beta log D, e). The start grid is Hoffmann's 4,500 points:
    alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1}; a, b in {0, 5, ..., 25}.
    """

    name = "chinchilla"
    description = "L = E + A/N^alpha + B/D^beta"
    param_names = ("E", "A", "B", "alpha", "beta")
    theta_names = ("e", "a", "b", "alpha", "beta")
    variables = ("N", "D")
    exponents = ("alpha", "beta")
    gn_kernel = "lse3"  # optim's structured Gauss-Newton terms for LSE(e, a - alpha log N, b - beta log D)

    def log_eval(self, theta, logx, jac=True):
        e, a, b, al, be = (theta[:, i : i + 1] for i in range(5))
        lN, lD = logx["N"][None, :], logx["D"][None, :]
        tN, tD = a - al * lN, b - be * lD
        ly, (we, wN, wD) = _lse(np.broadcast_to(e, tN.shape), tN, tD)
        if not jac:
            return ly
        J = np.empty(ly.shape + (5,), dtype=ly.dtype)
        J[..., 0] = we
        J[..., 1] = wN
        J[..., 2] = wD
        np.multiply(wN, -lN, out=J[..., 3])
        np.multiply(wD, -lD, out=J[..., 4])
        return ly, J

    def optimal_split(self, C, params):
        """N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)),
        G = (alpha A/(beta B))^(1/(alpha+beta)) (Hoffmann 2022, eq. 4)."""
        a, b = float(params["alpha"]), float(params["beta"])
        for k in ("A", "B", "alpha", "beta"):
            if not (np.isfinite(float(params[k])) and float(params[k]) > 0):
                raise InputError(
                    f"no compute-optimal split: {k} = {float(params[k]):g}, but A, B, alpha and beta must "
                    "all be > 0 (with a zero exponent or coefficient the loss does not trade N against D)"
                )
        G = (a * float(params["A"]) / (b * float(params["B"]))) ** (1.0 / (a + b))
        return G * (C / 6.0) ** (b / (a + b)), (C / 6.0) ** (a / (a + b)) / G

    def irreducible(self, params):
        return float(params["E"])

    def to_params(self, theta):
        e, a, b, al, be = (float(v) for v in theta)
        return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": al, "beta": be}

    def to_theta(self, params):
        return np.array(
            [
                np.log(float(params["E"])),
                np.log(float(params["A"])),
                np.log(float(params["B"])),
                float(params["alpha"]),
                float(params["beta"]),
            ]
        )

    def theta_bounds(self):
        return [(-20.0, 10.0), (-50.0, 100.0), (-50.0, 100.0), (0.0, 10.0), (0.0, 10.0)]

    def start_grid(self, logx=None, logy=None):
        ab = np.arange(0.0, 2.01, 0.5)
        es = np.arange(-1.0, 1.01, 0.5)
        ls = np.arange(0.0, 25.01, 5.0)
        g = _grid(es, ls, ls, ab, ab)  # 5 * 6 * 6 * 5 * 5 = 4,500 (order: e, a, b, alpha, beta)
        return g


@register_form("kaplan-nd")
class KaplanND(Form):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan 2020 eq. 1.5). N non-embedding, D tokens.

    Fitted as log L = alpha_D * LSE(u, v), u = (a_N - alpha_N log N)/alpha_D,
    v = (a_D - alpha_D log D)/alpha_D,
    with a_N = alpha_N log N_c and a_D = alpha_D log D_c.
    """

    name = "kaplan-nd"
    description = "L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"
    param_names = ("N_c", "D_c", "alpha_N", "alpha_D")
    theta_names = ("a_N", "a_D", "alpha_N", "alpha_D")
    variables = ("N", "D")
    exponents = ("alpha_N", "alpha_D")

    def log_eval(self, theta, logx, jac=True):
        aN, aD, alN, alD = (theta[:, i : i + 1] for i in range(4))
        lN, lD = logx["N"][None, :], logx["D"][None, :]
        u = (aN - alN * lN) / alD
        v = aD / alD - lD
        S, (wu, wv) = _lse(u, np.broadcast_to(v, u.shape))
        ly = alD * S
        if not jac:
            return ly
        J = np.stack([wu, wv, -wu * lN, S - wu * u - wv * aD / alD], axis=-1)
        return ly, J

    def to_params(self, theta):
        aN, aD, alN, alD = (float(v) for v in theta)
        return {
            "N_c": float(np.exp(aN / alN)),
            "D_c": float(np.exp(aD / alD)),
            "alpha_N": alN,
            "alpha_D": alD,
        }

    def to_theta(self, params):
        alN, alD = float(params["alpha_N"]), float(params["alpha_D"])
        return np.array([alN * np.log(float(params["N_c"])), alD * np.log(float(params["D_c"])), alN, alD])

    def theta_bounds(self):
        return [(-300.0, 300.0), (-300.0, 300.0), (1e-4, 5.0), (1e-3, 5.0)]

    def start_grid(self, logx, logy):
        mN, mD, ly = float(np.median(logx["N"])), float(np.median(logx["D"])), float(np.median(logy))
        out = []
        for alN in (0.03, 0.1, 0.3, 1.0):
            for alD in (0.03, 0.1, 0.3, 1.0):
                for sN in (-1.0, 0.0):
                    for sD in (-1.0, 0.0):
                        # each term alone would give log L = ly + s at the median point
                        out.append([alN * mN + ly + sN, alD * mD + ly + sD, alN, alD])
        return np.array(out)


@register_form("kaplan-ns")
class KaplanNS(Form):
    """L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan 2020 eq. 1.6). S in optimizer steps."""

    name = "kaplan-ns"
    description = "L = (N_c/N)^alpha_N + (S_c/S)^alpha_S"
    param_names = ("N_c", "S_c", "alpha_N", "alpha_S")
    theta_names = ("a_N", "a_S", "alpha_N", "alpha_S")
    variables = ("N", "S")
    exponents = ("alpha_N", "alpha_S")

    def log_eval(self, theta, logx, jac=True):
        aN, aS, alN, alS = (theta[:, i : i + 1] for i in range(4))
        lN, lS = logx["N"][None, :], logx["S"][None, :]
        ly, (wN, wS) = _lse(aN - alN * lN, aS - alS * lS)
        if not jac:
            return ly
        return ly, np.stack([wN, wS, -wN * lN, -wS * lS], axis=-1)

    def to_params(self, theta):
        aN, aS, alN, alS = (float(v) for v in theta)
        return {
            "N_c": float(np.exp(aN / alN)),
            "S_c": float(np.exp(aS / alS)),
            "alpha_N": alN,
            "alpha_S": alS,
        }

    def to_theta(self, params):
        alN, alS = float(params["alpha_N"]), float(params["alpha_S"])
        return np.array([alN * np.log(float(params["N_c"])), alS * np.log(float(params["S_c"])), alN, alS])

    def theta_bounds(self):
        return [(-300.0, 300.0), (-300.0, 300.0), (1e-4, 5.0), (1e-4, 5.0)]

    def start_grid(self, logx, logy):
        mN, mS, ly = float(np.median(logx["N"])), float(np.median(logx["S"])), float(np.median(logy))
        out = []
        for alN in (0.03, 0.1, 0.3, 1.0):
            for alS in (0.1, 0.3, 1.0, 2.0):
                for sN in np.log([0.3, 0.7]):
                    for sS in np.log([0.1, 0.3]):
                        out.append([alN * mN + ly + sN, alS * mS + ly + sS, alN, alS])
        return np.array(out)


@register_form("bcrit")
class CriticalBatch(Form):
    """B_crit(L) = B_star / L^(1/alpha_B) (Kaplan 2020 eq. 1.4): target B (tokens), variable L (nats/tok)."""

    name = "bcrit"
    description = "B_crit = B_star / L^(1/alpha_B)"
    param_names = ("B_star", "alpha_B")
    theta_names = ("b", "alpha_B")
    variables = ("L",)
    target = "B"
    exponents = ("alpha_B",)
    units = "B_crit in tokens (or the unit of the B column), L in nats/token"

    def log_eval(self, theta, logx, jac=True):
        b, al = theta[:, 0:1], theta[:, 1:2]
        lL = logx["L"][None, :]
        ly = b - lL / al
        if not jac:
            return ly
        return ly, np.stack([np.ones_like(ly), np.broadcast_to(lL / al**2, ly.shape)], axis=-1)

    def to_params(self, theta):
        return {"B_star": float(np.exp(theta[0])), "alpha_B": float(theta[1])}

    def to_theta(self, params):
        return np.array([np.log(float(params["B_star"])), float(params["alpha_B"])])

    def theta_bounds(self):
        return [(-100.0, 200.0), (1e-3, 10.0)]

    def start_grid(self, logx, logy):
        mL, ly = float(np.median(logx["L"])), float(np.median(logy))
        return np.array([[ly + mL / al, al] for al in (0.05, 0.1, 0.2, 0.4, 1.0, 3.0)])


@register_form("bnsl")
class BrokenPowerLaw(Form):
    """One-break BNSL (Caballero et al. 2022): y = L_inf + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1).

    Below the break the slope is c0, above it c0 + c1; f1 sets the sharpness. Fitted as
    log y = LSE(e, log b - c0 log x - c1 f1 softplus((log x - log d1)/f1)).
    """

    free_variable = True

    def __init__(self, var: str = "C") -> None:
        self.var = var
        self.name = "bnsl"
        self.description = f"L = L_inf + b {var}^-c0 (1 + ({var}/d1)^(1/f1))^(-c1 f1)"
        self.param_names = ("L_inf", "b", "c0", "c1", "d1", "f1")
        self.theta_names = ("e", "log_b", "c0", "c1", "log_d1", "f1")
        self.variables = (var,)
        self.exponents = ("c0", "c1")

    def log_eval(self, theta, logx, jac=True):
        e, lb, c0, c1, ld, f = (theta[:, i : i + 1] for i in range(6))
        lx = logx[self.var][None, :]
        z = (lx - ld) / f
        sp = np.logaddexp(0.0, z)
        t = lb - c0 * lx - c1 * f * sp
        ly, (we, wt) = _lse(np.broadcast_to(e, t.shape), t)
        if not jac:
            return ly
        sig = 0.5 * (1.0 + np.tanh(0.5 * z))
        J = np.stack([we, wt, -wt * lx, -wt * f * sp, wt * c1 * sig, -wt * c1 * (sp - sig * z)], axis=-1)
        return ly, J

    def to_params(self, theta):
        e, lb, c0, c1, ld, f = (float(v) for v in theta)
        return {
            "L_inf": float(np.exp(e)),
            "b": float(np.exp(lb)),
            "c0": c0,
            "c1": c1,
            "d1": float(np.exp(ld)),
            "f1": f,
        }

    def to_theta(self, params):
        return np.array(
            [
                np.log(float(params["L_inf"])),
                np.log(float(params["b"])),
                float(params["c0"]),
                float(params["c1"]),
                np.log(float(params["d1"])),
                float(params["f1"]),
            ]
        )

    def theta_bounds(self):
        return [(-20.0, 10.0), (-300.0, 300.0), (-2.0, 5.0), (-5.0, 5.0), (-300.0, 300.0), (0.02, 10.0)]

    def start_grid(self, logx, logy):
        lx = logx[self.var]
        ly = float(np.median(logy))
        med = float(np.median(lx))
        out = []
        for e in ly + np.log([0.05, 0.5]):
            for c0 in (0.05, 0.2, 0.5):
                for c1 in (-0.1, 0.1, 0.4):
                    for q in (0.25, 0.5, 0.75):
                        for f in (0.3, 1.0):
                            out.append([e, ly + c0 * med, c0, c1, float(np.quantile(lx, q)), f])
        return np.array(out)


def form_class(name: str) -> type[Form]:
    """The registered form class called ``name`` (case-insensitive); an unknown name is an InputError."""
    key = name.lower()
    if key not in FORMS:
        raise InputError(f"unknown law {name!r}; choose one of {', '.join(FORMS)}")
    return FORMS[key]


def get_form(name: str, var: str | None = None) -> Form:
    """A form by name; ``var`` names the variable of the one-variable forms (power, power+const, bnsl)."""
    cls = form_class(name)
    if cls.free_variable:
        return cls(var) if var else cls()
    if var:
        raise InputError(f"law {name!r} has fixed variables {cls.variables}; var={var!r} does not apply")
    return cls()


def complete_variables(form: Form, variables: Mapping) -> dict:
    """Fill in what the form needs from the other variables: D = C/(6N), N = C/(6D), L from 'loss'."""
    v = dict(variables)
    if "L" in form.variables and "L" not in v and "loss" in v:
        v["L"] = v["loss"]
    if "D" in form.variables and "D" not in v and "C" in v and "N" in v:
        v["D"] = np.asarray(v["C"], dtype=float) / (6.0 * np.asarray(v["N"], dtype=float))
    if "N" in form.variables and "N" not in v and "C" in v and "D" in v:
        v["N"] = np.asarray(v["C"], dtype=float) / (6.0 * np.asarray(v["D"], dtype=float))
    missing = [x for x in form.variables if x not in v]
    if missing:
        raise InputError(f"law {form.name!r} needs variable(s) {missing}; got {sorted(v)}")
    return v
