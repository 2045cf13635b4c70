"""The report's bridge to ``scalinglab.laws``: which laws the figures need, taken from the store or fitted.

Every fit the report shows is a ``FitView``: the form, its parameters and intervals, the convergence verdict
and where it came from. A fit stored by the study (``Store.fits()``) is used as is; a missing one is fitted
here with ``scalinglab.laws.fit.fit`` on the table the figure draws (the report never fits by itself).
When a fit cannot be had, the reason is kept so the page can say why a curve is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.report import derive
from scalinglab.report.data import StudyData


@dataclass
class FitSpec:
    """A law the report wants: ``form`` over ``var`` (one-variable forms), fitted on ``table(ctx)``.
    ``study_law``: the name the study runner stores the same law under (``Store.fits()[i]["law"]``)."""

    key: str
    title: str
    form: str
    var: str | None
    table: Callable[[StudyData], pd.DataFrame]
    bootstrap: int = 0
    study_law: str | None = None


STARTS = 300  # the report's own fits use a seeded subsample of each form's start grid (4,500 for Chinchilla:
# ~10x faster, and on the synthetic study ~90% of the subsample still reaches the same optimum); the
# study's stored fits use the full grid and are preferred when present.


@dataclass
class FitView:
    """A fitted law as the report uses it. ``ci95``: name -> (lo, hi); ``result``: the laws FitResult."""

    key: str
    title: str
    form: Any
    params: dict[str, float]
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    converged: bool = True
    warnings: list[str] = field(default_factory=list)
    n_points: int = 0
    r2_log: float | None = None
    source: str = ""
    result: Any = None
    backtest: dict | None = None

    def label(self, prefix: str = "fit") -> str:
        """A short legend label: the prefix and the form's name (the parameters go in the caption)."""
        return f"{prefix} ({self.form.name})"

    def describe(self) -> str:
        """One caption sentence: the law, its form and every fitted parameter (any form)."""
        from scalinglab.report.style import fmt_num

        ps = ", ".join(f"{k} = {fmt_num(v, 3)}" for k, v in self.params.items())
        return f"{self.title}: {self.form.description} with {ps} ({self.source})."

    def unidentified(self) -> list[str]:
        """Parameters the runs do not pin down: at a bound, not identified, or an interval at a bound."""
        kinds = ("at_bound", "not_identified", "interval_at_bound")
        return sorted({k for kind in kinds for k in getattr(self.result, kind, None) or []})

    def support_problems(self) -> list[str]:
        """Why this fit cannot support an acted-on number (``FitResult.support_problems``; [] when it can)."""
        fn = getattr(self.result, "support_problems", None)
        return [] if fn is None else list(fn())

    def predict(self, **variables) -> np.ndarray:
        """The law at the given variables (N params, D tokens, C FLOPs, S steps, L nats/token)."""
        return np.asarray(self.form.predict(self.params, **variables), float)

    def interval(
        self, level: float = 0.95, noise: bool = True, **variables
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A ``level`` interval from the FitResult's bootstrap refits, or None when it has none. ``noise``:
        for a new run (the fit's scatter added, ``FitResult.predict_interval``); False: the band of the
        mean curve, what a figure shades around a fitted line."""
        fn = getattr(self.result, "predict_interval", None)
        if fn is None:
            return None
        try:
            out = fn(level=level, noise=noise, **variables)
        except Exception:  # no bootstrap stored, or the form cannot give one: no band, said in the caption
            return None
        if isinstance(out, dict):
            out = (out.get("lo"), out.get("hi"))
        lo, hi = out[0], out[1]
        return np.asarray(lo, float), np.asarray(hi, float)


def best_per(pts: pd.DataFrame, col: str) -> pd.DataFrame:
    """Lower-left Pareto set of (col, loss): the best loss reached with at most that much ``col``."""
    if len(pts) == 0:
        return pts
    s = pts.sort_values(col)
    keep = s["loss"].to_numpy() <= np.minimum.accumulate(s["loss"].to_numpy())
    return s[keep]


def _t_frontier(d: StudyData) -> pd.DataFrame:
    return derive.envelope(derive.curves(d))[["C", "loss"]]


def _t_lnd(d: StudyData) -> pd.DataFrame:
    p = derive.final_points(d)
    return p[["N", "D", "loss"]]


def _t_ln(d: StudyData) -> pd.DataFrame:
    p = derive.final_points(d)
    return p.groupby("N", as_index=False)["loss"].min()[["N", "loss"]]


def _t_ld(d: StudyData) -> pd.DataFrame:
    return best_per(derive.final_points(d), "D")[["D", "loss"]]


def _t_ns(d: StudyData) -> pd.DataFrame:
    c = derive.curves(d)
    if len(c) == 0:
        return pd.DataFrame(columns=["N", "S", "loss"])
    c = c.assign(S=c["step"].astype(float))
    last = c.groupby("run_id")["step"].transform("max")
    c = c[c["step"] >= 0.05 * last]  # past warm-up and the first transient
    return c[["N", "S", "loss"]]


def _t_bcrit(d: StudyData) -> pd.DataFrame:
    n = derive.noise_points(d)
    return pd.DataFrame({"L": n["loss"], "B": n["B_simple"]})


BANDS = 100  # bootstrap resamples of the report's own fits: every fitted line is drawn with its 95 % band

SPECS = [
    FitSpec("frontier", "Compute frontier L(C)", "power+const", "C", _t_frontier, bootstrap=BANDS),
    FitSpec("lnd", "L(N, D)", "chinchilla", None, _t_lnd, bootstrap=BANDS, study_law="L(N,D)"),
    FitSpec("ln", "L(N), best run per N", "power+const", "N", _t_ln, bootstrap=BANDS, study_law="L(N)"),
    FitSpec("ld", "L(D), data frontier", "power+const", "D", _t_ld, bootstrap=BANDS, study_law="L(D)"),
    FitSpec("ns", "L(N, S) learning curves", "kaplan-ns", None, _t_ns, bootstrap=BANDS, study_law="L(N,S)"),
    FitSpec("bcrit", "B_crit(L) from the noise scale", "bcrit", None, _t_bcrit, bootstrap=BANDS,
            study_law="B_crit(L)"),
]


def _laws():
    """(get_form, fit) from scalinglab.laws, or raise ImportError naming what is missing."""
    from scalinglab.laws.fit import fit
    from scalinglab.laws.forms import get_form

    return get_form, fit


def _identify(result: dict) -> tuple[str | None, str | None]:
    """(form name, variable) of a stored FitResult dict (``to_dict()``: keys ``law`` and ``var``)."""
    law = result.get("law")
    return (str(law).lower() if law else None), result.get("var")


def _view_from_result(spec: FitSpec, res: Any, source: str, backtest: dict | None = None) -> FitView:
    ci = {k: (float(v[0]), float(v[1])) for k, v in (res.ci95 or {}).items()}
    r2 = float(res.r2_log) if res.r2_log is not None and np.isfinite(res.r2_log) else None
    return FitView(
        key=spec.key,
        title=spec.title,
        form=res.form,
        params=dict(res.params),
        ci95=ci,
        converged=bool(res.converged),
        warnings=list(res.warnings),
        n_points=int(res.n_points),
        r2_log=r2,
        source=source,
        result=res,
        backtest=backtest,
    )


def collect_fits(data: StudyData, *, fit_missing: bool = True) -> tuple[dict[str, FitView], dict[str, str]]:
    """Every fit of ``SPECS``: from the store when a stored law matches the form, else fitted here.
    Returns (views by key, reasons by key for the fits that could not be had)."""
    views: dict[str, FitView] = {}
    why: dict[str, str] = {}
    try:
        get_form, fit = _laws()
    except ImportError as e:
        return views, {s.key: f"scalinglab.laws is not usable ({e})" for s in SPECS}
    from scalinglab.laws.fit import FitResult

    by_name = {row.get("law"): row for row in data.fits}
    stored = {}
    for row in data.fits:
        if isinstance(row.get("result"), dict):
            stored.setdefault(_identify(row["result"]), row)
    other_n = data.fits_params is not None and data.fits_params != data.param_count
    for spec in SPECS:
        row = by_name.get(spec.study_law) or stored.get((spec.form, spec.var))
        if row is not None and other_n:  # fitted on another N: its curves do not belong on these axes
            why[spec.key] = (f"stored fit '{row.get('law')}' uses N = {data.fits_params} parameters, the "
                             f"report {data.param_count}: refitted")
            row = None
        if row is not None:
            try:
                res = FitResult.from_dict(row["result"])
                views[spec.key] = _view_from_result(
                    spec, res, f"stored fit '{row.get('law')}'", row.get("backtest")
                )
                continue
            except Exception as e:  # a stored fit the laws package cannot read: refit, and say so
                why[spec.key] = f"stored fit '{row.get('law')}' unreadable ({e}); refitted"
        if not fit_missing:
            why.setdefault(spec.key, "no stored fit")
            continue
        table = spec.table(data).dropna()
        form = get_form(spec.form, spec.var)
        need = len(form.param_names) + 1
        if len(table) < need:
            why[spec.key] = f"{len(table)} points, {spec.form} needs at least {need}"
            continue
        try:
            res = fit(form, table, loss=form.target, bootstrap=spec.bootstrap, seed=0, starts=STARTS)
        except Exception as e:  # FitError and friends: shown on the page, the figure draws the data alone
            why[spec.key] = f"fit failed: {e}"
            continue
        n_st = f", {res.n_at_optimum} of {res.n_starts} starts at the optimum" if res.n_starts else ""
        views[spec.key] = _view_from_result(spec, res, f"fitted by the report{n_st}")
    return views, why
