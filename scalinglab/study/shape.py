"""The shape design (Kaplan et al. 2020 Fig. 5): at fixed N and D, does the loss depend on the model's shape?

``design = "shape"`` in ``study.toml``: for every N of ``[model] n_params`` (non-embedding parameters under
the plan's ``params`` convention) the plan trains, on the same ``[shape] tokens``,

- one model per aspect ratio d_model / n_layer of ``[shape] aspect_ratios`` (Kaplan: 20-200 is within a few
  per cent of the best at 25M-1.5B parameters), or per depth of ``[shape] n_layers`` (d_model solved for N);
- optionally one per feed-forward ratio d_ff / d_model (``ff_ratios``, at n_layer of the ``[model]
  aspect_ratio`` shape, d_model solved for N) and one per attention head dimension d_model / n_head
  (``head_dims``, at that shape: N does not depend on it).

Integer shapes cannot hit N exactly: d_model is a multiple of ``d_multiple`` and n_layer an integer, and the
shape nearest the asked ratio whose N is closest to the target is taken (the N each run really has is in the
store; the summary prints the spread). Ratios a size cannot reach (an aspect ratio above that of one layer)
fall on the nearest shape and are trained once. Runs carry the role ``shape:<kind>@<N>`` (kind ``aspect``,
``ff`` or ``head``). The loss increase relative to the best shape at each N and the range of ratios within
``tolerance`` (3 %) of it: ``scalinglab.laws.shape.shape_sensitivity`` (``shape_summary`` here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from scalinglab.study.plan import BatchFor, Plan, RunSpec

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
KINDS = {"aspect": "d_model / n_layer", "ff": "d_ff / d_model", "head": "d_model / n_head"}


class ShapePlan(BaseModel):
    """``[shape]`` of a ``design = "shape"`` plan (the fixed N come from ``[model] n_params``)."""

    model_config = ConfigDict(extra="forbid")
    tokens: Positive | None = None  # D of every run (tokens); required by the design
    aspect_ratios: list[Positive] = [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]  # d_model / n_layer
    # or the depths of the aspect sweep (d_model solved for N): the same span at every N, since at fixed N
    # the aspect ratio goes as n_layer^(-3/2) (1, 2, 4, 10 layers: 1.5 decades)
    n_layers: list[Annotated[int, Field(ge=1)]] = []
    ff_ratios: list[Positive] = []  # d_ff / d_model (4 is the standard shape)
    head_dims: list[int] = []  # d_model / n_head
    d_multiple: int = Field(4, ge=1)  # d_model is a multiple of this
    tolerance: float = Field(0.03, gt=0, lt=1)  # "within 3 % of the best"


def validate(plan: Plan) -> None:
    """The design's own requirements (a ConfigError-worthy ValueError, raised inside the plan validator)."""
    if plan.shape.tokens is None:
        raise ValueError('design = "shape" needs [shape] tokens (the D every shape is trained on)')
    if not plan.model.n_params:
        raise ValueError('design = "shape" needs the fixed sizes as [model] n_params = [N1, N2, ...]')
    if plan.model.shapes:
        raise ValueError('design = "shape" chooses the shapes itself: give [model] n_params, not shapes')
    if plan.model.archs != ["gpt"]:
        raise ValueError('design = "shape" sweeps transformer shapes: [model] arch must be "gpt"')


def _n(plan: Plan, vocab: int, n_layer: int, d_model: int, n_head: int, d_ff: int | None) -> float:
    from scalinglab.model.config import GPTConfig
    from scalinglab.model.counting import count_params

    cfg = GPTConfig(n_layer=n_layer, d_model=d_model, n_head=n_head, vocab_size=vocab, n_ctx=plan.data.n_ctx,
                    d_ff=d_ff)
    return float(count_params(cfg)[plan.params])


def heads_for(d_model: int, head_dim: float) -> int:
    """The number of heads nearest d_model / head_dim that divides d_model (at least 1)."""
    want = max(1.0, d_model / head_dim)
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
    return min(divisors, key=lambda h: (abs(math.log(h / want)), h))


def _d_candidates(d0: float, m: int) -> set[int]:
    base = max(1, round(d0 / m))
    return {max(m, k * m) for k in (base - 1, base, base + 1)}


def _aspect_shape(plan: Plan, vocab: int, n: float, ratio: float) -> tuple[int, int]:
    """(n_layer, d_model): N nearest ``n`` first, then the aspect ratio nearest ``ratio``."""
    m, h = plan.shape.d_multiple, plan.model.head_dim
    l0 = (n / (12 * ratio * ratio)) ** (1 / 3)
    best: tuple[float, int, int] | None = None
    for n_layer in {max(1, math.floor(l0)), max(1, math.ceil(l0)), max(1, round(l0) + 1)}:
        for d in _d_candidates(math.sqrt(n / (12 * n_layer)), m):
            got = _n(plan, vocab, n_layer, d, heads_for(d, h), None)
            err = abs(math.log(got / n)) + 0.25 * abs(math.log((d / n_layer) / ratio))
            if best is None or err < best[0]:
                best = (err, n_layer, d)
    assert best is not None
    return best[1], best[2]


def _n_err(plan: Plan, vocab: int, n: float, n_layer: int, d: int) -> float:
    return abs(math.log(_n(plan, vocab, n_layer, d, heads_for(d, plan.model.head_dim), None) / n))


def _ff_shape(plan: Plan, vocab: int, n: float, n_layer: int, ratio: float) -> tuple[int, int]:
    """(d_model, d_ff) at ``n_layer`` with d_ff = ratio d_model and N nearest ``n``."""
    m, h = plan.shape.d_multiple, plan.model.head_dim
    d0 = math.sqrt(n / (2 * (2 + ratio) * n_layer))
    cands = [(d, max(1, round(ratio * d))) for d in _d_candidates(d0, m)]
    def err(c: tuple[int, int]) -> float:
        return abs(math.log(_n(plan, vocab, n_layer, c[0], heads_for(c[0], h), c[1]) / n))

    return min(cands, key=err)


def shape_runs(plan: Plan, vocab_size: int, batch_for: BatchFor | None = None) -> list[RunSpec]:
    """The design's runs (deduplicated by id, roles merged), plus the plan's ``[[runs]]``."""
    from scalinglab.study.plan import RunSpec, _config, run_id, shape_for_n

    runs: dict[str, RunSpec] = {}
    sp, tokens = plan.shape, float(plan.shape.tokens or 0)

    def add(role: str, n_layer: int, d_model: int, n_head: int, **over: Any) -> None:
        for s in plan.seeds.seeds:
            cfg = _config(plan, n_layer, d_model, n_head, tokens, s, batch_for, **over)
            runs.setdefault(run_id(cfg), RunSpec(cfg)).roles.add(role)

    for n in plan.model.n_params:
        tag = f"@{n:.3g}"
        by_layers: dict[int, int] = {}  # one shape per depth: N fixed, one n_layer leaves one d_model
        for nl in sp.n_layers:
            by_layers[nl] = min(_d_candidates(math.sqrt(n / (12 * nl)), sp.d_multiple),
                                key=lambda d, nl=nl: _n_err(plan, vocab_size, n, nl, d))
        for r in [] if sp.n_layers else sp.aspect_ratios:
            nl, d = _aspect_shape(plan, vocab_size, n, r)
            old = by_layers.get(nl)
            if old is None or _n_err(plan, vocab_size, n, nl, d) < _n_err(plan, vocab_size, n, nl, old):
                by_layers[nl] = d
        for nl, d in sorted(by_layers.items()):
            add("shape:aspect" + tag, nl, d, heads_for(d, plan.model.head_dim))
        base_l, base_d = shape_for_n(n, plan, vocab_size)
        for k in sp.ff_ratios:
            d, ff = _ff_shape(plan, vocab_size, n, base_l, k)
            nh = heads_for(d, plan.model.head_dim)
            add("shape:ff" + tag, base_l, d, nh, d_ff=None if ff == 4 * d else ff)
        for hd in sp.head_dims:
            add("shape:head" + tag, base_l, base_d, heads_for(base_d, hd))
    for x in plan.runs:
        cfg = _config(plan, x.n_layer, x.d_model, x.n_head, x.tokens, x.seed, batch_for,
                      **{**x.train, "lr": x.lr, "batch_size": x.batch_size})
        runs.setdefault(run_id(cfg), RunSpec(cfg)).roles.add(x.role)
    return list(runs.values())


# ---------------------------------------------------------------------------------------------- summary


@dataclass
class ShapeGroup:
    """One sweep (kind, target N) and what it shows."""

    kind: str  # aspect | ff | head
    n_target: float
    n_measured: tuple[float, float]  # min, max N of its runs (plan convention)
    table: pd.DataFrame  # ratio, n_layer, d_model, d_ff, n_head, N, loss, loss_std, n_seeds, increase
    result: Any  # laws.shape.ShapeSensitivity

    def describe(self) -> str:
        r = self.result
        lo = f">= tested {r.lo:.3g}" if r.lo_open else f"{r.lo:.3g}"
        hi = f"<= tested {r.hi:.3g}" if r.hi_open else f"{r.hi:.3g}"
        span = math.log10(self.table["ratio"].max() / self.table["ratio"].min())
        return (f"{KINDS[self.kind]} within {100 * r.tolerance:.0f}% of the best: {lo} to {hi} "
                f"(best {r.best_x:.3g}, loss {r.best_loss:.4f} nats/token; {len(self.table)} shapes over "
                f"{span:.2f} decades) at N = {_fmt(self.n_measured[0])}-{_fmt(self.n_measured[1])}")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def ratio_of(kind: str, cfg: dict[str, Any]) -> float:
    """The swept ratio of a run config."""
    d = float(cfg["d_model"])
    if kind == "aspect":
        return d / float(cfg["n_layer"])
    if kind == "ff":
        return float(cfg.get("d_ff") or 4 * d) / d
    return d / float(cfg["n_head"])


def shape_summary(runs: pd.DataFrame, n_col: str = "N", tolerance: float = 0.03) -> list[ShapeGroup]:
    """Per shape sweep of the finished runs (columns: roles as a set, list or JSON list, n_layer, d_model,
    n_head, d_ff (None/NaN: 4 d_model), ``n_col``, loss): the loss increase relative to the best shape and the
    ratio range within ``tolerance``. Seeds of one shape are averaged; sweeps of under three shapes are left
    out."""
    from scalinglab.laws.shape import shape_sensitivity

    rows = []
    for r in runs.itertuples(index=False):
        roles = r.roles if isinstance(r.roles, (set, list, tuple)) else json.loads(r.roles)
        cfg = {"n_layer": r.n_layer, "d_model": r.d_model, "n_head": r.n_head,
               "d_ff": r.d_ff if pd.notna(r.d_ff) else None}
        for role in roles:
            if not str(role).startswith("shape:"):
                continue
            kind, _, n_t = role.removeprefix("shape:").partition("@")
            if kind in KINDS:
                rows.append(dict(kind=kind, n_target=float(n_t), ratio=ratio_of(kind, cfg),
                                 n_layer=cfg["n_layer"], d_model=cfg["d_model"], d_ff=cfg.get("d_ff"),
                                 n_head=cfg.get("n_head"), N=float(getattr(r, n_col)), loss=float(r.loss)))
    if not rows:
        return []
    df = pd.DataFrame(rows)
    out = []
    for (kind, n_t), g in df.groupby(["kind", "n_target"], sort=True):
        t = (g.groupby("ratio", as_index=False)
             .agg(n_layer=("n_layer", "first"), d_model=("d_model", "first"), d_ff=("d_ff", "first"),
                  n_head=("n_head", "first"), N=("N", "mean"), loss_std=("loss", "std"),
                  n_seeds=("loss", "size"), loss=("loss", "mean"))
             .sort_values("ratio").reset_index(drop=True))
        if len(t) < 3:
            continue
        res = shape_sensitivity(t["ratio"].to_numpy(float), t["loss"].to_numpy(float), tolerance)
        t["increase"] = res.increase
        out.append(ShapeGroup(str(kind), float(n_t), (float(t["N"].min()), float(t["N"].max())), t, res))
    return out
