"""`TrainConfig`: what defines one training run (model shape, data, budget, optimiser, schedule)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scalinglab.errors import ConfigError
from scalinglab.model.config import GPTConfig, LSTMConfig


class TrainConfig(BaseModel):
    """One run. Units: tokens as tokens, batch sizes in sequences of n_ctx tokens, LR per optimizer step.

    ``lr=None`` uses Kaplan's LR(N) = 0.003239 - 0.0001395 ln N (N = Kaplan non-embedding count).
    ``warmup_tokens=None`` warms up over 1 % of the budget (at least one step). ``log_every``, ``eval_every``,
    ``ckpt_every`` (steps) of 0 mean automatic: ~200 metric rows, ~10 evaluations, ~10 checkpoints per run.
    ``vocab_size=None`` takes the dataset's vocabulary.

    ``arch``: ``gpt`` (the transformer; ``n_head`` required) or ``lstm`` (``LSTMConfig``: ``n_layer``,
    ``d_model``, ``tied`` set the model; the attention and MLP fields do not apply and are refused).
    ``eval_sets``: extra evaluation sets for the final validation (``text:SOURCE[,split=..]`` or
    ``file:PATH``, see ``scalinglab.train.evaluate``); they do not change the trajectory (operational).
    """

    model_config = ConfigDict(extra="forbid")

    # model shape
    arch: Literal["gpt", "lstm"] = "gpt"
    n_layer: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_head: int | None = Field(None, ge=1)
    n_ctx: int = Field(ge=2)
    d_ff: int | None = None
    d_head: int | None = None
    activation: Literal["gelu", "gelu_tanh"] = "gelu"
    tied: bool = True
    bias: bool = False
    attention: list[str] | None = None
    sparse_window: int | None = None
    vocab_size: int | None = None
    # data and budget
    data: str = "text:default"
    tokens: int = Field(ge=1)
    # repeated data: train on the first unique_tokens tokens of the train split, in epochs (None: all of it)
    unique_tokens: int | None = Field(None, ge=2)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int | None = None
    # optimiser and schedule
    lr: float | None = None
    schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    warmup_tokens: int | None = Field(None, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    wsd_decay_frac: float = Field(0.2, gt=0.0, le=1.0)
    weight_decay: float = Field(0.1, ge=0.0)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = Field(1.0, ge=0.0)  # 0 = no clipping
    seed: int = 0
    # bookkeeping
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(8, ge=1)
    log_every: int = Field(0, ge=0)
    ckpt_every: int = Field(0, ge=0)
    noise_scale: bool = True
    # one device: measure B_simple on every k-th step (steps 0, k, 2k, ...); only those steps are split into
    # two micro-batches when micro_batch_size is unset, so the split and the meter cost 1/k of their price.
    # Under DDP the per-rank gradients give the measurement without a split: every step.
    noise_scale_every: int = Field(4, ge=1)
    eval_sets: list[str] = []
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    compile: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError("micro_batch_size must be >= 1")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr = {self.lr}: must be > 0")
        if self.arch == "gpt" and self.n_head is None:
            raise ValueError("n_head is required for arch 'gpt'")
        if self.arch == "lstm":
            bad = [k for k in _GPT_ONLY if getattr(self, k) not in (None, False, "gelu")]
            if bad:
                raise ValueError(f"{bad} do not apply to arch 'lstm' (a transformer's fields)")
        return self

    @classmethod
    def make(cls, **kw) -> TrainConfig:
        """Build with a ConfigError (naming the field) instead of pydantic's ValidationError."""
        try:
            return cls(**kw)
        except ValidationError as e:
            msgs = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"invalid training config: {msgs}") from None

    @property
    def planned_steps(self) -> int:
        """Optimiser steps of the run: whole batches of ``batch_size`` x ``n_ctx`` tokens in the budget
        (at least one)."""
        return max(1, self.tokens // (self.batch_size * self.n_ctx))

    def arch_config(self, vocab_size: int) -> GPTConfig | LSTMConfig:
        """The model config of this run's family (``arch``), with the vocabulary of the data."""
        if self.arch == "lstm":
            return LSTMConfig(n_layer=self.n_layer, d_model=self.d_model,
                              vocab_size=self.vocab_size or vocab_size, n_ctx=self.n_ctx, tied=self.tied)
        return self.gpt_config(vocab_size)

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The model shape, with the vocabulary of the data (unless ``vocab_size`` is set)."""
        return GPTConfig(
            n_layer=self.n_layer,
            d_model=self.d_model,
            n_head=self.n_head,
            vocab_size=self.vocab_size or vocab_size,
            n_ctx=self.n_ctx,
            d_ff=self.d_ff,
            tied=self.tied,
            bias=self.bias,
            attention=self.attention,
            sparse_window=self.sparse_window,
            d_head=self.d_head,
            activation=self.activation,
        )


_GPT_ONLY = ("n_head", "d_ff", "d_head", "attention", "sparse_window", "bias", "activation")

# Fields that may change between a run and its resumption (they do not change the trajectory).
OPERATIONAL_FIELDS = frozenset(
    {"device", "compile", "log_every", "eval_every", "ckpt_every", "eval_batches", "eval_sets"}
)
