"""A study plan: the `study.toml` schema (pydantic) and the planner that turns it into run specs.

A plan names a domain, a model family (sizes by shape or by parameter count), token budgets, isoFLOP
budgets, batch-size and learning-rate rules, seeds, the laws to fit and the executor. `make_runs(plan)`
expands it into `RunSpec`s: N x D grids, isoFLOP sets (for each budget C, sizes around the expected
optimum with D = C / (6 N)), Kaplan's long runs for L(N) and data subsets for L(D), and repeated seeds.

A run's id is a hash of its trainer config, so re-planning is idempotent: the same plan gives the same
ids, and a run shared by two groups (a grid point that is also an L(N) run) is trained once.
Units: tokens as tokens, FLOPs as plain FLOPs (C = 6 N D), N in parameters under `plan.params`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scalinglab.errors import ConfigError
from scalinglab.study.evalsets import EvalPlan
from scalinglab.study.laws import NAMES as LAWS  # the laws a plan may fit: one row each in study/laws.py
from scalinglab.study.shape import ShapePlan

PARAM_CONVENTIONS = ("kaplan", "non_embedding", "non_embedding_with_head", "total", "total_without_head")


# trainer fields the plan itself sets for each run, and where a plan sets them
PLANNED_KEYS = {
    "n_layer": "[model] shapes or n_params", "d_model": "[model] shapes or n_params",
    "n_head": "[model] head_dim or shapes", "n_ctx": "[data] n_ctx", "data": "[data] spec",
    "tokens": "[tokens], [isoflop] or [kaplan]", "seed": "[seeds] seeds", "batch_size": "[batch] size",
    "micro_batch_size": "[batch] micro_size", "lr": "[lr]", "attention": "[model] attention",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a finite number > 0 (NaN and inf refused)


class DataPlan(_Strict):
    """Which corpus and how it is cut into sequences."""

    spec: str = "text:default"  # a data spec for scalinglab.data.ensure_dataset, or a prepared folder
    n_ctx: int = Field(64, ge=2)  # sequence length in tokens


class Shape(_Strict):
    n_layer: int = Field(ge=1)
    d_model: int = Field(ge=2)
    n_head: int | None = Field(None, ge=1)


class ModelPlan(_Strict):
    """The model family: sizes as shapes, or as parameter counts solved for shapes at an aspect ratio."""

    shapes: list[Shape] = []
    n_params: list[Positive] = []  # target N (under plan.params), solved for (n_layer, d_model)
    aspect_ratio: Positive = 32.0  # d_model / n_layer when sizes are given by N
    head_dim: int = Field(16, ge=1)  # n_head = d_model // head_dim (at least 1)
    attention: str = "dense"  # "dense", "banded:W" (every layer) or "alternating:W" (dense, banded, ...)
    # model family: "gpt" (the transformer), "lstm" (Kaplan Fig. 7), or a list: the ladder once per family
    arch: Literal["gpt", "lstm"] | list[Literal["gpt", "lstm"]] = "gpt"

    @property
    def archs(self) -> list[str]:
        return list(dict.fromkeys([self.arch] if isinstance(self.arch, str) else self.arch))

    @field_validator("attention")
    @classmethod
    def _attention(cls, v: str) -> str:
        kind, _, w = v.partition(":")
        if v == "dense" or (kind in ("banded", "alternating") and w.isdigit() and int(w) > 0):
            return v
        raise ValueError(f"attention={v!r}: allowed 'dense', 'banded:W' or 'alternating:W' with W > 0")

    @model_validator(mode="after")
    def _positive(self) -> ModelPlan:
        if any(n <= 0 for n in self.n_params):
            raise ValueError(f"model.n_params={self.n_params}: every N must be > 0")
        return self

    @property
    def has_sizes(self) -> bool:
        return bool(self.shapes or self.n_params)


class TokensPlan(_Strict):
    """Token budgets of the N x D grid: absolute counts and/or tokens-per-parameter multiples."""

    absolute: list[Positive] = []  # tokens per run
    per_param: list[Positive] = []  # D = k * N (N under plan.params)
    min_tokens: float = Field(0, ge=0, allow_inf_nan=False)  # floor applied to per_param budgets

    @model_validator(mode="after")
    def _positive(self) -> TokensPlan:
        for k in ("absolute", "per_param"):
            if any(v <= 0 for v in getattr(self, k)):
                raise ValueError(f"tokens.{k}={getattr(self, k)}: every value must be > 0")
        return self


class IsoFlopPlan(_Strict):
    """For each budget C (FLOPs), `n_sizes` models spaced geometrically around N_opt = sqrt(C / (6 k)).
    Without `budgets`, a design with a total `budget` lays out `n_budgets` of them, `budget_ratio` apart."""

    budgets: list[Positive] = []
    n_budgets: int = Field(4, ge=1, le=100)
    budget_ratio: float = Field(3.0, gt=1, allow_inf_nan=False)
    n_sizes: int = Field(5, ge=3, le=1000)  # (a bound: a typo of 10**9 would plan forever)
    span: float = Field(4.0, gt=1, allow_inf_nan=False)  # sizes from N_opt / span to N_opt * span
    tokens_per_param: Positive = 20.0  # k of the expected optimum D = k N


class KaplanPlan(_Strict):
    """Kaplan's design: long runs of every size for L(N); one model on data subsets for L(D)."""

    long_tokens: Positive | None = None  # L(N): every size trained this many tokens
    data_subsets: list[Positive] = []  # L(D): token counts for the subset model
    subset_model: int = -1  # index into the sizes (default the largest)


class RepeatPlan(_Strict):
    """Repeated data (Muennighoff et al. 2023): sizes trained for k epochs over U unique tokens (the first U
    of the train split), for the `repeat` law's decay constant R_D* (and R_N* with ``fit_rn``)."""

    unique_tokens: list[Positive] = []  # U per subset
    epochs: list[Positive] = [1, 2, 4, 8, 16]  # D = epochs x U
    sizes: Literal["all", "smallest", "largest"] = "all"
    fit_rn: bool = False  # also fit the excess-parameter constant R_N*


class DownstreamPlan(_Strict):
    """The `downstream` law (OLMo ladder): which stored few-shot results, and the task's accuracy range."""

    tasks: list[str] = []  # default: every task in the store
    shots: list[int] = []  # default: every K
    acc_floor: float = Field(0.0, ge=0, le=1)  # chance accuracy (0 for generation, 1/n for n-way choice)


class BatchPlan(_Strict):
    """Batch size per run (sequences). fixed: ``size`` for every run; noise_scale: from each shape's measured
    B_simple (pilot runs); steps: about ``steps`` optimiser steps per run, batch = tokens / (steps n_ctx)
    rounded to an even integer within [min_size, max_size]. Tiny models learn per step, not per token (the
    batch is far above B_crit), so the steps rule keeps every run of a ladder past its early plateau, and
    small-data runs (high loss, small B_crit) get the small batches they can use."""

    rule: Literal["fixed", "noise_scale", "steps"] = "fixed"
    size: int = Field(16, ge=1)  # sequences per step (fixed rule, and the pilot's batch)
    steps: int = Field(3000, ge=1)  # steps rule: target optimiser steps per run
    micro_size: int | None = Field(None, ge=1)
    pilot_tokens: Positive = 2e5  # noise_scale rule: tokens of each size's pilot run
    min_size: int = Field(4, ge=1)
    max_size: int = Field(512, ge=1)

    @model_validator(mode="after")
    def _range(self) -> BatchPlan:
        if self.min_size > self.max_size:
            raise ValueError(f"batch.min_size {self.min_size} > batch.max_size {self.max_size}")
        return self


class LRPlan(_Strict):
    """Peak learning rate per run. fixed: ``value`` for every size; kaplan: LR(N) = 0.003239 - 0.0001395 ln N
    (the trainer's default); width: ``value`` up to ``base_width``, ``value * base_width / d_model`` above
    it (muP's 1/width rule for Adam, for models wider than the one the LR was tuned on), which keeps the
    wide models of a small ladder from training too hot."""

    rule: Literal["fixed", "kaplan", "width"] = "fixed"
    value: Positive = 1e-3
    base_width: int = Field(64, ge=1)


class SeedsPlan(_Strict):
    seeds: list[int] = Field([0], min_length=1)  # every run once per seed
    repeat: int = Field(0, ge=0, le=10000)  # extra seeds for the seed-noise runs (bounded, as n_sizes)
    repeat_sizes: Literal["smallest", "largest", "all"] = "smallest"


class ExtraRun(_Strict):
    """One hand-written run (e.g. a deliberately bad learning rate); keys override the planned config."""

    n_layer: int = Field(ge=1)
    d_model: int = Field(ge=2)
    tokens: Positive
    n_head: int | None = None
    lr: Positive | None = None
    batch_size: int | None = None
    seed: int = 0
    role: str = "extra"
    train: dict[str, Any] = {}  # any other TrainConfig field for this run (e.g. grad_clip = 0)


class FitPlan(_Strict):
    laws: list[str] = ["L(N)"]
    l_n_form: Literal["power", "power+const"] = "power"
    l_d_form: Literal["power", "power+const"] = "power"
    backtest_holdout: int = Field(1, ge=1)  # back-tests hold out the runs at the largest k values
    bootstrap: int = Field(0, ge=0)
    bootstrap_method: Literal["parametric", "pairs"] = "parametric"  # see scalinglab.laws.fit.bootstrap_fit
    target_flops: Positive | None = None  # the allocation's budget (FLOPs; default 10x the largest run)
    # "strict": a law the planned runs cannot identify stops the study before training (the default);
    # "warn": it is trained anyway and only warned (smoke tests, deliberately tiny studies)
    check: Literal["strict", "warn"] = "strict"

    @field_validator("laws")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in LAWS]
        if bad:
            raise ValueError(f"unknown laws {bad}; allowed: {list(LAWS)}")
        return v


class ExecutorPlan(_Strict):
    kind: str = "local"  # a name in study.executors.EXECUTORS
    workers: int = Field(0, ge=0)  # local: 0 = in-process sequential, k = a process pool of k
    threads_per_run: int = Field(0, ge=0)  # torch threads per run; 0 = cores // max(workers, 1)
    # ray: None = a private local instance on 127.0.0.1; "auto" = the cluster `ray start` began (or
    # $RAY_ADDRESS); "host:port" (its GCS) or "ray://host:10001" (Ray client). Also spelt `address`.
    ray_address: str | None = Field(None, validation_alias=pydantic.AliasChoices("address", "ray_address"))
    retries: int = Field(2, ge=0)  # ray: re-runs of a run whose worker died; slurm: requeues at time limit
    gpus_per_run: float = Field(0, ge=0)  # ray: GPUs per run task (Ray hides GPUs from a task asking none)
    slurm: dict[str, Any] = {}  # slurm: submitit parameters (partition, timeout_min, gpus_per_node, ...)
    slurm_local: bool = False  # slurm: use submitit's LocalExecutor (tests, no cluster)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from scalinglab.study.executors import EXECUTORS

        if v not in EXECUTORS:
            raise ValueError(f"allowed {', '.join(repr(k) for k in EXECUTORS)}")
        return v


DESIGNS = ("custom", "isoflop", "grid", "kaplan", "chinchilla")


class Plan(_Strict):
    """The whole `study.toml`. ``design`` (``scalinglab.study.design``) lays out the runs of a named study
    design from the total compute ``budget`` (FLOPs, C = 6 N D summed over the runs) wherever the plan's
    own tables leave it open; "custom" (the default) trains exactly what the tables list."""

    name: str = "study"
    out: str | None = None  # study folder; default: next to the toml, named after `name`
    params: Literal["kaplan", "non_embedding", "non_embedding_with_head", "total", "total_without_head"] = (
        "kaplan"
    )
    # "shape": Kaplan Fig. 5 (scalinglab.study.shape); the others: scalinglab.study.design
    design: Literal["custom", "isoflop", "grid", "kaplan", "chinchilla", "shape"] = "custom"
    budget: Positive | None = None  # total training FLOPs of the design's runs
    data: DataPlan = DataPlan()
    model: ModelPlan = ModelPlan()
    tokens: TokensPlan = TokensPlan()
    isoflop: IsoFlopPlan = IsoFlopPlan()
    kaplan: KaplanPlan = KaplanPlan()
    batch: BatchPlan = BatchPlan()
    lr: LRPlan = LRPlan()
    seeds: SeedsPlan = SeedsPlan()
    fit: FitPlan = FitPlan()
    repeat: RepeatPlan = RepeatPlan()
    downstream: DownstreamPlan = DownstreamPlan()
    executor: ExecutorPlan = ExecutorPlan()
    shape: ShapePlan = ShapePlan()  # design = "shape"
    eval: EvalPlan = EvalPlan()  # extra evaluation sets for every run (scalinglab.study.evalsets)
    train: dict[
        str, Any
    ] = {}  # passed to the trainer's TrainConfig (schedule, warmup_tokens, eval_every, ...)
    runs: list[ExtraRun] = []

    @field_validator("train")
    @classmethod
    def _not_planned(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Keys the plan sets for every run would be silently overridden in [train]: refused, with where
        they belong."""
        bad = {k: PLANNED_KEYS[k] for k in v if k in PLANNED_KEYS}
        if bad:
            raise ValueError("; ".join(f"[train] {k} is set by the plan: use {w}" for k, w in bad.items()))
        return v

    @model_validator(mode="after")
    def _has_runs(self) -> Plan:
        from scalinglab.study import evalsets, shape

        try:
            evalsets.check_sets(self.eval.sets, self.data.spec)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if self.design == "shape":
            shape.validate(self)
            return self
        if self.design != "custom":
            if self.budget is None and not self._has_tables():
                raise ValueError(
                    f"design = {self.design!r} needs a total compute `budget` (FLOPs), e.g. budget = 3e14, "
                    "or the design's own tables"
                )
            return self
        needs_sizes = self.tokens.absolute or self.tokens.per_param or self.kaplan.long_tokens
        if needs_sizes and not self.model.has_sizes:
            raise ValueError(
                "model: give sizes as `shapes = [{n_layer=.., d_model=..}, ...]` or `n_params = [...]` "
                "(or a design with a budget, e.g. design = \"chinchilla\", budget = 3e14)"
            )
        if self.budget is not None:
            raise ValueError("budget applies to a design (isoflop, grid, kaplan, chinchilla): set design")
        if not self._has_tables():
            raise ValueError(
                "the plan trains nothing: set tokens.absolute, tokens.per_param, isoflop.budgets, "
                "kaplan.long_tokens, kaplan.data_subsets, repeat.unique_tokens or [[runs]] (or a design "
                "with a budget)"
            )
        return self

    def _has_tables(self) -> bool:
        return bool(
            self.tokens.absolute
            or self.tokens.per_param
            or self.isoflop.budgets
            or self.kaplan.long_tokens
            or self.kaplan.data_subsets
            or self.runs
            or self.repeat.unique_tokens
        )


def _format_errors(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(plan)"
        key = key if key.isprintable() else repr(key)  # a quoted TOML key may hold a newline: one line
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key} = {err.get('input')!r}: {msg}")
    return f"{source}: invalid study plan: " + "; ".join(lines)


def parse_plan(data: dict[str, Any], source: str = "study.toml") -> Plan:
    """Validate a plan dict; a ConfigError names the key, the bad value and what is allowed."""
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a `study.toml`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study plan {path} not found")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}), so not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_plan(data, str(path))


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class RunSpec:
    """One training run: the trainer config (a TrainConfig dict) and the groups it belongs to."""

    config: dict[str, Any]
    roles: set[str] = field(default_factory=set)

    @property
    def run_id(self) -> str:
        return run_id(self.config)


def run_id(config: dict[str, Any]) -> str:
    """A stable id for a trainer config: 12 hex digits of the SHA-256 of its canonical JSON. Operational
    fields (logging, eval and checkpoint intervals, device) do not change the trajectory and are left out."""
    from scalinglab.train.config import OPERATIONAL_FIELDS

    core = {k: v for k, v in config.items() if k not in OPERATIONAL_FIELDS}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _attention_list(attention: str, n_layer: int) -> list[str] | None:
    if attention == "dense":
        return None
    kind, _, w = attention.partition(":")
    if kind == "banded":
        return [f"banded:{w}"] * n_layer
    return ["dense" if i % 2 == 0 else f"banded:{w}" for i in range(n_layer)]


def count_n(n_layer: int, d_model: int, plan: Plan, vocab_size: int, n_head: int | None = None) -> float:
    """N of a shape under the plan's parameter convention (via scalinglab.model.counting)."""
    from scalinglab.model.config import GPTConfig, LSTMConfig
    from scalinglab.model.counting import count_params

    if plan.model.archs == ["lstm"]:
        lstm = LSTMConfig(n_layer=n_layer, d_model=d_model, vocab_size=vocab_size, n_ctx=plan.data.n_ctx)
        return float(count_params(lstm)[plan.params])
    cfg = GPTConfig(
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head or max(1, d_model // plan.model.head_dim),
        vocab_size=vocab_size,
        n_ctx=plan.data.n_ctx,
    )
    return float(count_params(cfg)[plan.params])


def shape_for_n(n: float, plan: Plan, vocab_size: int) -> tuple[int, int]:
    """(n_layer, d_model) with d_model / n_layer near the aspect ratio and N (plan.params) nearest to n
    (``scalinglab.model.shapes.suggest_shape``; an LSTM family, N ~ 8 n_layer d_model^2, is searched here)."""
    if plan.model.archs == ["lstm"]:
        return _lstm_shape_for_n(n, plan, vocab_size)
    from scalinglab.model.shapes import suggest_shape

    s = suggest_shape(n, aspect=plan.model.aspect_ratio, head_dim=plan.model.head_dim, params=plan.params,
                      vocab_size=vocab_size, n_ctx=plan.data.n_ctx)
    return s.n_layer, s.d_model


def _lstm_shape_for_n(n: float, plan: Plan, vocab_size: int) -> tuple[int, int]:
    r, h = plan.model.aspect_ratio, plan.model.head_dim
    k = 8 if plan.model.archs == ["lstm"] else 12  # N ~ k n_layer d_model^2 (LSTM: 4 gates x 2 matrices)
    best: tuple[float, int, int] | None = None
    guess = max(1, round((n / (k * r * r)) ** (1 / 3)))
    for n_layer in range(max(1, guess - 2), guess + 3):
        d0 = math.sqrt(max(n, 1.0) / (k * n_layer))
        for d in {max(h, round(d0 / h) * h), max(h, math.floor(d0 / h) * h), max(h, math.ceil(d0 / h) * h)}:
            err = abs(math.log(count_n(n_layer, d, plan, vocab_size) / n))
            err += 0.05 * abs(math.log((d / n_layer) / r))  # tie-break towards the aspect ratio
            if best is None or err < best[0]:
                best = (err, n_layer, d)
    assert best is not None
    return best[1], best[2]


def sizes(plan: Plan, vocab_size: int) -> list[tuple[int, int, int | None]]:
    """The plan's model sizes as (n_layer, d_model, n_head), sorted by N."""
    out = [(s.n_layer, s.d_model, s.n_head) for s in plan.model.shapes]
    out += [(*shape_for_n(n, plan, vocab_size), None) for n in plan.model.n_params]
    out = list(dict.fromkeys(out))
    return sorted(out, key=lambda s: count_n(s[0], s[1], plan, vocab_size, s[2]))


def isoflop_shapes(plan: Plan, budget: float, vocab_size: int) -> list[tuple[int, int, int | None]]:
    """The model shapes of one isoFLOP budget: ``n_sizes`` targets spaced geometrically from N_opt / span
    to N_opt * span around the expected optimum N_opt = sqrt(C / (6 k)). With ``[model] shapes`` the
    targets are matched to the nearest shapes of that ladder (Hoffmann's fixed set of shapes; each shape
    once), else each target is solved for a shape at the aspect ratio (``shape_for_n``)."""
    iso = plan.isoflop
    n_opt = math.sqrt(budget / (6 * iso.tokens_per_param))
    k = iso.n_sizes
    targets = [n_opt * iso.span ** (2 * i / (k - 1) - 1) for i in range(k)]
    if not plan.model.shapes:
        return list(dict.fromkeys((*shape_for_n(t, plan, vocab_size), None) for t in targets))
    ladder = [(s.n_layer, s.d_model, s.n_head) for s in plan.model.shapes]
    logn = {s: math.log(count_n(s[0], s[1], plan, vocab_size, s[2])) for s in ladder}
    chosen: list[tuple[int, int, int | None]] = []
    for t in targets:
        free = [s for s in ladder if s not in chosen]
        if free:
            chosen.append(min(free, key=lambda s: abs(logn[s] - math.log(t))))
    return sorted(chosen, key=logn.__getitem__)


BatchFor = dict[tuple[int, int], int]  # (n_layer, d_model) -> batch size (sequences), from the noise scale


def _config(
    plan: Plan,
    n_layer: int,
    d_model: int,
    n_head: int | None,
    tokens: float,
    seed: int,
    batch_for: BatchFor | None = None,
    **over: Any,
) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(plan.train)
    batch = (batch_for or {}).get((n_layer, d_model), plan.batch.size)
    if plan.batch.rule == "steps":
        batch = batch_for_steps(tokens, plan)
    cfg.update(
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head or max(1, d_model // plan.model.head_dim),
        n_ctx=plan.data.n_ctx,
        data=plan.data.spec,
        tokens=int(round(tokens)),
        seed=int(seed),
        batch_size=int(batch),
        lr=_peak_lr(plan.lr, d_model),
    )
    if plan.batch.micro_size:
        cfg["micro_batch_size"] = plan.batch.micro_size
    att = _attention_list(plan.model.attention, n_layer)
    if att is not None:
        cfg["attention"] = att
    if plan.eval.sets:
        cfg["eval_sets"] = list(plan.eval.sets)
    cfg.update({k: v for k, v in over.items() if v is not None})
    if plan.model.archs == ["lstm"] and cfg.get("arch", "lstm") == "lstm":  # an LSTM has no heads
        cfg["arch"] = "lstm"
        cfg.pop("n_head", None)
    if cfg.get("micro_batch_size") and cfg["batch_size"] % cfg["micro_batch_size"]:
        cfg["micro_batch_size"] = math.gcd(cfg["batch_size"], cfg["micro_batch_size"])
    from scalinglab.train.config import TrainConfig

    try:
        TrainConfig.make(**cfg)
    except ConfigError as e:
        raise ConfigError(f"{e} (from the plan's [train], [model], [batch] or [lr] tables)") from None
    return cfg


def make_runs(plan: Plan, vocab_size: int, batch_for: BatchFor | None = None) -> list[RunSpec]:
    """Expand a plan into run specs (deduplicated by id; roles merged), in a stable order (cheap first).
    `batch_for` gives each shape's batch size under the noise-scale rule (see `pilot_runs`). A plan with
    several model families (`[model] arch = ["gpt", "lstm"]`) is expanded once per family."""
    from scalinglab.study.design import expand

    plan = expand(plan, vocab_size)
    if len(plan.model.archs) > 1:
        both: dict[str, RunSpec] = {}
        for a in plan.model.archs:
            for r in make_runs(for_arch(plan, a), vocab_size, batch_for):
                both.setdefault(r.run_id, r).roles.update(r.roles)
        return _ordered(both)
    runs: dict[str, RunSpec] = {}
    if plan.design == "shape":
        from scalinglab.study.shape import shape_runs

        return _ordered({r.run_id: r for r in shape_runs(plan, vocab_size, batch_for)})

    def add(cfg: dict[str, Any], role: str) -> None:
        rid = run_id(cfg)
        runs.setdefault(rid, RunSpec(cfg)).roles.add(role)

    shapes = sizes(plan, vocab_size)
    seeds = plan.seeds.seeds
    for nl, d, nh in shapes:
        n = count_n(nl, d, plan, vocab_size, nh)
        budgets = list(plan.tokens.absolute) + [
            max(k * n, plan.tokens.min_tokens) for k in plan.tokens.per_param
        ]
        for tokens in budgets:
            for s in seeds:
                add(_config(plan, nl, d, nh, tokens, s, batch_for), "grid")
        if plan.kaplan.long_tokens:
            for s in seeds:
                add(_config(plan, nl, d, nh, plan.kaplan.long_tokens, s, batch_for), "L(N)")
    if plan.kaplan.data_subsets:
        if not shapes:
            raise ConfigError("kaplan.data_subsets needs at least one model size")
        try:
            nl, d, nh = shapes[plan.kaplan.subset_model]
        except IndexError:
            raise ConfigError(
                f"kaplan.subset_model = {plan.kaplan.subset_model}: only {len(shapes)} sizes"
            ) from None
        for tokens in plan.kaplan.data_subsets:
            for s in seeds:
                add(_config(plan, nl, d, nh, tokens, s, batch_for), "L(D)")
    if plan.repeat.unique_tokens and shapes:  # repeated data: epochs over a fixed subset
        rep = plan.repeat
        for nl, d, nh in {"smallest": shapes[:1], "largest": shapes[-1:], "all": shapes}[rep.sizes]:
            for u in rep.unique_tokens:
                for e in rep.epochs:
                    for s in seeds:
                        cfg = _config(plan, nl, d, nh, e * u, s, batch_for, unique_tokens=int(round(u)))
                        add(cfg, f"repeat:{int(round(u))}")
    for c in plan.isoflop.budgets:
        for nl, d, nh in isoflop_shapes(plan, c, vocab_size):
            n = count_n(nl, d, plan, vocab_size, nh)
            for s in seeds:
                add(_config(plan, nl, d, nh, c / (6 * n), s, batch_for), f"isoflop:{c:.3g}")
    if plan.seeds.repeat and shapes:
        pick = {"smallest": shapes[:1], "largest": shapes[-1:], "all": shapes}[plan.seeds.repeat_sizes]
        base = max(seeds) + 1
        for nl, d, nh in pick:
            group = [r for r in runs.values() if r.config["n_layer"] == nl and r.config["d_model"] == d]
            tokens = max(r.config["tokens"] for r in group) if group else plan.kaplan.long_tokens
            if not tokens:
                continue
            for j in range(plan.seeds.repeat):
                add(_config(plan, nl, d, nh, tokens, base + j, batch_for), "seed-noise")
            for s in seeds:
                add(_config(plan, nl, d, nh, tokens, s, batch_for), "seed-noise")
    for x in plan.runs:
        add(
            _config(
                plan,
                x.n_layer,
                x.d_model,
                x.n_head,
                x.tokens,
                x.seed,
                batch_for,
                **{**x.train, "lr": x.lr, "batch_size": x.batch_size},
            ),
            x.role,
        )
    return _ordered(runs)


def _ordered(runs: dict[str, RunSpec]) -> list[RunSpec]:
    """Run specs in a stable order, cheap first."""
    return sorted(
        runs.values(),
        key=lambda r: (r.config["tokens"] * r.config["d_model"] ** 2 * r.config["n_layer"], r.run_id),
    )


def for_arch(plan: Plan, arch: str) -> Plan:
    """The plan restricted to one model family (``[model] arch = arch``)."""
    return plan.model_copy(update={"model": plan.model.model_copy(update={"arch": arch})})


def plan_hash(plan: Plan) -> str:
    """A hash of the validated plan (what was asked, not where it is written)."""
    d = plan.model_dump(exclude={"out", "executor"})
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _peak_lr(lr: LRPlan, d_model: int) -> float | None:
    """The run's peak learning rate under the plan's rule (None: the trainer's Kaplan LR(N))."""
    if lr.rule == "fixed":
        return lr.value
    if lr.rule == "width":
        return lr.value * min(1.0, lr.base_width / d_model)
    return None


def pilot_runs(plan: Plan, vocab_size: int) -> list[RunSpec]:
    """Noise-scale rule: one short run per model shape at the pilot batch, to measure B_simple (tokens)."""
    shapes = {
        (r.config.get("arch", "gpt"), r.config["n_layer"], r.config["d_model"], r.config.get("n_head"))
        for r in make_runs(plan, vocab_size)
    }
    out = []
    for arch, nl, d, nh in sorted(shapes, key=str):
        cfg = _config(for_arch(plan, arch), nl, d, nh, plan.batch.pilot_tokens, plan.seeds.seeds[0])
        cfg["noise_scale"] = True
        # a pilot exists to measure: every step, split the trainer's way (two micro-batches for an even
        # batch, its smallest prime factor otherwise) unless the plan sets batch.micro_size
        cfg["noise_scale_every"] = 1
        out.append(RunSpec(cfg, {"pilot"}))
    return out


def batch_for_steps(tokens: float, plan: Plan) -> int:
    """Steps rule: the even batch (sequences) nearest to tokens / (steps n_ctx), clamped (even: the noise
    scale is measured from two equal micro-batches). Not a power of two: at this scale the loss depends on
    the step count, and a 2x jump in batch between neighbouring runs shows up in their losses."""
    b = 2 * round(tokens / (2 * plan.batch.steps * plan.data.n_ctx))  # even: two equal micro-batches
    return int(min(max(b, plan.batch.min_size, 2), plan.batch.max_size))


def batch_from_noise(b_simple_tokens: float, plan: Plan) -> int:
    """Batch size (sequences) from a measured B_simple (tokens): the nearest power of two, clamped."""
    b = max(1.0, b_simple_tokens / plan.data.n_ctx)
    b = 2 ** round(math.log2(b))
    return int(min(max(b, plan.batch.min_size), plan.batch.max_size))
