"""``study suggest`` and ``study run --adaptive``: the next runs of a study, chosen to shrink the interval of
N_opt (or of the compute-optimal loss) at a target budget (``scalinglab.laws.suggest``).

Candidates are the study's own kind of run: the plan's shapes (``[model] shapes``), or shapes solved for
N on a log grid, from half the smallest to four times the largest trained model; token counts log-spaced
from half the fewest to what ``max_flops`` allows, and at most one pass over the training split.
``max_flops`` defaults to 3x the largest run so far: one isoFLOP step up, the growth a static ladder would
take. A suggested run is a planned run like the others (the plan's batch, learning-rate and [train] rules),
with the role ``adaptive``; the runs of ``--adaptive`` rounds are kept in the store (meta
``adaptive_runs``), so a resumed study keeps them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import ConfigError, FitError
from scalinglab.study.plan import Plan, RunSpec, _config, count_n, shape_for_n
from scalinglab.study.store import Store

ROLE = "adaptive"
CAP_GROWTH = 3.0


def _shapes(plan: Plan, vocab: int, n_lo: float, n_hi: float) -> list[tuple[int, int, int | None]]:
    """Candidate shapes with N in [n_lo, n_hi]: the plan's ladder, else shapes solved on a log grid."""
    if plan.model.shapes:
        out = {(s.n_layer, s.d_model, s.n_head) for s in plan.model.shapes}
    else:
        out = {(*shape_for_n(n, plan, vocab), None) for n in np.geomspace(n_lo, n_hi, 16)}
    out = {s for s in out if n_lo <= count_n(s[0], s[1], plan, vocab, s[2]) <= n_hi}
    return sorted(out, key=lambda s: count_n(s[0], s[1], plan, vocab, s[2]))


def train_tokens(plan: Plan) -> int:
    """Tokens in the plan's training split: a suggested run sees each at most once (the laws assume no
    repeated data)."""
    from scalinglab.data import ensure_dataset, open_dataset

    return int(open_dataset(ensure_dataset(plan.data.spec)).num_tokens("train"))


def suggest_runs(
    store: Store,
    plan: Plan,
    fits: list[dict[str, Any]],
    vocab: int,
    *,
    target_C: float,
    k: int = 2,
    quantity: str = "N_opt",
    max_flops: float | None = None,
    max_tokens: float | None = None,
) -> tuple[Any, list[RunSpec]]:
    """(``laws.suggest.Suggestion`` with shapes, the run specs to train) from the study's L(N,D) fit.
    Candidates: shapes within [N_min / 2, 4 N_max] of the trained runs, D from half the fewest tokens to one
    pass over the training split (``max_tokens``), each run within ``max_flops``."""
    from scalinglab.laws.fit import FitResult
    from scalinglab.laws.suggest import candidate_grid, suggest
    from scalinglab.study.fitting import finished_runs

    lnd = next((f["result"] for f in fits if f["law"] == "L(N,D)" and f.get("result")), None)
    if lnd is None:
        raise FitError("suggest needs the study's L(N,D) fit: add \"L(N,D)\" to [fit] laws and run the study")
    res = FitResult.from_dict(lnd)
    runs = finished_runs(store, plan, store.get_meta("plan_runs", store.run_ids()))
    if runs.empty:
        raise FitError("suggest needs finished runs")
    cap = float(max_flops or CAP_GROWTH * runs["C"].max())
    shapes = _shapes(plan, vocab, runs["N"].min() / 2, runs["N"].max() * 4)
    if not shapes:
        raise ConfigError("no shape of the plan lies within half the smallest and 4x the largest trained N")
    n_of = {s: count_n(s[0], s[1], plan, vocab, s[2]) for s in shapes}
    d_lo = float(runs["D"].min()) / 2
    d_hi = min(cap / (6 * min(n_of.values())), float(max_tokens or train_tokens(plan)))
    if d_hi <= d_lo:
        raise ConfigError(f"max_flops {cap:.3g} leaves no token count for the plan's shapes")
    cand = candidate_grid(sorted(set(n_of.values())), (d_lo, d_hi), n_D=32, max_flops=cap)
    sg = suggest(res, cand, target_C=target_C, k=k, quantity=quantity, max_flops=cap)
    by_n = {v: s for s, v in n_of.items()}
    specs = []
    for r in sg.runs:
        nl, d, nh = by_n[r["N"]]
        cfg = _config(plan, nl, d, nh, r["D"], plan.seeds.seeds[0])
        spec = RunSpec(cfg, {ROLE})
        r.update(n_layer=nl, d_model=d, run_id=spec.run_id, tokens=cfg["tokens"],
                 batch_size=cfg["batch_size"])
        specs.append(spec)
    return sg, specs


def add_estimates(sg, plan: Plan, vocab: int, specs: list[RunSpec]) -> None:
    """Each suggested run's estimated seconds on this machine (``study.estimate``)."""
    from scalinglab.study import estimate
    from scalinglab.study.executors import threads_per_run

    if not specs:
        return
    model = estimate.calibrate([s.config for s in specs], vocab, threads_per_run(plan.executor))
    for r, s in zip(sg.runs, specs, strict=True):
        r["est_s"] = estimate.run_seconds(s.config, vocab, model)


def adaptive_specs(store: Store) -> list[RunSpec]:
    """The runs earlier ``--adaptive`` rounds added (kept in the store so a resumed study keeps them)."""
    return [RunSpec(c, {ROLE}) for c in store.get_meta("adaptive_runs", [])]


def remember(store: Store, specs: list[RunSpec]) -> None:
    old = store.get_meta("adaptive_runs", [])
    have = {RunSpec(c).run_id for c in old}
    store.set_meta("adaptive_runs", old + [s.config for s in specs if s.run_id not in have])


def parse_target(text: str) -> float:
    """``C=1e16`` (or a bare number) -> FLOPs."""
    key, _, val = text.partition("=")
    if not val:
        key, val = "C", key
    if key.strip() != "C":
        raise ConfigError(f"--target {text!r}: give the compute budget as C=FLOPS, e.g. C=1e16")
    try:
        c = float(val)
    except ValueError:
        raise ConfigError(f"--target {text!r}: {val!r} is not a number") from None
    if not (c > 0 and np.isfinite(c)):
        raise ConfigError(f"--target {text!r}: the budget must be a positive number of FLOPs")
    return c


def study_suggest(study_dir: str | Path, target: str, k: int = 2, quantity: str = "N_opt",
                  max_flops: float | None = None, calibrate: bool = True) -> dict[str, Any]:
    """``scalinglab study suggest``: the k runs to train next, as a JSON-able dict (and printable lines)."""
    from scalinglab.study import design
    from scalinglab.study.plan import load_plan

    d = Path(study_dir)
    if not (d / "scalinglab.db").is_file() or not (d / "study.toml").is_file():
        raise ConfigError(f"{d} is not a study folder (needs scalinglab.db and study.toml)")
    store = Store(d)
    vocab = int(store.get_meta("vocab_size", 256))
    plan = design.expand(load_plan(d / "study.toml"), vocab)
    sg, specs = suggest_runs(store, plan, store.fits(), vocab, target_C=parse_target(target), k=k,
                             quantity=quantity, max_flops=max_flops)
    if calibrate:
        add_estimates(sg, plan, vocab, specs)
    return {**sg.to_dict(), "lines": sg.lines()}
