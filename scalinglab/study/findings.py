"""Kaplan et al. 2020's architecture findings, measured on a study's own runs, as fitted summaries.

- ``shape`` (Fig. 5): per fixed N, the loss increase over the best shape and the ratio range within 3 %
  (``scalinglab.study.shape``; runs of a ``design = "shape"`` plan);
- ``context`` (Fig. 20, App. D.5): per run, L(t) = L_inf + (t/t_c)^-a fitted to its final loss by position,
  and the trend of a with N (``scalinglab.laws.context``);
- ``families`` (Fig. 7): LSTM and transformer runs in one study: L(N) per family and, at matched N, the
  loss gap at the first and the last positions of the context (LSTMs match early tokens, fall behind later);
- ``transfer`` (Fig. 8): per extra evaluation set, L_other(N) vs L_train(N) and their offset in log space
  with an interval (``scalinglab.laws.transfer``).

Everything is computed from three frames (``summarize``), which the study store (``from_store``) and the
report (``scalinglab.report``) both provide: ``runs`` (run_id, arch, N, loss, roles, n_layer, d_model,
n_head, d_ff; finished runs only), ``positions`` (run_id, eval_set, position, loss, tokens) and ``sets``
(run_id, eval_set, loss, bpb). Losses in nats/token, N in parameters under the study's convention.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

VAL = "val"
EARLY_FRAC, LATE_FRAC = 1 / 16, 1 / 10  # "early" = the first 1/16 of the positions, "late" = the last 1/10


@dataclass
class ContextSummary:
    """Per run: L_inf, t_c, a (with a 95 % bootstrap interval over positions); ``fits`` run_id -> FitResult;
    ``trend`` per arch: a vs log10 N (``laws.context.Trend``) where there are three runs of two sizes."""

    table: pd.DataFrame
    fits: dict[str, Any]
    trend: dict[str, Any] = field(default_factory=dict)


@dataclass
class FamilySummary:
    """``ln`` arch -> power-law L(N) fit (or None); ``pairs``: LSTM run, its nearest-N transformer run, their
    N and the mean loss gap (LSTM minus transformer, nats/token) over early and late positions; ``best``: the
    pair nearest in N (ties: the larger)."""

    ln: dict[str, Any]
    pairs: pd.DataFrame
    best: dict[str, Any] | None


@dataclass
class Findings:
    shape: list = field(default_factory=list)  # study.shape.ShapeGroup
    context: ContextSummary | None = None
    families: FamilySummary | None = None
    transfer: dict[str, dict[str, Any]] = field(default_factory=dict)  # set -> arch -> TransferResult
    notes: list[str] = field(default_factory=list)  # what could not be computed, and why

    def headlines(self) -> list[str]:
        """One line per finding, as `study run` prints them at the end."""
        out = []
        for g in self.shape:
            out.append(f"shape (Kaplan Fig. 5): {g.describe()}")
        if self.context is not None and len(self.context.table):
            out.append("loss by position (Kaplan Fig. 20), L(t) = L_inf + (t/t_c)^-a per run:")
            for arch, t in self.context.table.sort_values("N").groupby("arch"):
                rows = list(t.itertuples())
                shown = rows if len(rows) <= 6 else rows[:3] + rows[-3:]
                per = "; ".join(f"N={r.N:.3g}: a={r.a:.3f} [{r.a_lo:.3f}, {r.a_hi:.3f}]"
                                + ("" if r.converged and not r.at_bound else " (at a bound)") for r in shown)
                more = f" ({len(rows) - 6} more in the report)" if len(rows) > 6 else ""
                out.append(f"  {arch}: {per}{more}")
                if arch in self.context.trend:
                    out.append(f"  a(N) for {arch}: {self.context.trend[arch].describe()}")
        if self.families is not None and self.families.best is not None:
            b = self.families.best
            out.append(
                f"LSTM vs transformer (Kaplan Fig. 7) at N = {b['N_lstm']:.3g} (LSTM) / {b['N_gpt']:.3g} "
                f"(transformer): loss gap {b['gap_early']:+.4f} nats/token at positions {b['early']}, "
                f"{b['gap_late']:+.4f} at positions {b['late']}"
                + "".join(f"; {a} alpha_N {f.params['alpha']:.3f}" for a, f in self.families.ln.items() if f)
            )
        for name, by_arch in self.transfer.items():
            for arch, res in by_arch.items():
                out.append(f"transfer (Kaplan Fig. 8), {arch}: {res.describe(name)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what `study fit --json` reports under ``architecture``."""
        d: dict[str, Any] = {"notes": list(self.notes), "headlines": self.headlines()}
        d["shape"] = [{"kind": g.kind, "n_target": g.n_target, "n_measured": list(g.n_measured),
                       **g.result.to_dict()} for g in self.shape]
        if self.context is not None:
            d["context"] = {"runs": self.context.table.to_dict("records"),
                            "trend": {a: vars(t) for a, t in self.context.trend.items()}}
        if self.families is not None:
            d["families"] = {"pairs": self.families.pairs.to_dict("records"), "best": self.families.best,
                             "alpha_N": {a: (f.params["alpha"] if f else None)
                                         for a, f in self.families.ln.items()}}
        d["transfer"] = {
            name: {a: {"offset": r.offset, "offset_ci": list(r.offset_ci), "ratio": r.ratio, "slope": r.slope,
                       "slope_ci": list(r.slope_ci), "n_runs": r.n_runs,
                       "alpha_train": r.train.params["alpha"] if r.train else None,
                       "alpha_other": r.other.params["alpha"] if r.other else None} for a, r in by.items()}
            for name, by in self.transfer.items()
        }
        return d


def summarize(runs: pd.DataFrame, positions: pd.DataFrame, sets: pd.DataFrame, *, tolerance: float = 0.03,
              bootstrap: int = 100) -> Findings:
    """Every finding the frames support (see the module docstring); what they cannot support is left out
    with a note when the study meant to have it."""
    from scalinglab.study.shape import shape_summary

    f = Findings()
    if len(runs) == 0:
        return f
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        f.shape = shape_summary(runs, "N", tolerance)
        f.context = _context(runs, positions, bootstrap, f.notes)
        f.families = _families(runs, positions, f.notes)
        f.transfer = _transfer(runs, sets, f.notes)
    return f


def _context(runs, positions, bootstrap, notes) -> ContextSummary | None:
    from scalinglab.laws.context import exponent_trend, fit_position_loss

    if positions is None or len(positions) == 0:
        return None
    p = positions[(positions["eval_set"] == VAL) & positions["run_id"].isin(runs["run_id"])]
    info = runs.set_index("run_id")
    rows, fits = [], {}
    for rid, g in p.groupby("run_id", sort=False):
        g = g.sort_values("position")
        try:
            r = fit_position_loss(g["position"].to_numpy(float), g["loss"].to_numpy(float),
                                  bootstrap=bootstrap)
        except Exception as e:  # a run whose curve cannot be fitted is said, not dropped silently
            notes.append(f"L(t) of run {rid}: not fitted ({type(e).__name__}: {e})")
            continue
        fits[rid] = r
        lo, hi = (r.ci95 or {}).get("alpha", (math.nan, math.nan))
        rows.append(dict(run_id=rid, arch=info.at[rid, "arch"], N=float(info.at[rid, "N"]),
                         L_inf=r.params["L_inf"], t_c=r.params["t_0"], a=r.params["alpha"], a_lo=lo, a_hi=hi,
                         converged=bool(r.converged), warnings=len(r.warnings), at_bound=_at_bound(r),
                         n_positions=int(len(g)),
                         loss_first=float(g["loss"].iloc[0]), loss_last=float(g["loss"].iloc[-1])))
    table = pd.DataFrame(rows, columns=["run_id", "arch", "N", "L_inf", "t_c", "a", "a_lo", "a_hi",
                                        "converged", "warnings", "at_bound", "n_positions", "loss_first",
                                        "loss_last"])
    trend = {}
    clean = table[table["converged"] & ~table["at_bound"]]  # a parameter at its bound: no trend point
    if len(clean) < len(table):
        notes.append(f"L(t): {len(table) - len(clean)} of {len(table)} fits did not converge or have a "
                     "parameter at its search bound, and are left out of the a(N) trend")
    for arch, g in clean.groupby("arch"):
        if len(g) >= 3 and g["N"].nunique() >= 2:
            se = ((g["a_hi"] - g["a_lo"]) / (2 * 1.96)).where(lambda s: s > 0)
            trend[arch] = exponent_trend(g["N"], g["a"], None if se.isna().any() else se)
    return ContextSummary(table, fits, trend)


def _at_bound(r) -> bool:
    """Whether a fit's answer sits on its form's search bounds (then it is not an estimate of the law)."""
    return any(min(abs(t - lo), abs(t - hi)) <= 1e-6 * max(1.0, abs(t))
               for t, (lo, hi) in zip(r.theta, r.form.theta_bounds(), strict=True))


def _families(runs, positions, notes) -> FamilySummary | None:
    from scalinglab.laws.fit import fit

    archs = sorted(runs["arch"].unique())
    if not {"gpt", "lstm"} <= set(archs):
        return None
    ln = {}
    for arch in ("gpt", "lstm"):
        best = runs[runs["arch"] == arch].groupby("N", as_index=False)["loss"].min()
        ln[arch] = fit("power", best[["N", "loss"]], var="N") if len(best) >= 3 else None
    pairs = []
    pos = positions[positions["eval_set"] == VAL] if positions is not None and len(positions) else None
    gpt = runs[runs["arch"] == "gpt"]
    for r in runs[runs["arch"] == "lstm"].itertuples():
        j = int(np.argmin(np.abs(np.log(gpt["N"].to_numpy(float) / r.N))))
        g = gpt.iloc[j]
        row = dict(run_lstm=r.run_id, run_gpt=g["run_id"], N_lstm=float(r.N), N_gpt=float(g["N"]),
                   loss_lstm=float(r.loss), loss_gpt=float(g["loss"]),
                   log_n_ratio=abs(math.log(r.N / g["N"])))
        if pos is not None:
            a = pos[pos["run_id"] == r.run_id].set_index("position")["loss"]
            b = pos[pos["run_id"] == g["run_id"]].set_index("position")["loss"]
            gap = (a - b).dropna().sort_index()
            if len(gap) >= 4:
                k_e, k_l = max(1, round(EARLY_FRAC * len(gap))), max(1, round(LATE_FRAC * len(gap)))
                t = gap.index.to_numpy()
                row.update(gap_early=float(gap.iloc[:k_e].mean()), gap_late=float(gap.iloc[-k_l:].mean()),
                           early=f"{t[0]}-{t[k_e - 1]}", late=f"{t[-k_l]}-{t[-1]}")
        pairs.append(row)
    df = pd.DataFrame(pairs)
    best = None
    if len(df) and "gap_early" in df.columns:
        ok = df.dropna(subset=["gap_early"])
        if len(ok):
            best = ok.sort_values(["log_n_ratio", "N_lstm"], ascending=[True, False]).iloc[0].to_dict()
    if best is None:
        notes.append("LSTM vs transformer: no matched pair with losses by position")
    return FamilySummary(ln, df, best)


def _transfer(runs, sets, notes) -> dict[str, dict[str, Any]]:
    from scalinglab.laws.transfer import transfer_offset

    if sets is None or len(sets) == 0:
        return {}
    s = sets[sets["run_id"].isin(runs["run_id"]) & (sets["eval_set"] != VAL)]
    info = runs.set_index("run_id")
    out: dict[str, dict[str, Any]] = {}
    for name, g in s.groupby("eval_set"):
        g = g.assign(arch=g["run_id"].map(info["arch"]), N=g["run_id"].map(info["N"]),
                     train=g["run_id"].map(info["loss"]))
        for arch, h in g.groupby("arch"):
            try:
                out.setdefault(str(name), {})[str(arch)] = transfer_offset(h["N"], h["train"], h["loss"])
            except Exception as e:
                notes.append(f"transfer to {name} ({arch}): not measured ({type(e).__name__}: {e})")
    return out


# ---------------------------------------------------------------------------------------------- the store


def runs_table(runs: pd.DataFrame, n_col: str) -> pd.DataFrame:
    """The ``runs`` frame of ``summarize`` from the store's runs frame (done runs with a finite loss)."""
    r = runs[(runs["status"] == "done") & np.isfinite(runs["final_val_loss"].astype(float))]
    roles = r["roles"].map(lambda x: set(x) if isinstance(x, (list, set, tuple)) else set(json.loads(x)))
    keep = roles.map(lambda x: x != {"pilot"})  # the noise-scale rule's short pilots are no findings
    r, roles = r[keep], roles[keep]
    cfg = r["config"].map(lambda c: c if isinstance(c, dict) else json.loads(c))
    return pd.DataFrame({
        "run_id": r["run_id"].to_numpy(),
        "arch": cfg.map(lambda c: c.get("arch", "gpt")).to_numpy(),
        "N": r[n_col].astype(float).to_numpy(),
        "loss": r["final_val_loss"].astype(float).to_numpy(),
        "roles": roles.to_numpy(),
        "n_layer": cfg.map(lambda c: c.get("n_layer")).to_numpy(),
        "d_model": cfg.map(lambda c: c.get("d_model")).to_numpy(),
        "n_head": cfg.map(lambda c: c.get("n_head")).to_numpy(),
        "d_ff": cfg.map(lambda c: c.get("d_ff")).to_numpy(),
    })


def from_store(store, plan, ids: list[str]) -> Findings:
    """``summarize`` on a study's finished runs of ``ids`` (N under the plan's convention)."""
    runs = store.runs_frame()
    runs = runs[runs["run_id"].isin(ids)]
    return summarize(runs_table(runs, f"n_{plan.params}"), store.position_frame(), store.eval_sets_frame(),
                     tolerance=plan.shape.tolerance)


def print_findings(store, plan, ids: list[str], echo: Callable[[str], None]) -> Findings | None:
    """The headline numbers at the end of `study run` (nothing when the study has none of these data)."""
    try:
        f = from_store(store, plan, ids)
    except Exception as e:  # a summary line, never fatal
        echo(f"architecture findings: not computed ({type(e).__name__}: {e})")
        return None
    lines = f.headlines()
    if plan.design == "shape" and not f.shape:
        lines.append("shape: fewer than three finished shapes per N so far")
    for n in f.notes:
        lines.append(f"  note: {n}")
    for line in lines:
        echo(line)
    return f
