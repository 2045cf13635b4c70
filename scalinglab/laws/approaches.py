"""Hoffmann et al. 2022's Approaches 1 and 2 to N_opt(C), each with a bootstrap 95 % interval.

- Approach 1, ``approach1(curves)``: the lower envelope of the learning curves over compute (``frontier``),
  then N_opt ~ C^a by least squares in log-log on the envelope points. Bootstrap: whole runs (learning
  curves) resampled with replacement, the envelope and the line refitted each time.
- Approach 2, ``isoflop(runs)``: per compute budget a parabola loss = c2 (ln N)^2 + c1 ln N + c0, its
  minimum N_opt = exp(-c1 / 2 c2), then N_opt ~ C^a. Bootstrap: the sizes of a budget are the design, the
  losses are what is random, so each resample adds to every fitted parabola residuals drawn from the pooled
  residuals of all budgets (rescaled by sqrt(n / (n - p)) for the fitted degrees of freedom), refits the
  parabolas and the line.

Both return the exponent ``a`` with ``a_ci95``: the bootstrap percentile interval when ``bootstrap > 0``,
else the t-interval of the log-log regression (which ignores the error in each envelope point or
minimum). Approach 3 is the parametric L(N, D) fit (``scalinglab.laws.fit``): a = beta / (alpha + beta).
C in FLOPs, N in parameters, loss in nats/token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalinglab.errors import FitError, InputError

MAX_BAD_FRACTION = 0.2  # more bootstrap resamples than this without an interior minimum: warned


@dataclass
class PowerFit:
    """y = k x^a fitted by least squares in log-log, with a 95 % interval for a (t or bootstrap)."""

    a: float
    k: float
    a_ci95: tuple[float, float]
    n: int
    r2: float
    x: np.ndarray
    y: np.ndarray
    warnings: list[str] = field(default_factory=list)
    interval: str = "t"  # "t": the regression's t-interval; "bootstrap": percentile of ``samples``
    samples: np.ndarray | None = None  # (K, 2): a, log k of each bootstrap refit

    def predict(self, x):
        return self.k * np.asarray(x, dtype=float) ** self.a

    def predict_interval(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the fitted line at x from the bootstrap refits (needs ``samples``)."""
        if self.samples is None or len(self.samples) == 0:
            raise FitError("an interval for N_opt(C) needs a bootstrap (bootstrap=K)")
        lx = np.log(np.atleast_1d(np.asarray(x, dtype=float)))
        ly = self.samples[:, 1:2] + self.samples[:, 0:1] * lx[None, :]
        q = (1.0 - level) / 2.0
        lo, hi = np.quantile(ly, [q, 1.0 - q], axis=0)
        return np.exp(lo), np.exp(hi)

    def to_dict(self) -> dict:
        d = {
            "a": self.a,
            "k": self.k,
            "a_ci95": list(self.a_ci95),
            "interval": self.interval,
            "n": self.n,
            "r2": self.r2,
            "warnings": list(self.warnings),
        }
        if self.samples is not None:
            d["samples"] = self.samples.tolist()
            d["n_bootstrap"] = int(len(self.samples))
        return d


def _line(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the least-squares line (rows of lx, ly may be batched: (K, m))."""
    mx, my = lx.mean(axis=-1, keepdims=True), ly.mean(axis=-1, keepdims=True)
    sxx = np.sum((lx - mx) ** 2, axis=-1)
    slope = np.sum((lx - mx) * (ly - my), axis=-1) / sxx
    return slope, my[..., 0] - slope * mx[..., 0]


def loglog(
    x: np.ndarray, y: np.ndarray, samples: np.ndarray | None = None, warnings: list[str] | None = None
) -> PowerFit:
    """y = k x^a in log-log; ``samples`` (K, 2) of (a, log k) from a bootstrap give the interval;
    ``warnings`` from the caller (e.g. about its bootstrap) come first in the result's."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3:
        raise FitError(f"need at least 3 points to fit N_opt ~ C^a, got {x.size}")
    lx, ly = np.log(x), np.log(y)
    res = stats.linregress(lx, ly)
    warn = list(warnings or [])
    span = float(np.log10(x.max() / x.min()))
    if span < 1.5:
        warn.append(f"C spans only {span:.2f} decades: the exponent is poorly determined")
    if samples is not None and len(samples) >= 2:
        lo, hi = np.percentile(samples[:, 0], [2.5, 97.5])
        ci, how = (float(lo), float(hi)), "bootstrap"
    else:
        t = stats.t.ppf(0.975, x.size - 2)
        ci, how, samples = (float(res.slope - t * res.stderr), float(res.slope + t * res.stderr)), "t", None
    return PowerFit(
        a=float(res.slope),
        k=float(np.exp(res.intercept)),
        a_ci95=ci,
        n=int(x.size),
        r2=float(res.rvalue**2),
        x=x,
        y=y,
        warnings=warn,
        interval=how,
        samples=samples,
    )


# --- Approach 1: envelope of learning curves -----------------------------------------------------


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
    df = _curve_table(curves, C, loss, N, run)
    return _envelope_of(df, bins_per_decade)


def _curve_table(curves, C: str, loss: str, N: str, run: str | None):
    import pandas as pd

    if run is None:
        run = next((c for c in ("run", "run_id") if c in curves.columns), None)
    for col in (C, loss, N) + ((run,) if run else ()):
        if col not in curves.columns:
            raise InputError(f"frontier: missing column {col!r}; columns are {list(curves.columns)}")
    df = curves[[C, loss, N]].copy()
    df.columns = ["C", "loss", "N"]
    df["run"] = curves[run].to_numpy() if run else np.arange(len(df))
    for col in ("C", "loss", "N"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df[np.isfinite(df["C"]) & np.isfinite(df["loss"]) & (df["C"] > 0) & (df["N"] > 0)]
    if df.empty:
        raise InputError("frontier: no rows with positive, finite C, N and loss")
    return df.reset_index(drop=True)


def _envelope_of(df, bins_per_decade: int):
    b = np.floor(np.log10(df["C"].to_numpy()) * bins_per_decade).astype(int)
    idx = df.assign(_bin=b).groupby("_bin")["loss"].idxmin()
    return df.loc[idx, ["C", "loss", "N", "run"]].sort_values("C").reset_index(drop=True)


def approach1(curves, *, bootstrap: int = 0, seed: int = 0, **kw) -> PowerFit:
    """Hoffmann Approach 1: fit N_opt ~ C^a on the envelope points of ``frontier(curves, **kw)``.

    ``bootstrap`` > 0 resamples whole runs (with replacement, seeded) and refits the envelope and the line,
    for a percentile interval of a (refits with fewer than 3 envelope points are left out and counted)."""
    bins = kw.pop("bins_per_decade", 10)
    df = _curve_table(curves, kw.pop("C", "C"), kw.pop("loss", "loss"), kw.pop("N", "N"), kw.pop("run", None))
    if kw:
        raise InputError(f"approach1: unknown options {sorted(kw)}")
    env = _envelope_of(df, bins)
    samples, bad = None, 0
    if bootstrap:
        rng = np.random.default_rng(seed)
        runs = df["run"].unique()
        groups = {r: g for r, g in df.groupby("run", sort=False)}
        rows = []
        for _ in range(int(bootstrap)):
            pick = rng.choice(runs, size=runs.size, replace=True)
            e = _envelope_of(_concat([groups[r] for r in np.unique(pick)]), bins)
            if len(e) < 3 or e["C"].nunique() < 2:
                bad += 1
                continue
            rows.append(_line(np.log(e["C"].to_numpy()), np.log(e["N"].to_numpy())))
        samples = np.array(rows, dtype=float).reshape(-1, 2)
    warn = [f"{bad} of {bootstrap} bootstrap resamples had fewer than 3 envelope points"] if bad else []
    return loglog(env["C"].to_numpy(), env["N"].to_numpy(), samples, warnings=warn)


def _concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


# --- Approach 2: isoFLOP parabolas ---------------------------------------------------------------


@dataclass
class IsoFlopResult:
    """Per budget the parabola minimum N_opt; then N_opt ~ C^a (and D_opt = C/(6 N_opt) ~ C^(1-a))."""

    budgets: np.ndarray
    n_opt: np.ndarray
    loss_opt: np.ndarray
    fit: PowerFit | None  # None: fewer than 3 budgets (``isoflop(..., min_budgets=1)``), no exponent
    warnings: list[str]
    n_lo: np.ndarray | None = None  # 95% interval of each parabola minimum (NaN: not available)
    n_hi: np.ndarray | None = None
    coef: np.ndarray | None = None  # (n_budgets, 3): loss = c2 (ln N)^2 + c1 ln N + c0 per budget
    n_sizes: np.ndarray | None = None  # runs per budget
    loss_samples: np.ndarray | None = None  # (K, n_budgets): bootstrap loss_opt per budget
    n_samples: np.ndarray | None = None  # (K, n_budgets): bootstrap N_opt per budget

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


def _budget_groups(df, C: str, rel_tol: float) -> list[list[int]]:
    """Row labels grouped into budgets: runs whose C agree within ``rel_tol`` (relative) share one."""
    groups: list[list[int]] = []
    last = None
    for i, c in zip(df.index, df[C].to_numpy(), strict=True):
        if last is None or c > last * (1 + rel_tol):
            groups.append([])
            last = c
        groups[-1].append(i)
    return groups


def _parabolas(lx: list[np.ndarray], ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares parabolas in log N for each budget j (design lx[j]) and each row of ys[j] (K, n_j):
    returns (c2, c1, c0), each (K, n_budgets)."""
    out = []
    for x, y in zip(lx, ys, strict=True):
        V = np.vander(x, 3)  # columns x^2, x, 1
        coef = np.linalg.lstsq(V, y.T, rcond=None)[0]  # (3, K)
        out.append(coef)
    c = np.stack(out, axis=-1)  # (3, K, n_budgets)
    return c[0], c[1], c[2]


def isoflop(
    runs,
    *,
    C: str = "C",
    N: str = "N",
    loss: str = "loss",
    rel_tol: float = 0.05,
    min_budgets: int = 3,
    bootstrap: int = 0,
    seed: int = 0,
) -> IsoFlopResult:
    """Hoffmann Approach 2. ``runs``: DataFrame of final losses with the run's budget C (FLOPs) and N.

    Runs whose C agree within ``rel_tol`` (relative) share a budget. Per budget with >= 3 sizes: fit
    loss = c2 (log N)^2 + c1 log N + c0, N_opt = exp(-c1/(2 c2)); budgets with c2 <= 0 are skipped
    (warned), and a minimum outside the sampled N range is warned as extrapolated. N_opt ~ C^a is fitted
    from 3 budgets on; ``min_budgets`` below 3 also returns the minima of fewer budgets (``fit`` None).
    ``bootstrap`` > 0: the pooled-residual bootstrap of the module docstring, for percentile intervals of
    a, of each budget's N_opt and of its loss_opt (a resample where any parabola loses its interior
    minimum is left out and counted).
    """
    import pandas as pd

    for col in (C, N, loss):
        if col not in runs.columns:
            raise InputError(f"isoflop: missing column {col!r}; columns are {list(runs.columns)}")
    df = runs[[C, N, loss]].apply(pd.to_numeric, errors="coerce").dropna()
    df = df[(df[C] > 0) & (df[N] > 0) & (df[loss] > 0)].sort_values(C)
    budgets, lxs, ys, warnings = [], [], [], []
    for g in _budget_groups(df, C, rel_tol):
        sub = df.loc[g]
        if sub[N].nunique() < 3:
            continue
        c = float(np.exp(np.mean(np.log(sub[C]))))
        lx, yv = np.log(sub[N].to_numpy()), sub[loss].to_numpy()
        c2, c1, _ = np.polyfit(lx, yv, 2)
        if c2 <= 0:
            warnings.append(f"budget C={c:.3g}: the parabola opens downward; skipped")
            continue
        x0 = -c1 / (2 * c2)
        if x0 < lx.min() or x0 > lx.max():
            warnings.append(
                f"budget C={c:.3g}: N_opt {np.exp(x0):.3g} lies outside the sampled sizes (extrapolated)"
            )
        budgets.append(c)
        lxs.append(lx)
        ys.append(yv)
    need = max(1, min_budgets)
    if len(budgets) < need:
        raise FitError(f"isoflop: need {need} or more budgets with >= 3 model sizes each, got {len(budgets)}")
    c2, c1, c0 = (v[0] for v in _parabolas(lxs, [y[None, :] for y in ys]))
    x0 = -c1 / (2 * c2)
    nopt, lopt = np.exp(x0), c0 - c1 * c1 / (4 * c2)
    budgets_a = np.array(budgets)
    nlo = nhi = np.full(len(budgets), np.nan)
    line_samples = loss_s = n_s = None
    if bootstrap:
        n_s, loss_s, bad = _isoflop_bootstrap(lxs, ys, (c2, c1, c0), int(bootstrap), seed)
        if bad > MAX_BAD_FRACTION * bootstrap:
            warnings.append(
                f"{bad} of {bootstrap} bootstrap resamples left a budget without an interior minimum: "
                "the sizes do not bracket the optimum tightly enough"
            )
        if len(n_s) >= 2:
            nlo, nhi = np.percentile(n_s, [2.5, 97.5], axis=0)
            if len(budgets) >= 3:
                line_samples = np.stack(_line(np.log(budgets_a)[None, :], np.log(n_s)), axis=1)
    else:  # delta method on each parabola's covariance: x0 = -c1 / (2 c2) (needs > 4 sizes)
        sds = []
        for lx, yv in zip(lxs, ys, strict=True):
            sd = float("nan")
            if lx.size > 4:
                (p2, p1, _), cov = np.polyfit(lx, yv, 2, cov=True)
                grad = np.array([p1 / (2 * p2 * p2), -1 / (2 * p2)])
                sd = float(np.sqrt(max(grad @ cov[:2, :2] @ grad, 0.0)))
            sds.append(sd)
        sds = np.array(sds)
        nlo, nhi = np.exp(x0 - 1.96 * sds), np.exp(x0 + 1.96 * sds)
    pf = loglog(budgets_a, nopt, line_samples) if len(budgets) >= 3 else None
    if pf is None:
        warnings.append(f"{len(budgets)} budget(s): N_opt ~ C^a needs at least 3, so no exponent")
    return IsoFlopResult(
        budgets=budgets_a,
        n_opt=nopt,
        loss_opt=lopt,
        fit=pf,
        warnings=warnings + (pf.warnings if pf is not None else []),
        n_lo=np.asarray(nlo, dtype=float),
        n_hi=np.asarray(nhi, dtype=float),
        coef=np.stack([c2, c1, c0], axis=1),
        n_sizes=np.array([lx.size for lx in lxs]),
        loss_samples=loss_s,
        n_samples=n_s,
    )


def _isoflop_bootstrap(lxs, ys, coef, K: int, seed: int):
    """Pooled-residual bootstrap of the parabolas: (N_opt samples (K', J), loss_opt samples, bad count)."""
    c2, c1, c0 = coef
    fitted = [c2[j] * x * x + c1[j] * x + c0[j] for j, x in enumerate(lxs)]
    resid = np.concatenate([y - f for y, f in zip(ys, fitted, strict=True)])
    dof = resid.size - 3 * len(lxs)
    if dof < 1:  # exactly determined parabolas (3 sizes each): no residual to resample
        raise FitError(
            "isoflop bootstrap: every budget has exactly 3 sizes, so the parabolas leave no residuals to "
            "resample; plan >= 4 sizes per budget (5 recommended)"
        )
    resid = resid * np.sqrt(resid.size / dof)
    rng = np.random.default_rng(seed)
    ys_b = [f[None, :] + rng.choice(resid, size=(K, f.size)) for f in fitted]
    b2, b1, b0 = _parabolas(lxs, ys_b)
    ok = np.all(b2 > 0, axis=1)
    x0 = -b1[ok] / (2 * b2[ok])
    return np.exp(x0), b0[ok] - b1[ok] ** 2 / (4 * b2[ok]), int(np.sum(~ok))
