"""One answer from Hoffmann et al.'s three approaches: do they agree, which back-tests best, what to train.

``consensus(runs, curves, target_C=...)`` fits on the same runs

- Approach 1: N_opt ~ C^a on the lower envelope of the learning curves, the envelope's loss L(C) as a
  power law in C (Kaplan's L(C_min));
- Approach 2: isoFLOP parabolas, N_opt ~ C^a through their minima, their minimum losses as a power law
  in C;
- Approach 3: the Chinchilla L(N, D) = E + A/N^alpha + B/D^beta, a = beta / (alpha + beta);

each with a 95 % bootstrap interval for a (``laws.approaches``, ``laws.fit``). The intervals *overlap*
when one value of a lies in all of them. Each approach is back-tested: every run of the largest isoFLOP
budget is held out (never a sibling left in), the approach is refitted on the rest and predicts that
budget's N_opt and best loss, which are compared with the held-out budget's measured parabola minimum and
its best run. The answer at ``target_C`` comes from Approach 3 (the only one that predicts a loss for any
N and D) when the intervals overlap, else from the approach that back-tests best (smallest
|log(N_opt predicted / measured)|, then smallest loss error), and says so.

A number is refused, with the reason, when what it comes from cannot support it: an L(N, D) fit that did
not converge, has a parameter at a bound or not identified, or no bootstrap; or a loss below a fitted
irreducible loss (``Floor``: L_inf of L(N) at its fixed D applies to runs with no more data, of L(D) at
its fixed N to models no larger, E of L(N, D) and L_inf of L(C) everywhere). C in FLOPs, N parameters,
D tokens, loss nats/token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalinglab.errors import FitError, InputError

APPROACHES = {
    "1": "Approach 1 (envelope)",
    "2": "Approach 2 (isoFLOP)",
    "3": "Approach 3 (L(N,D))",
}


@dataclass
class Floor:
    """A fitted irreducible loss: its 95 % low bound, where it applies, and which fit it comes from."""

    low: float
    source: str
    max_D: float | None = None  # applies to predictions with D <= max_D (L(N) fitted at a fixed D)
    max_N: float | None = None  # applies to predictions with N <= max_N (L(D) fitted at a fixed N)

    def applies(self, N: float, D: float) -> bool:
        return (self.max_D is None or D <= self.max_D * (1 + 1e-9)) and (
            self.max_N is None or N <= self.max_N * (1 + 1e-9)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "source": self.source, "max_D": self.max_D, "max_N": self.max_N}


@dataclass
class Prediction:
    """An approach's answer at one compute C: N_opt (params) and loss (nats/token), each with a 95 %
    interval (None where the approach gives no interval)."""

    C: float
    N_opt: float
    N_ci: tuple[float, float] | None
    loss: float | None
    loss_ci: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "N_opt": self.N_opt,
            "N_ci": None if self.N_ci is None else list(self.N_ci),
            "loss": self.loss,
            "loss_ci": None if self.loss_ci is None else list(self.loss_ci),
        }


@dataclass
class Backtest:
    """An approach refitted without the largest budget, against that budget's measurements."""

    C: float
    predicted: Prediction
    N_measured: float
    N_measured_ci: tuple[float, float] | None
    loss_measured: float  # the best held-out run
    n_runs: int

    @property
    def log_N_error(self) -> float:
        """log(N_opt predicted / measured): 0.69 is a factor of 2."""
        return math.log(self.predicted.N_opt / self.N_measured)

    @property
    def loss_rel_error(self) -> float | None:
        if self.predicted.loss is None:
            return None
        return (self.predicted.loss - self.loss_measured) / self.loss_measured

    @property
    def loss_covered(self) -> bool | None:
        ci = self.predicted.loss_ci
        return None if ci is None else bool(ci[0] <= self.loss_measured <= ci[1])

    @property
    def N_covered(self) -> bool | None:
        ci = self.predicted.N_ci
        return None if ci is None else bool(ci[0] <= self.N_measured <= ci[1])

    def score(self) -> tuple[float, float]:
        le = self.loss_rel_error
        return abs(self.log_N_error), abs(le) if le is not None else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "predicted": self.predicted.to_dict(),
            "N_measured": self.N_measured,
            "N_measured_ci": None if self.N_measured_ci is None else list(self.N_measured_ci),
            "loss_measured": self.loss_measured,
            "n_runs": self.n_runs,
            "N_rel_error": math.exp(self.log_N_error) - 1,
            "loss_rel_error": self.loss_rel_error,
            "loss_covered": self.loss_covered,
            "N_covered": self.N_covered,
        }


@dataclass
class Approach:
    """One approach's exponent a of N_opt ~ C^a with its 95 % interval, and its back-test."""

    key: str
    a: float
    a_ci: tuple[float, float]
    interval: str
    warnings: list[str] = field(default_factory=list)
    backtest: Backtest | None = None
    backtest_error: str | None = None

    @property
    def label(self) -> str:
        return APPROACHES[self.key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "a": self.a,
            "a_ci": list(self.a_ci),
            "interval": self.interval,
            "warnings": list(self.warnings),
            "backtest": None if self.backtest is None else self.backtest.to_dict(),
            "backtest_error": self.backtest_error,
        }


@dataclass
class Consensus:
    """The three approaches, whether they agree, and the allocation at ``target_C`` (or why it is refused)."""

    approaches: dict[str, Approach]
    failed: dict[str, str]
    overlap: tuple[float, float] | None  # the common interval of a, None when they do not overlap
    best: str | None  # the approach that back-tests best
    chosen: str | None  # the approach the allocation comes from
    allocation: dict[str, Any] | None
    refused: str | None
    floors: list[Floor]
    notes: list[str] = field(default_factory=list)
    comparable: bool = True  # every approach has an interval for a (else no verdict on agreement)

    def lines(self) -> list[str]:
        """The summary a researcher reads (``lines_of(self.to_dict())``)."""
        return self.lines_of(self.to_dict())

    @staticmethod
    def lines_of(d: dict[str, Any]) -> list[str]:
        """From a stored ``to_dict()``: each exponent with its interval and back-test, the verdict on
        agreement, and the allocation with intervals or the reason it is refused."""
        out = ["N_opt ~ C^a (95 % bootstrap intervals; back-test: the largest budget held out):"]
        aps, failed = d.get("approaches") or {}, d.get("failed") or {}
        for k in APPROACHES:
            if k in aps:
                ap = aps[k]
                lo, hi = (_num(x) for x in ap["a_ci"])
                ci = f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "[no interval]"
                out.append(f"  {APPROACHES[k]:24s} a = {ap['a']:.3f} {ci}")
                out.append(f"      {_bt_text(ap)}")
            elif k in failed:
                out.append(f"  {APPROACHES[k]:24s} -  ({failed[k]})")
        if len(aps) >= 2 and d.get("comparable", True):
            ov = d.get("overlap")
            if ov is not None:
                out.append(f"  the {len(aps)} intervals overlap: a in [{ov[0]:.3f}, {ov[1]:.3f}]")
            else:
                best = d.get("best_backtest")
                name = APPROACHES[best] if best else "none (no back-test ran)"
                out.append(f"  the intervals do NOT overlap: the approaches disagree; best back-test: {name}")
        out += [f"  note: {n}" for n in d.get("notes") or []]
        a = d.get("allocation")
        if d.get("refused"):
            out.append(f"allocation: REFUSED: {d['refused']}")
        elif a is not None:
            src = APPROACHES.get(d.get("chosen") or "", "")
            from scalinglab.laws.allocate import allocation_lines

            out.append(f"allocation at C = {a['C']:.4g} FLOPs (from {src}; [low, high] = 95 % interval):")
            out += allocation_lines(a, indent="  ")
            for n in a.get("notes") or []:
                out.append(f"  note: {n}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "approaches": {k: v.to_dict() for k, v in self.approaches.items()},
            "failed": dict(self.failed),
            "overlap": None if self.overlap is None else list(self.overlap),
            "best_backtest": self.best,
            "chosen": self.chosen,
            "allocation": self.allocation,
            "refused": self.refused,
            "floors": [f.to_dict() for f in self.floors],
            "notes": list(self.notes),
            "comparable": self.comparable,
        }


def _num(x) -> float:
    """A stored number (JSON keeps NaN as null) as a float."""
    return float("nan") if x is None else float(x)


def _bt_text(ap: dict[str, Any]) -> str:
    bt = ap.get("backtest")
    if bt is None:
        return f"no back-test: {ap.get('backtest_error') or 'not run'}"
    p = bt["predicted"]
    s = (f"back-test at C={bt['C']:.3g}: N_opt {p['N_opt']:.3g} vs {bt['N_measured']:.3g} measured "
         f"({100 * bt['N_rel_error']:+.0f}%)")
    if bt.get("loss_rel_error") is not None:
        cov = {None: "", True: ", inside its interval", False: ", OUTSIDE its interval"}
        s += (f"; loss {p['loss']:.4f} vs best run {bt['loss_measured']:.4f} "
              f"({100 * bt['loss_rel_error']:+.2f}%{cov[bt.get('loss_covered')]})")
    return s


# ---------------------------------------------------------------------------------------------- pieces


def _pct(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    q = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(np.asarray(x, dtype=float), [q, 100 - q])
    return float(lo), float(hi)


def _line_predict(lc: np.ndarray, ly: np.ndarray, lc_at: float) -> np.ndarray:
    """Least-squares lines through the rows of ly (K, m) over lc (m,), evaluated at lc_at: (K,)."""
    from scalinglab.laws.approaches import _line

    slope, icpt = _line(np.broadcast_to(lc, ly.shape), ly)
    return icpt + slope * lc_at


def _approach1(curves, C_at: float, bootstrap: int, seed: int):
    """(a, a_ci, interval kind, warnings, Prediction at C_at) of Approach 1 on these curves."""
    from scalinglab.laws.approaches import approach1, frontier
    from scalinglab.laws.fit import fit

    pf = approach1(curves, bootstrap=bootstrap, seed=seed)
    n_ci = pf.predict_interval(C_at) if pf.samples is not None else None
    env = frontier(curves)
    loss = loss_ci = None
    try:
        lf = fit("power", {"C": env["C"].to_numpy(), "loss": env["loss"].to_numpy()}, var="C",
                 bootstrap=bootstrap, seed=seed)
        loss = float(lf.predict(C=C_at))
        if lf.samples is not None:
            lo, hi = lf.predict_interval(C=np.array([C_at]))
            loss_ci = (float(lo[0]), float(hi[0]))
    except (FitError, InputError):
        pass
    pred = Prediction(C_at, float(pf.predict(C_at)), None if n_ci is None else
                      (float(n_ci[0][0]), float(n_ci[1][0])), loss, loss_ci)
    return pf.a, pf.a_ci95, pf.interval, list(pf.warnings), pred


def _approach2(iso_runs, C_at: float, bootstrap: int, seed: int, exponent: bool = True):
    """(a, a_ci, interval, warnings, Prediction at C_at) of Approach 2; with two budgets (a back-test of
    three) the line through their minima, with no exponent interval of its own."""
    from scalinglab.laws.approaches import isoflop

    r = isoflop(iso_runs, min_budgets=3 if exponent else 2, bootstrap=bootstrap, seed=seed)
    lc = np.log(r.budgets)
    n_pt = float(np.exp(_line_predict(lc, np.log(r.n_opt)[None, :], math.log(C_at))[0]))
    l_pt = float(np.exp(_line_predict(lc, np.log(r.loss_opt)[None, :], math.log(C_at))[0]))
    n_ci = l_ci = None
    if r.n_samples is not None and len(r.n_samples) >= 2:
        n_ci = _pct(np.exp(_line_predict(lc, np.log(r.n_samples), math.log(C_at))))
        l_ci = _pct(np.exp(_line_predict(lc, np.log(r.loss_samples), math.log(C_at))))
    pred = Prediction(C_at, n_pt, n_ci, l_pt, l_ci)
    if r.fit is None:
        return float("nan"), (float("nan"), float("nan")), "none", list(r.warnings), pred
    return r.a, r.a_ci95, r.fit.interval, list(r.warnings), pred


def _approach3(lnd, C_at: float):
    """(a, a_ci, interval, warnings, Prediction, Allocation) of the L(N, D) fit ``lnd`` (a FitResult)."""
    from scalinglab.laws.allocate import allocate

    al = allocate(C_at, lnd)
    pred = Prediction(C_at, al.N_opt, al.N_opt_ci, al.loss, al.loss_ci)
    a_ci = al.a_ci if al.a_ci is not None else (float("nan"), float("nan"))
    how = "bootstrap" if al.a_ci is not None else "none"
    return float(al.a), a_ci, how, list(lnd.warnings), pred, al


def _measured(held, bootstrap: int, seed: int) -> tuple[float, tuple[float, float] | None, float]:
    """The held-out budget's parabola minimum N_opt (with its bootstrap interval) and its best run's loss."""
    from scalinglab.laws.approaches import isoflop

    r = isoflop(held, min_budgets=1, bootstrap=bootstrap, seed=seed)
    ci = None
    if r.n_lo is not None and np.isfinite(r.n_lo[0]):
        ci = (float(r.n_lo[0]), float(r.n_hi[0]))
    return float(r.n_opt[0]), ci, float(held["loss"].min())


def consensus(
    runs,
    curves=None,
    *,
    target_C: float,
    lnd=None,
    fit_lnd=None,
    floors: list[Floor] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> Consensus:
    """The three approaches on the same runs and the allocation at ``target_C`` FLOPs (module docstring).

    ``runs``: DataFrame with one row per run: run, N, D, C (= 6 N D), loss and ``budget`` (the isoFLOP
    budget in FLOPs; NaN for runs of no budget). ``curves``: learning curves (run, N, C, loss) for
    Approach 1 (None: no Approach 1). ``lnd``: the L(N, D) FitResult of all runs (None: no Approach 3);
    ``fit_lnd(df)`` refits it on a subset for its back-test. ``floors``: irreducible losses fitted by
    other laws on the same runs.
    """
    if not (target_C > 0 and math.isfinite(target_C)):
        raise InputError(f"target_C = {target_C!r}: a positive number of FLOPs")
    floors = list(floors or [])
    approaches: dict[str, Approach] = {}
    failed: dict[str, str] = {}
    preds: dict[str, Prediction] = {}
    alloc3 = None
    iso = runs[np.isfinite(runs["budget"].astype(float))] if "budget" in runs else runs.iloc[:0]
    iso = iso.assign(C=iso["budget"].astype(float)) if len(iso) else iso
    budgets = sorted(iso["C"].unique()) if len(iso) else []

    def attempt(key, thunk):
        try:
            a, ci, how, warns, pred, *rest = thunk()
        except (FitError, InputError, ValueError) as e:
            failed[key] = str(e)
            return None
        approaches[key] = Approach(key, float(a), (float(ci[0]), float(ci[1])), how, warns)
        preds[key] = pred
        return rest[0] if rest else None

    if curves is not None and len(curves):
        attempt("1", lambda: _approach1(curves, target_C, bootstrap, seed))
    else:
        failed["1"] = "no learning curves"
    if len(budgets):
        attempt("2", lambda: _approach2(iso, target_C, bootstrap, seed))
    else:
        failed["2"] = "no isoFLOP budgets in the plan"
    if lnd is not None:
        alloc3 = attempt("3", lambda: _approach3(lnd, target_C))
    else:
        failed["3"] = "no L(N,D) fit"

    # back-tests: hold out every run of the largest budget
    if len(budgets) >= 2:
        c_h = float(budgets[-1])
        held = iso[iso["C"] == c_h]
        rest_ids = set(runs["run"]) - set(held["run"])
        try:
            meas = _measured(held, bootstrap, seed)
        except (FitError, InputError) as e:
            meas = None
            for ap in approaches.values():
                ap.backtest_error = f"the held-out budget has no measurable minimum ({e})"
        if meas is not None:
            jobs = {
                "1": lambda: _approach1(curves[curves["run"].isin(rest_ids)], c_h, bootstrap, seed)[4],
                "2": lambda: _approach2(iso[iso["C"] != c_h], c_h, bootstrap, seed, exponent=False)[4],
                "3": lambda: _approach3(fit_lnd(runs[runs["run"].isin(rest_ids)]), c_h)[4],
            }
            for k, ap in approaches.items():
                if k == "3" and fit_lnd is None:
                    ap.backtest_error = "no refit function"
                    continue
                try:
                    p = jobs[k]()
                except (FitError, InputError, ValueError) as e:
                    ap.backtest_error = str(e)
                    continue
                ap.backtest = Backtest(c_h, p, meas[0], meas[1], meas[2], int(len(held)))
    else:
        for ap in approaches.values():
            ap.backtest_error = "needs >= 2 isoFLOP budgets (the largest is held out)"

    overlap = None
    notes: list[str] = []
    missing = [k for k, ap in approaches.items() if not all(np.isfinite(ap.a_ci))]
    if missing:
        notes.append("cannot judge agreement: no interval for " + ", ".join(APPROACHES[k] for k in missing)
                     + " (fit with a bootstrap)")
    elif approaches:
        lo = max(ap.a_ci[0] for ap in approaches.values())
        hi = min(ap.a_ci[1] for ap in approaches.values())
        overlap = (lo, hi) if lo <= hi else None
    tested = {k: ap.backtest.score() for k, ap in approaches.items() if ap.backtest is not None}
    best = min(tested, key=tested.get) if tested else None
    if overlap is not None or missing or len(approaches) == 1:
        chosen = "3" if "3" in approaches else (best or next(iter(approaches), None))
    else:
        chosen = best or ("3" if "3" in approaches else next(iter(approaches), None))
        if chosen and best:
            notes.append(f"the allocation comes from {APPROACHES[chosen]}, the best back-test")
        elif chosen:
            notes.append(f"no back-test ran to choose between them: the allocation is {APPROACHES[chosen]}'s")
    allocation, refused = None, None
    if chosen is None:
        why = "; ".join(f"{APPROACHES[k]}: {v}" for k, v in failed.items())
        refused = f"no approach could be fitted: {why}"
    elif chosen == "3":
        allocation = alloc3.to_dict()
        if alloc3.refused:
            refused = f"the L(N,D) fit cannot support it: {alloc3.refused}" + _fix_advice(lnd)
    else:
        allocation = _allocation_from_prediction(preds[chosen])
        a_lo = approaches[chosen].a_ci[0]
        if allocation["N_opt_ci"] is None:
            refused = f"{APPROACHES[chosen]} has no bootstrap, so N_opt has no interval"
        elif not a_lo > 0:
            hi = approaches[chosen].a_ci[1]
            refused = (f"{APPROACHES[chosen]}'s exponent interval [{a_lo:.3g}, {hi:.3g}] reaches 0: these "
                       "runs do not show N_opt growing with C (add budgets, or sizes per budget)")
    if allocation is not None and refused is None:
        _check_floors(allocation, floors)
    return Consensus(
        approaches, failed, overlap, best, chosen, allocation, refused, floors, notes, comparable=not missing
    )


def _allocation_from_prediction(p: Prediction) -> dict[str, Any]:
    """An allocation dict from Approach 1 or 2's N_opt(C) (D = C / 6N) and loss(C)."""
    d = p.C / (6 * p.N_opt)
    out = {
        "C": p.C,
        "N_opt": p.N_opt,
        "D_opt": d,
        "tokens_per_param": d / p.N_opt,
        "loss": p.loss,
        "N_opt_ci": None if p.N_ci is None else list(p.N_ci),
        "D_opt_ci": None if p.N_ci is None else [p.C / (6 * p.N_ci[1]), p.C / (6 * p.N_ci[0])],
        "tokens_per_param_ci": None if p.N_ci is None else
        [p.C / (6 * p.N_ci[1] ** 2), p.C / (6 * p.N_ci[0] ** 2)],
        "loss_ci": None if p.loss_ci is None else list(p.loss_ci),
        "notes": ["C = 6 N D"],
        "supported": True,
        "refused": None,
    }
    return out


def _check_floors(a: dict[str, Any], floors: list[Floor]) -> None:
    """Refuse a loss below an irreducible loss fitted elsewhere; clip an interval's low end at one."""
    if a.get("loss") is None:
        return
    N, D = a["N_opt"], a["D_opt"]
    for f in floors:
        if not f.applies(N, D):
            continue
        if a["loss"] < f.low:
            a["loss_refused"] = (
                f"the predicted loss there is below the irreducible loss {f.source} fitted on the same runs "
                f"(its 95 % low {f.low:.4f} nats/token): the fits contradict each other"
            )
            a["loss"], a["loss_ci"] = None, None
            return
        ci = a.get("loss_ci")
        if ci is not None and ci[0] < f.low:
            a["loss_ci"] = [f.low, ci[1]]
            a.setdefault("notes", []).append(
                f"the loss interval's low end is raised to the irreducible loss of {f.source} ({f.low:.4f})"
            )


def _fix_advice(lnd) -> str:
    """What runs would identify the L(N, D) parameters that are not."""
    bad = (set(getattr(lnd, "at_bound", [])) | set(getattr(lnd, "not_identified", []))
           | set(getattr(lnd, "interval_at_bound", [])))
    tips = []
    if "E" in bad:
        tips.append("E (the loss floor) needs runs where the loss flattens: larger models trained on more "
                    "data, i.e. a larger isoFLOP budget or longer runs of the largest sizes")
    if bad & {"B", "beta"}:
        tips.append("beta needs D over >= 1 decade at fixed N: add a grid (several token counts per size)")
    if bad & {"A", "alpha"}:
        tips.append("alpha needs N over >= 1 decade: add model sizes")
    warn = " ".join(getattr(lnd, "warnings", []))
    if "corr(alpha, beta)" in warn:
        tips.append("alpha and beta are confounded (N and D moved together): add runs off the isoFLOP "
                    "diagonal, e.g. a grid over N x D")
    if not tips:
        return ""
    return "; to fix: " + "; ".join(tips) + " (`scalinglab study suggest DIR --target C=...` proposes runs)"


# --------------------------------------------------------------------- one approach at another budget


def allocation_at(
    key: str,
    C: float,
    *,
    runs=None,
    curves=None,
    lnd=None,
    floors: list[Floor] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Approach ``key``'s allocation dict at ``C`` FLOPs, as ``consensus`` makes it at its target (same
    inputs, intervals, refusals and floors), for a table of budgets beside the answer. ``refused`` holds
    the reason when the approach cannot support a number there (``consensus``'s wording)."""
    if key == "3":
        if lnd is None:
            raise InputError("Approach 3 needs the L(N,D) fit (lnd=FitResult)")
        al = _approach3(lnd, C)[5]
        out = al.to_dict()
        if al.refused:
            out["refused"] = f"the L(N,D) fit cannot support it: {al.refused}" + _fix_advice(lnd)
    elif key in ("1", "2"):
        if key == "1":
            pred = _approach1(curves, C, bootstrap, seed)[4]
        else:
            iso = runs[np.isfinite(runs["budget"].astype(float))]
            pred = _approach2(iso.assign(C=iso["budget"].astype(float)), C, bootstrap, seed)[4]
        out = _allocation_from_prediction(pred)
        if out["N_opt_ci"] is None:
            out["refused"] = f"{APPROACHES[key]} has no bootstrap, so N_opt has no interval"
    else:
        raise InputError(f"approach {key!r}: one of {sorted(APPROACHES)}")
    if not out.get("refused"):
        _check_floors(out, list(floors or []))
    return out
