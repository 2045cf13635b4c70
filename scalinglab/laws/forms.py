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


class PowerLaw(Form):
    """y = (x_c / x)^alpha (Kaplan L(N), L(D), L(C_min)). Fitted as a - alpha log x, a = alpha log x_c."""

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


class PowerLawPlusConstant(Form):
    """y = L_inf + (x_0/x)^alpha (Henighan et al. 2020 eq. 1.1). Fitted as LSE(e, a - alpha log x)."""

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

    # Gauss-Newton terms without the (K, n, 5) Jacobian (``optim`` uses them when a form has them). With
    # the softmax weights s_e, s_N, s_D of the three terms, the Jacobian columns are [s_e, s_N, s_D,
    # -s_N lN, -s_D lD], so H = sum_n w J J^T needs only the six (K, n) arrays w s_i s_j and the gradient
    # only the three psi s_i, each contracted with the data features [1, lN, lD, lN^2, lN lD, lD^2]:
    # one (9K, n) @ (n, 6) GEMM. Arrays: 0 w se se, 1 w se sN, 2 w se sD, 3 w sN sN, 4 w sN sD,
    # 5 w sD sD, 6-8 psi s_e, s_N, s_D.
    # Entry (p, q) of H is sign * (array @ feature): _GN_H lists (p, q, array, feature, sign).
    _GN_H = (
        (0, 0, 0, 0, 1.0),
        (0, 1, 1, 0, 1.0),
        (0, 2, 2, 0, 1.0),
        (0, 3, 1, 1, -1.0),
        (0, 4, 2, 2, -1.0),
        (1, 1, 3, 0, 1.0),
        (1, 2, 4, 0, 1.0),
        (1, 3, 3, 1, -1.0),
        (1, 4, 4, 2, -1.0),
        (2, 2, 5, 0, 1.0),
        (2, 3, 4, 1, -1.0),
        (2, 4, 5, 2, -1.0),
        (3, 3, 3, 3, 1.0),
        (3, 4, 4, 4, 1.0),
        (4, 4, 5, 5, 1.0),
    )
    _GN_G = ((6, 0, -1.0), (7, 0, -1.0), (8, 0, -1.0), (7, 1, 1.0), (8, 2, 1.0))  # gradient: -sum psi J
    _GN_IDX = np.zeros(25, dtype=np.intp)
    _GN_SIGN = np.zeros(25)
    for _p, _q, _arr, _ft, _sg in _GN_H:
        _GN_IDX[[5 * _p + _q, 5 * _q + _p]] = 6 * _arr + _ft
        _GN_SIGN[[5 * _p + _q, 5 * _q + _p]] = _sg
    _GN_GIDX = np.array([6 * _arr + _ft for _arr, _ft, _ in _GN_G], dtype=np.intp)
    _GN_GSIGN = np.array([_sg for _, _, _sg in _GN_G])
    del _p, _q, _arr, _ft, _sg
    _EXP_MAX = {4: 80.0, 8: 700.0}  # largest exp argument (float32, float64) with room for a sum of three

    def gn_terms(self, theta, logx, logy, delta, weights=None, eps=0.1):
        """Summed Huber objective (K,), its gradient (K, 5) and the IRLS Gauss-Newton matrix (K, 5, 5).

        The same maths as ``optim``'s general path (IRLS weight 1 inside |r| <= delta, eps delta/|r|
        outside; ``weights`` (K, n) or (n,) scale each point's term), computed in theta's dtype; F is
        summed in float64 and G, H come back in float64. ``gn_objective`` + ``gn_matrices`` in two steps.
        """
        F, state = self.gn_objective(theta, logx, logy, delta, weights)
        G, H = self.gn_matrices(state, logx, delta, weights, eps)
        return F, G, H

    def gn_objective(self, theta, logx, logy, delta, weights=None):
        """Summed Huber objective (K,) and the state ``gn_matrices`` needs: (K, 4, n) [s_e, s_N, s_D, r]."""
        dt = theta.dtype
        K = theta.shape[0]
        lN, lD = logx["N"].astype(dt, copy=False), logx["D"].astype(dt, copy=False)
        n = lN.size
        e, al, be = theta[:, 0:1], theta[:, 3:4], theta[:, 4:5]
        cN, cD = theta[:, 1:2] - e, theta[:, 2:3] - e
        state = np.empty((K, 4, n), dtype=dt)  # s_e, s_N, s_D, r: s_N, s_D side by side for one exp
        se, sN, sD, r = (state[:, i] for i in range(4))
        # terms relative to e: exp(a - e - alpha lN) etc. Two exps instead of three, safe when no
        # exponent can overflow (always within the bounds in float64); otherwise the max-shifted LSE.
        big = np.maximum(
            np.maximum(cN - al * lN.min(), cN - al * lN.max()),
            np.maximum(cD - be * lD.min(), cD - be * lD.max()),
        )
        if big.size and np.max(big) < self._EXP_MAX[dt.itemsize]:
            u = state[:, 1:3].reshape(K, 2 * n)  # a view: s_N, s_D side by side
            if dt == np.float32:  # [tN - e | tD - e] = [cN, -alpha, cD, -beta] @ [[1, 0], [lN, 0], ...]
                coef = np.concatenate([cN, -al, cD, -be], axis=1)
                np.matmul(coef, self._gn_lin(lN, lD), out=u)
            else:  # (OpenBLAS's dgemm is slower than two passes here)
                np.multiply(al, lN, out=sN)
                np.subtract(cN, sN, out=sN)
                np.multiply(be, lD, out=sD)
                np.subtract(cD, sD, out=sD)
            np.exp(u, out=u)
            np.add(sN, sD, out=r)
            r += 1.0
            np.reciprocal(r, out=se)
            state[:, 1:3] *= se[:, None, :]
            np.log(r, out=r)
            np.subtract(logy.astype(dt, copy=False), r, out=r)
            r -= e  # log y - e - log(1 + exp(tN - e) + exp(tD - e))
        else:
            ly, (s0, s1, s2) = _lse(
                np.broadcast_to(e, (K, n)), theta[:, 1:2] - al * lN, theta[:, 2:3] - be * lD
            )
            se[...], sN[...], sD[...] = s0, s1, s2
            np.subtract(logy.astype(dt, copy=False), ly, out=r)
        psi = np.clip(r, -delta, delta)
        h = np.multiply(psi, -0.5)
        h += r
        h *= psi  # Huber: r^2/2 inside, delta (|r| - delta/2) outside
        if weights is not None:
            h *= weights.astype(dt, copy=False)
        return h.sum(axis=1, dtype=np.float64), state

    def gn_matrices(self, state, logx, delta, weights=None, eps=0.1):
        """Gradient (K, 5) and IRLS Gauss-Newton matrix (K, 5, 5), float64, from ``gn_objective``'s state."""
        K, _, n = state.shape
        dt = state.dtype
        feats = self._gn_features(logx["N"], logx["D"], dt)
        se, sN, sD, r = (state[:, i] for i in range(4))
        psi = np.clip(r, -delta, delta)
        q = np.abs(r)
        np.maximum(q, delta, out=q)
        np.divide(delta, q, out=q)  # 1 inside |r| <= delta (exactly), delta/|r| outside
        w = np.floor(q)  # the inside indicator
        w *= 1.0 - eps
        q *= eps
        w += q  # IRLS weight: 1 inside, eps delta/|r| outside
        if weights is not None:
            wt = weights.astype(dt, copy=False)
            psi *= wt
            w *= wt
        X = np.empty((K, 9, n), dtype=dt)
        ws = q  # scratch
        np.multiply(w, se, out=ws)
        np.multiply(ws, se, out=X[:, 0])
        np.multiply(ws, sN, out=X[:, 1])
        np.multiply(ws, sD, out=X[:, 2])
        np.multiply(w, sN, out=ws)
        np.multiply(ws, sN, out=X[:, 3])
        np.multiply(ws, sD, out=X[:, 4])
        np.multiply(w, sD, out=ws)
        np.multiply(ws, sD, out=X[:, 5])
        np.multiply(psi, se, out=X[:, 6])
        np.multiply(psi, sN, out=X[:, 7])
        np.multiply(psi, sD, out=X[:, 8])
        R = (X.reshape(9 * K, n) @ feats).reshape(K, 54)
        H = np.multiply(R[:, self._GN_IDX], self._GN_SIGN).reshape(K, 5, 5)
        G = np.multiply(R[:, self._GN_GIDX], self._GN_GSIGN)
        return G, H

    def _gn_lin(self, lN: np.ndarray, lD: np.ndarray) -> np.ndarray:
        """(4, 2n) block matrix [[1, 0], [lN, 0], [0, 1], [0, lD]] in lN's dtype, cached like the features."""
        c = getattr(self, "_lin_cache", None)
        if c is not None and c[0] is lN and c[1] is lD:
            return c[2]
        n = lN.size
        m = np.zeros((4, 2 * n), dtype=lN.dtype)
        m[0, :n], m[1, :n], m[2, n:], m[3, n:] = 1.0, lN, 1.0, lD
        self._lin_cache = (lN, lD, m)
        return m

    def _gn_features(self, lN: np.ndarray, lD: np.ndarray, dt) -> np.ndarray:
        """(n, 6) features [1, lN, lD, lN^2, lN lD, lD^2] in dtype dt, cached for the last arrays seen."""
        c = getattr(self, "_feat_cache", None)
        if c is not None and c[0] is lN and c[1] is lD and c[2].dtype == dt:
            return c[2]
        f = np.stack([np.ones_like(lN), lN, lD, lN * lN, lN * lD, lD * lD], axis=1).astype(dt)
        self._feat_cache = (lN, lD, f)
        return f

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


class BrokenPowerLaw(Form):
    """One-break BNSL (Caballero et al. 2022): y = L_inf + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1).

    Below the break the slope is c0, above it c0 + c1; f1 sets the sharpness. Fitted as
    log y = LSE(e, log b - c0 log x - c1 f1 softplus((log x - log d1)/f1)).
    """

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


FORMS = {
    "chinchilla": ChinchillaND,
    "kaplan-nd": KaplanND,
    "power": PowerLaw,
    "power+const": PowerLawPlusConstant,
    "kaplan-ns": KaplanNS,
    "bcrit": CriticalBatch,
    "bnsl": BrokenPowerLaw,
}


def get_form(name: str, var: str | None = None) -> Form:
    """A form by name; ``var`` names the variable of the one-variable forms (power, power+const, bnsl)."""
    key = name.lower()
    if key not in FORMS:
        raise InputError(f"unknown law {name!r}; choose one of {', '.join(FORMS)}")
    cls = FORMS[key]
    if cls in (PowerLaw, PowerLawPlusConstant, BrokenPowerLaw):
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
