"""The study laws, one row each: the table a law is fitted on, its form, the least it needs, what it reads.

``LAWS`` is the one list of the laws a study fits (``plan.LAWS`` is its names; ``fitting.fit_study``
dispatches on it; ``design.identifiability`` calls each row's ``check`` on the planned runs). A law that
fits a ``scalinglab.laws`` form to one table is declared by its fields (``table``, ``form``, ``var``,
``target``, ``min_points``, ``holdout``); one fitted otherwise gives ``fit`` (its table, fit thunk and
options in one). Adding a law is one row here and its functions.

Per law at fit time (``prepare``): ``(table, thunk, extra)`` -- the rows the fit depends on, a thunk that
returns (result dict, back-test dict), the options the stored fit also depends on -- or None (too few
finished runs). Per law at plan time (``check``): a ``LawCheck`` over the planned runs' points (dicts N, D,
C, roles), before anything is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from scalinglab.study.plan import Plan
    from scalinglab.study.store import Store

MIN_DECADES = 1.0  # a law's variable must span this much for its exponent to be identified
MIN_BUDGET_SIZES = 5  # an isoFLOP budget needs this many sizes (>= 3 fit a parabola; 5 bracket it)
ANSWER = "compute-optimal"  # the stored row of the three approaches' verdict and the allocation
ANSWER_FROM = ("L(N,D)", "isoflop", "L(C_min)")

Prepared = tuple[Any, Callable[[], tuple[dict, dict | None]], Any]


@dataclass
class LawCheck:
    """What the plan's runs give one law: runs, decades spanned, verdict and what to add if not identified."""

    law: str
    runs: int
    decades: dict[str, float]
    identified: bool
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "runs": self.runs, "decades": dict(self.decades),
                "identified": self.identified, "why": self.why}


@dataclass
class FitContext:
    """What a law's table and fit read: the store, the plan, the finished runs (one row per run), their
    seed-averaged points and the laws fitted so far (name -> stored fit row)."""

    store: Store
    plan: Plan
    runs: pd.DataFrame
    points: pd.DataFrame
    fitted: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyLaw:
    """One study law. ``form``: a ``scalinglab.laws`` form name, or "fit.<field>" for the plan's choice
    (``fit.l_n_form``). ``uses``: laws fitted first when planned, whose results this one reads.
    ``auto``: fitted whenever one of these laws is planned (it is not named in ``fit.laws``)."""

    name: str
    doc: str
    check: Callable[[list[dict], Plan], LawCheck] | None
    table: Callable[[FitContext], pd.DataFrame] | None = None
    form: str | None = None
    var: str | None = None
    target: str = "loss"
    min_points: int = 3
    holdout: bool = True
    ready: Callable[[pd.DataFrame], bool] | None = None  # beyond min_points
    fit: Callable[[FitContext], Prepared | None] | None = None  # a law fitted otherwise
    uses: tuple[str, ...] = ()
    auto: tuple[str, ...] = ()

    def form_for(self, plan: Plan) -> str:
        return getattr(plan.fit, self.form[4:]) if self.form.startswith("fit.") else self.form

    def prepare(self, ctx: FitContext) -> Prepared | None:
        """(table, thunk, extra) for this law on ``ctx``, or None when there are too few runs for it."""
        if self.fit is not None:
            return self.fit(ctx)
        from scalinglab.study.fitting import _fit_form

        df = self.table(ctx)
        if len(df) < self.min_points or (self.ready is not None and not self.ready(df)):
            return None
        form, plan = self.form_for(ctx.plan), ctx.plan
        extra = form if self.form.startswith("fit.") else None
        var, target, holdout = self.var, self.target, self.holdout
        return df, lambda: _fit_form(form, var, df, plan, target=target, holdout=holdout), extra


# ------------------------------------------------------------------------------ tables and custom fits


def _t_l_n(ctx: FitContext):
    from scalinglab.study.fitting import table_l_n

    return table_l_n(ctx.points)


def _t_l_d(ctx: FitContext):
    from scalinglab.study.fitting import table_l_d

    return table_l_d(ctx.points)


def _t_l_nd(ctx: FitContext):
    from scalinglab.study.fitting import table_l_nd

    return table_l_nd(ctx.points)


def _t_noise(ctx: FitContext):
    from scalinglab.study.fitting import table_noise

    return table_noise(ctx.store, ctx.runs)


def _bcrit(ctx: FitContext) -> dict | None:
    bc = ctx.fitted.get("B_crit(L)")
    return bc["result"] if bc else None


def _fit_isoflop(ctx: FitContext) -> Prepared | None:
    from scalinglab.study.fitting import _isoflop, table_isoflop

    df = table_isoflop(ctx.points)
    if df.empty:
        return None
    return df, lambda: _isoflop(df, ctx.plan), None


def _fit_c_min(ctx: FitContext) -> Prepared | None:
    from scalinglab.study.fitting import _envelope, _l_cmin

    bc = _bcrit(ctx)
    cv = _l_cmin(ctx.store, ctx.runs, bc)
    if cv["run_id"].nunique() < 2:
        return None
    return cv[["N", "C", "loss"]], lambda: _envelope(cv, ctx.plan), bool(bc)


def _fit_n_s(ctx: FitContext) -> Prepared | None:
    import numpy as np

    from scalinglab.study.fitting import _fit_form, curves

    runs = ctx.runs
    pts = runs[runs["roles"].map(lambda r: "L(N)" in r)]
    cv = curves(ctx.store, pts if len(pts) else runs)
    bc = _bcrit(ctx)
    if bc is not None and len(cv):
        from scalinglab.laws.batch import s_min
        from scalinglab.laws.forms import get_form

        b = get_form("bcrit").predict(bc["params"], L=cv["loss"].to_numpy())
        cv["S"] = s_min(cv["S"].to_numpy(), cv["B"].to_numpy(), np.asarray(b))
    df = cv[["N", "S", "loss"]]
    if cv["N"].nunique() < 2 or len(df) < 8:
        return None
    return df, lambda: _fit_form("kaplan-ns", None, df, ctx.plan, holdout=False), bool(bc)


def _fit_extra(law: str) -> Callable[[FitContext], Prepared | None]:
    def prepare(ctx: FitContext) -> Prepared | None:
        from scalinglab.study.fitting_extra import fit_extra

        return fit_extra(law, ctx.store, ctx.plan, ctx.runs, ctx.points, ctx.fitted)

    return prepare


def _fit_answer(ctx: FitContext) -> Prepared | None:
    from scalinglab.study.fitting import _consensus

    return _consensus(ctx.store, ctx.plan, ctx.runs, ctx.points, ctx.fitted)


# ------------------------------------------------------------------------------ identifiability checks


def _span(xs: list[float]) -> float:
    """Decades spanned by the positive values (``laws.data.decades``); 0 with fewer than two."""
    from scalinglab.laws.data import decades

    xs = [x for x in xs if x > 0]
    return decades(xs) if len(xs) >= 2 else 0.0


def _dec(rows) -> dict[str, float]:
    return {v: round(_span([p[v] for p in rows]), 2) for v in ("N", "D", "C")}


def _main(pts: list[dict]) -> list[dict]:
    return [p for p in pts if p["roles"] - {"extra", "pilot", "seed-noise"}]


def _largest_grid_d(main: list[dict]) -> list[dict]:
    grid = [p for p in main if "grid" in p["roles"]]
    if not grid:
        return []
    by: dict[float, set] = {}
    for p in grid:
        by.setdefault(p["D"], set()).add(p["N"])
    d = max(by, key=lambda x: (len(by[x]), x))
    return [p for p in grid if p["D"] == d]


def _one_variable(law: str, rows: list[dict], var: str, form: str, what: str, add: str,
                  widen: str) -> LawCheck:
    """L(N) or L(D): enough distinct values of ``var`` for the form, over enough decades."""
    dec = _dec(rows)
    need = 4 if form == "power+const" else 3
    got = len({p[var] for p in rows})
    if got < need:
        return LawCheck(law, len(rows), dec, False, f"{law} needs >= {need} {what}, got {got}: {add}")
    if dec[var] < MIN_DECADES:
        return LawCheck(law, len(rows), dec, False, f"{law} needs {var} over >= {MIN_DECADES:g} decade, got "
                        f"{dec[var]:.2f}: {widen}")
    return LawCheck(law, len(rows), dec, True)


def _check_l_n(pts: list[dict], plan: Plan) -> LawCheck:
    main = _main(pts)
    rows = [p for p in main if "L(N)" in p["roles"]] or _largest_grid_d(main)
    return _one_variable("L(N)", rows, "N", plan.fit.l_n_form, "model sizes at one D",
                         "add sizes ([model] shapes or n_params)", "add smaller or larger sizes")


def _check_l_d(pts: list[dict], plan: Plan) -> LawCheck:
    main = _main(pts)
    rows = [p for p in main if "L(D)" in p["roles"]]
    if not rows:
        big = max((p["N"] for p in main if "grid" in p["roles"]), default=None)
        rows = [p for p in main if "grid" in p["roles"] and p["N"] == big]
    return _one_variable("L(D)", rows, "D", plan.fit.l_d_form, "token counts at one N",
                         "add kaplan.data_subsets or a grid (tokens.per_param)", "widen the data subsets")


def _check_isoflop(pts: list[dict], plan: Plan) -> LawCheck:
    law, main = "isoflop", _main(pts)
    by: dict[str, list] = {}
    for p in main:
        for r in p["roles"]:
            if r.startswith("isoflop:"):
                by.setdefault(r, []).append(p)
    rows = [p for g in by.values() for p in g]
    dec = _dec(rows)
    full = [g for g in by.values() if len({p["N"] for p in g}) >= 3]
    if len(full) < 3:
        return LawCheck(law, len(rows), dec, False, f"Approach 2 needs >= 3 isoFLOP budgets with >= 3 "
                        f"model sizes each (5 recommended), got {len(full)}: add isoflop.budgets")
    thin = [k for k, g in by.items() if len({p["N"] for p in g}) < MIN_BUDGET_SIZES]
    if thin:
        return LawCheck(law, len(rows), dec, False, f"every isoFLOP budget needs >= {MIN_BUDGET_SIZES} "
                        f"sizes to bracket its optimum; {', '.join(sorted(thin))} have fewer: raise "
                        "isoflop.n_sizes or add [model] shapes")
    return LawCheck(law, len(rows), dec, True)


def _check_l_nd(pts: list[dict], plan: Plan) -> LawCheck:
    law, main = "L(N,D)", _main(pts)
    dec = _dec(main)
    if len(main) < 8:
        return LawCheck(law, len(main), dec, False, f"L(N,D) (5 parameters) needs >= 8 runs, got "
                        f"{len(main)}: add budgets or a grid")
    for v in ("N", "D"):
        if dec[v] < MIN_DECADES:
            return LawCheck(law, len(main), dec, False, f"L(N,D) needs {v} over >= {MIN_DECADES:g} "
                            f"decade, got {dec[v]:.2f}: add budgets or a grid")
    return LawCheck(law, len(main), dec, True)


def _check_c_min(pts: list[dict], plan: Plan) -> LawCheck:
    law, main = "L(C_min)", _main(pts)
    dec = _dec(main)
    if len(main) < 3:
        return LawCheck(law, len(main), dec, False, "the compute frontier needs >= 3 runs of several sizes")
    if len({p["N"] for p in main}) < 3:
        return LawCheck(law, len(main), dec, False, "the compute frontier needs >= 3 model sizes")
    return LawCheck(law, len(main), dec, True)


def _check_n_s(pts: list[dict], plan: Plan) -> LawCheck:
    main = _main(pts)
    rows = [p for p in main if "L(N)" in p["roles"]] or main
    ok = len({p["N"] for p in rows}) >= 2
    return LawCheck("L(N,S)", len(rows), _dec(rows), ok, "" if ok else "L(N,S) needs learning curves of >= 2 "
                    "sizes")


def _check_bcrit(pts: list[dict], plan: Plan) -> LawCheck:
    main = _main(pts)
    ok = plan.train.get("noise_scale", True) is not False
    return LawCheck("B_crit(L)", len(main), _dec(main), ok, "" if ok else "B_crit(L) needs the noise scale: "
                    "remove [train] noise_scale = false")


def _check_repeat(pts: list[dict], plan: Plan) -> LawCheck:
    rows = [p for p in pts if any(r.startswith("repeat:") for r in p["roles"])]
    dec = _dec(rows)
    if len(rows) < 4 or len({p["D"] for p in rows}) < 3:
        return LawCheck("repeat", len(rows), dec, False, "the repeat law needs >= 4 repeated-data runs over "
                        ">= 3 epoch counts: set [repeat] unique_tokens and epochs")
    return LawCheck("repeat", len(rows), dec, True)


def _check_downstream(pts: list[dict], plan: Plan) -> LawCheck:
    main = _main(pts)  # fitted on `study eval` results, which exist only after training
    return LawCheck("downstream", len(main), _dec(main), True, "fitted on the few-shot results of "
                    "`study eval`")


# ------------------------------------------------------------------------------ the table


LAWS: dict[str, StudyLaw] = {
    law.name: law
    for law in (
        StudyLaw("L(N)", "final validation loss vs N of the L(N) runs (or the grid's best-covered token "
                 "budget); seeds averaged; back-test: the largest N held out", _check_l_n, table=_t_l_n,
                 form="fit.l_n_form", var="N"),
        StudyLaw("L(D)", "final loss vs tokens of the L(D) runs (or the grid runs of the largest model)",
                 _check_l_d, table=_t_l_d, form="fit.l_d_form", var="D"),
        StudyLaw("L(C_min)", "Kaplan's envelope / Hoffmann's Approach 1: the lower envelope of every "
                 "learning curve (C = 6 N tokens, C_min with B_crit(L)), with N_opt(C)", _check_c_min,
                 fit=_fit_c_min, uses=("B_crit(L)",)),
        StudyLaw("isoflop", "Hoffmann's Approach 2: per budget a parabola in log N, N_opt ~ C^a",
                 _check_isoflop, fit=_fit_isoflop),
        StudyLaw("L(N,D)", "Hoffmann's Approach 3 (Chinchilla form) on every finished unique-data run",
                 _check_l_nd, table=_t_l_nd, form="chinchilla", min_points=6,
                 ready=lambda df: df["D"].nunique() >= 2),
        StudyLaw("L(N,S)", "Kaplan eq. 1.6 on the learning curves of the L(N) runs (S_min with B_crit(L))",
                 _check_n_s, fit=_fit_n_s, uses=("B_crit(L)",)),
        StudyLaw("B_crit(L)", "Kaplan eq. 1.4 on the measured noise scale B_simple (tokens) vs training loss",
                 _check_bcrit, table=_t_noise, form="bcrit", target="B", holdout=False),
        StudyLaw("repeat", "Muennighoff's R_D* on the [repeat] runs, L(N,D) held at the study's fit",
                 _check_repeat, fit=_fit_extra("repeat"), uses=("L(N,D)",)),
        StudyLaw("downstream", "the OLMo ladder's two steps on the stored few-shot results",
                 _check_downstream, fit=_fit_extra("downstream"), uses=("L(N,D)",)),
        StudyLaw(ANSWER, "the three approaches' N_opt(C) with intervals and back-tests, their agreement and "
                 "the allocation (no loss below an irreducible loss fitted by L(N), L(D), L(N,D), L(C_min))",
                 None, fit=_fit_answer, uses=ANSWER_FROM + ("B_crit(L)", "L(N)", "L(D)"), auto=ANSWER_FROM),
    )
}
NAMES = tuple(name for name, law in LAWS.items() if not law.auto)  # what a plan's fit.laws may name


def get_law(name: str) -> StudyLaw:
    from scalinglab.errors import ConfigError

    if name not in LAWS:
        raise ConfigError(f"unknown law {name!r}; allowed: {list(NAMES)}")
    return LAWS[name]


def fit_order(planned: list[str]) -> list[str]:
    """The planned laws plus the automatic ones that read them, each after the planned laws it uses
    (otherwise in the plan's order)."""
    laws = list(dict.fromkeys(planned))
    laws += [n for n, law in LAWS.items() if n not in laws and set(law.auto) & set(laws)]
    out: list[str] = []
    while len(out) < len(laws):
        nxt = next(n for n in laws if n not in out
                   and all(u in out or u not in laws for u in LAWS[n].uses))
        out.append(nxt)
    return out
