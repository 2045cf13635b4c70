"""Study designs that identify the laws they are meant to fit, laid out from a total compute budget.

``expand(plan, vocab_size)`` fills what a plan with ``design`` and ``budget`` (total training FLOPs,
C = 6 N D summed over the runs) leaves open; whatever the plan sets itself is kept:

- ``isoflop`` (Hoffmann et al. 2022, Approach 2): ``isoflop.n_budgets`` (4) budgets ``budget_ratio`` (3x)
  apart, the largest ``budget / (n_sizes * sum of ratios)``, each with ``n_sizes`` (5) models from
  N_opt / span to N_opt * span around the expected optimum D = k N (k = ``tokens_per_param``).
- ``grid`` (N x D): 4 sizes over 1.5 decades of N, each trained on D_max / 16, D_max / 4 and D_max
  tokens (1.2 decades; D_max = 20 N_max), scaled so the runs spend the budget.
- ``kaplan`` (Kaplan et al. 2020): 5 sizes over 1.5 decades, all on the same long run of 50 tokens per
  parameter of the largest (L(N)), and the largest also on 1/32, 1/16, 1/8, 1/4 and 1/2 of it (L(D)).
- ``chinchilla``: the isoFLOP sets with 75 % of the budget and a grid of three of their sizes at 1/4, 1
  and 4 times the expected optimal data with the rest, so that all three approaches (envelope,
  isoFLOP, parametric L(N, D)) are fitted on the same runs and L(N, D) sees D move at fixed N.

``identifiability(plan, runs, vocab_size)`` says, per law the plan fits, how many runs feed it and the
decades they span in N, D and C, and whether that identifies it; ``check`` turns a law the plan cannot
identify into a ConfigError that says what to add, before anything is trained.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from scalinglab.errors import ConfigError
from scalinglab.study.laws import MIN_BUDGET_SIZES, MIN_DECADES, LawCheck, get_law  # noqa: F401

if TYPE_CHECKING:
    from scalinglab.study.plan import Plan, RunSpec

LAWS_OF = {
    "isoflop": ["isoflop", "L(C_min)", "L(N,D)"],
    "chinchilla": ["isoflop", "L(C_min)", "L(N,D)"],
    "grid": ["L(N)", "L(D)", "L(N,D)"],
    "kaplan": ["L(N)", "L(D)", "L(C_min)", "L(N,S)"],
}
GRID_D_FRACTIONS = (1 / 16, 1 / 4, 1.0)
GRID_TOKENS_PER_PARAM = 20.0  # D_max = 20 N_max
KAPLAN_PER_PARAM = 50.0
SPAN_DECADES = 1.5  # the N range the grid and Kaplan designs lay out
CHINCHILLA_ISO_SHARE = 0.75


def expand(plan: Plan, vocab_size: int) -> Plan:
    """The plan with its design laid out (a copy; "custom" plans come back unchanged, and so do "shape"
    plans, which ``scalinglab.study.shape`` lays out)."""
    if plan.design in ("custom", "shape"):
        return plan
    upd: dict[str, Any] = {}
    fit = plan.fit
    if "laws" not in fit.model_fields_set:
        fit = fit.model_copy(update={"laws": list(LAWS_OF[plan.design])})
    if "bootstrap" not in fit.model_fields_set:
        fit = fit.model_copy(update={"bootstrap": 200})
    upd["fit"] = fit
    total = plan.budget
    if total is not None:
        total = total / len(plan.seeds.seeds)  # every run once per seed
        if plan.design in ("isoflop", "chinchilla") and not plan.isoflop.budgets:
            share = CHINCHILLA_ISO_SHARE if plan.design == "chinchilla" else 1.0
            upd["isoflop"] = plan.isoflop.model_copy(update={"budgets": _iso_budgets(plan, share * total)})
        if plan.design == "grid" and not (plan.tokens.absolute or plan.tokens.per_param):
            upd.update(_grid(plan, total, vocab_size))
        if plan.design == "kaplan" and not (plan.kaplan.long_tokens or plan.kaplan.data_subsets):
            upd.update(_kaplan(plan, total))
        laid = any(r.role == "grid" for r in plan.runs)
        if plan.design == "chinchilla" and not (plan.tokens.absolute or plan.tokens.per_param or laid):
            iso = upd.get("isoflop", plan.isoflop)
            upd["runs"] = list(plan.runs) + _chinchilla_grid(plan, iso, (1 - CHINCHILLA_ISO_SHARE) * total,
                                                             vocab_size)
    return plan.model_copy(update=upd)


def _iso_budgets(plan: Plan, total: float) -> list[float]:
    iso = plan.isoflop
    ratios = [iso.budget_ratio ** -i for i in range(iso.n_budgets)]
    c_max = total / (iso.n_sizes * sum(ratios))
    return sorted(_round3(c_max * r) for r in ratios)


def _round3(x: float) -> float:
    """Three significant digits: budgets and sizes a person can read in the plan."""
    return float(f"{x:.3g}")


def _ladder(n_max: float, k: int) -> list[float]:
    """k sizes log-spaced over SPAN_DECADES decades up to n_max."""
    return [n_max * 10 ** (-SPAN_DECADES * (k - 1 - i) / (k - 1)) for i in range(k)]


def _grid(plan: Plan, total: float, vocab_size: int) -> dict[str, Any]:
    """Every size at every token count: D_max x (1/16, 1/4, 1) with D_max = 20 N_max, so that L(N) has all
    sizes at each D and L(D) all counts at each N; scaled to spend ``total``."""
    rel_d = GRID_D_FRACTIONS
    if plan.model.has_sizes:  # given sizes: the token counts spend the budget
        from scalinglab.study.plan import count_n, sizes

        ns = [count_n(nl, d, plan, vocab_size, nh) for nl, d, nh in sizes(plan, vocab_size)]
        d_max = total / (6 * sum(ns) * sum(rel_d))
        return {"tokens": plan.tokens.model_copy(update={"absolute": [_round3(d_max * f) for f in rel_d]})}
    rel_n = _ladder(1.0, 4)
    n_max = math.sqrt(total / (6 * GRID_TOKENS_PER_PARAM * sum(rel_n) * sum(rel_d)))
    d_max = GRID_TOKENS_PER_PARAM * n_max
    return {
        "model": plan.model.model_copy(update={"n_params": [_round3(n) for n in _ladder(n_max, 4)]}),
        "tokens": plan.tokens.model_copy(update={"absolute": [_round3(d_max * f) for f in rel_d]}),
    }


def _kaplan(plan: Plan, total: float) -> dict[str, Any]:
    fr = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
    rel = sum(_ladder(1.0, 5)) + sum(fr)  # L(N): sizes x D_long; L(D): the largest x the subsets
    n_max = math.sqrt(total / (6 * KAPLAN_PER_PARAM * rel))
    d_long = KAPLAN_PER_PARAM * n_max
    subsets = [_round3(d_long * f) for f in fr]
    upd: dict[str, Any] = {
        "kaplan": plan.kaplan.model_copy(update={"long_tokens": _round3(d_long), "data_subsets": subsets})
    }
    if not plan.model.has_sizes:
        upd["model"] = plan.model.model_copy(update={"n_params": [_round3(n) for n in _ladder(n_max, 5)]})
    return upd


def _chinchilla_grid(plan: Plan, iso, total: float, vocab_size: int) -> list:
    """Three sizes of the isoFLOP ladder (around the optima of the smallest, middle and largest budget),
    each at 1/4, 1 and 4 times its expected optimal data, scaled to spend ``total``."""
    from scalinglab.study.plan import ExtraRun, count_n, isoflop_shapes

    if not iso.budgets:
        return []
    picks = []
    for c in (iso.budgets[0], iso.budgets[len(iso.budgets) // 2], iso.budgets[-1]):
        shapes = isoflop_shapes(plan.model_copy(update={"isoflop": iso}), c, vocab_size)
        picks.append(shapes[len(shapes) // 2])
    picks = list(dict.fromkeys(picks))
    mult = (0.25, 1.0, 4.0)
    ns = [count_n(nl, d, plan, vocab_size, nh) for nl, d, nh in picks]
    raw = sum(6 * n * iso.tokens_per_param * n * m for n in ns for m in mult)
    scale = total / raw if raw > 0 else 1.0
    out = []
    for (nl, d, nh), n in zip(picks, ns, strict=True):
        for m in mult:
            tokens = max(1.0, round(iso.tokens_per_param * n * m * scale))
            out.append(ExtraRun(n_layer=nl, d_model=d, n_head=nh, tokens=tokens, role="grid"))
    return out


# ---------------------------------------------------------------------------------------------- checks


def identifiability(plan: Plan, runs: list[RunSpec], vocab_size: int) -> list[LawCheck]:
    """Per law of ``plan.fit.laws``: which planned runs feed it and whether they can identify it (each law's
    ``check`` in ``scalinglab.study.laws.LAWS``)."""
    from scalinglab.study.plan import count_n

    pts = []
    for r in runs:
        c = r.config
        n = count_n(c["n_layer"], c["d_model"], plan, vocab_size, c.get("n_head"))
        pts.append({"N": n, "D": float(c["tokens"]), "C": 6 * n * float(c["tokens"]), "roles": r.roles})
    return [get_law(law).check(pts, plan) for law in plan.fit.laws]


def check(plan: Plan, runs: list[RunSpec], vocab_size: int, echo=None) -> list[LawCheck]:
    """The identifiability table; with ``[fit] check = "strict"`` (the default) a ConfigError naming every
    law the plan cannot identify and what to add, with "warn" the same said through ``echo``."""
    if plan.design == "shape":  # its own checks (study.shape.validate); its findings are not these laws
        return []
    table = identifiability(plan, runs, vocab_size)
    bad = [c for c in table if not c.identified]
    if bad:
        msg = ("the plan cannot identify " + "; ".join(f"{c.law}: {c.why}" for c in bad)
               + " (`scalinglab study plan` shows the table)")
        if plan.fit.check == "strict":
            raise ConfigError(msg + '; [fit] check = "warn" trains it anyway')
        if echo is not None:
            echo(f"warning: {msg}")
    return table
