"""Gradient noise scale measured during training, at almost no cost (McCandlish 2018, App. A).

Two squared gradient norms taken from the *same* parameters at two batch sizes give unbiased estimates of
|G|^2 and tr(Sigma) (``scalinglab.laws.batch.noise_scale_estimates``); their EMAs give B_simple.

- One device, gradient accumulation (n_micro >= 2): B_small = one micro-batch, B_big = the whole step.
  The first micro-batch's gradient is ``.grad`` itself after its backward (the trainer zeroes the gradients
  before each step): one fused multi-tensor norm (``torch._foreach_norm``). For the later ones a tensor hook
  on each parameter takes the norm of the gradient autograd hands over *before* it is added into ``.grad``
  (no copy, nothing held). |G_big|^2 is one more fused norm over ``.grad``. The per-step arithmetic is done
  in float64 on the host when the metrics are read, so a step queues one small tensor of norms and never
  waits for the device. The hooks are installed on the first ``after_micro_backward`` call.
- DDP (``attach_ddp_hook``): a communication hook takes the squared norm of each parameter's local
  gradient in the bucket before the all-reduce (the rank's gradient, B_small = b_micro * n_micro); the
  averaged gradient's (B_big = B_small * world_size) is read from ``.grad`` at ``end_step``, as in
  k-diffusion's ``DDPGradientStatsHook``. Under ``no_sync`` accumulation the hook fires once per step. Both
  sums run over the parameters in model order, never bucket by bucket: DDP rebuilds its buckets after the
  first step of every process (in gradient-ready order), so a per-bucket sum would round differently in a
  resumed run than in an uninterrupted one (it did, from the 7th significant digit of ``gns_*``).

Loss scaling: trainers usually call ``(loss / n_micro).backward()``, so each micro-batch gradient arrives
scaled by 1/n_micro and ``.grad`` ends up holding the mean. ``loss_divided_by_n_micro=True`` (default) undoes
that; pass False if the trainer backpropagates the un-divided micro loss. ``grad_scale`` (an fp16
GradScaler's scale) is divided out as well. All norms are taken in fp32, before clipping.

Units: batch sizes are in sequences; ``gns_trace`` is tr(Sigma) per sequence, ``gns_g2`` is |G|^2
(loss in nats/token), ``gns_b_simple_tokens`` = B_simple in sequences * seq_len.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from scalinglab.laws.batch import NoiseScaleEMA, noise_scale_estimates

_NOT_MEASURABLE = (
    "noise scale not measured: it needs two batch sizes from the same parameters, i.e. >= 2 micro-batches "
    "per step (gradient accumulation) or DDP with >= 2 processes; this run has {n} micro-batch(es) on "
    "{w} process(es), so gns_* metrics stay None"
)


def beta_for_run(total_steps: int) -> float:
    """An EMA decay averaging over ~5 % of a run's steps (clipped to 20..1000 steps).

    The |G|^2 and tr(Sigma) estimates fall by orders of magnitude early in training, so with a long average
    (0.99 = 100 steps) a short run's B_simple stays dominated by its first steps; long runs want the steadier
    average. Suggested use: ``NoiseScaleMeter(..., beta=beta_for_run(total_steps))``.
    """
    window = min(1000.0, max(20.0, total_steps / 20))
    return 1.0 - 1.0 / window


def _norms(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """fp32 L2 norms of ``ts`` (0-d tensors) from one fused multi-tensor kernel: half the cost of a per-tensor
    loop on CPU, one launch instead of one per parameter on a GPU."""
    return list(torch._foreach_norm([t.detach() for t in ts], 2, dtype=torch.float32))


class NoiseScaleMeter:
    """Measures |G|^2, tr(Sigma) and B_simple on every optimizer step; see the module docstring.

    ``b_micro``: sequences per micro-batch per process; ``n_micro``: micro-batches per step;
    ``world_size``: DDP processes; ``seq_len``: tokens per sequence; ``beta``: EMA decay per step.
    """

    def __init__(
        self,
        b_micro: int,
        n_micro: int,
        world_size: int = 1,
        seq_len: int = 1,
        beta: float = 0.99,
        *,
        loss_divided_by_n_micro: bool = True,
        grad_scale: float = 1.0,
    ) -> None:
        for name, v in (("b_micro", b_micro), ("n_micro", n_micro), ("world_size", world_size),
                        ("seq_len", seq_len)):
            if int(v) != v or v < 1:
                raise ValueError(f"NoiseScaleMeter: {name} must be a positive integer, got {v!r}")
        self.b_micro, self.n_micro, self.world_size, self.seq_len = int(b_micro), int(n_micro), int(
            world_size), int(seq_len)
        self.loss_divided_by_n_micro = loss_divided_by_n_micro
        self.grad_scale = float(grad_scale)
        self.ema = NoiseScaleEMA(beta)
        self.ddp = world_size > 1
        self.enabled = self.ddp or self.n_micro >= 2
        if not self.enabled:
            warnings.warn(_NOT_MEASURABLE.format(n=self.n_micro, w=self.world_size), stacklevel=2)
        if self.ddp:  # local gradient of one rank vs the all-reduced one
            self.b_small = self.b_micro * self.n_micro
            self.b_big = self.b_small * self.world_size
        else:  # one micro-batch vs the accumulated step
            self.b_small, self.b_big = self.b_micro, self.b_micro * self.n_micro
        self._hooks: list[Any] = []
        self._hooked: set[int] = set()
        self._held: list[torch.Tensor] = []  # this micro-batch's gradient norms, taken by the hooks
        self._step_norms: list[torch.Tensor] = []  # this step's per-parameter fp32 norms, in order
        self._counts: list[int] = []  # how many of _step_norms each micro-batch contributed
        self._weights: list[float] = []  # each micro-batch's loss weight
        self._default_weight = 1.0 / self.n_micro if loss_divided_by_n_micro else 1.0
        self._local: dict[int, torch.Tensor] = {}  # DDP: id(parameter) -> its local gradient's fp32 norm
        self._n_seen = 0
        # per step, not yet on the host: ("micro", norms, counts, weights) or ("pair", [sq_small, sq_big])
        self._pending: list[tuple] = []
        self.last: dict[str, float] | None = None  # the last step's raw |G_small|^2, |G_big|^2 (for tests)
        self._warned_zero = False

    # ---------------------------------------------------------------- per-step calls (trainer)
    def begin_step(self) -> None:
        """Start an optimizer step (call before the first micro-batch's backward)."""
        self._held.clear()
        self._step_norms.clear()
        self._counts.clear()
        self._weights.clear()
        self._local.clear()
        self._n_seen = 0

    def _hook(self, grad: torch.Tensor) -> None:
        if 0 < self._n_seen < self.n_micro:  # the first micro-batch is read from .grad after its backward
            self._held += _norms([grad])

    def after_micro_backward(self, params: Iterable[torch.nn.Parameter],
                             loss_weight: float | None = None) -> None:
        """Call after each micro-batch's backward (single-device path; a cheap counter under DDP).

        ``loss_weight``: the factor the micro-batch's mean loss was multiplied by before backward (default
        1/n_micro, or 1 with ``loss_divided_by_n_micro=False``); pass it when it varies between micro-batches
        (e.g. weighting by the count of unmasked tokens). Under DDP the default weight is assumed.
        """
        self._n_seen += 1
        if self.ddp or not self.enabled:
            return
        first = self._n_seen == 1  # .grad holds the first micro-batch's gradient alone
        grads: list[torch.Tensor] = []
        for p in params:
            if not p.requires_grad:
                continue
            if id(p) not in self._hooked:
                if not first:
                    raise RuntimeError("NoiseScaleMeter: a new parameter appeared in the middle of a step; "
                                       "pass the same parameters on every after_micro_backward call")
                self._hooks.append(p.register_hook(self._hook))  # later micro-batches: before accumulation
                self._hooked.add(id(p))
            if first and p.grad is not None:
                grads.append(p.grad)
        w = self._default_weight if loss_weight is None else float(loss_weight)
        if not w > 0:
            raise ValueError(f"NoiseScaleMeter: loss_weight must be positive, got {loss_weight!r}")
        norms = (_norms(grads) if grads else []) if first else list(self._held)
        self._held.clear()
        self._step_norms += norms
        self._counts.append(len(norms))
        self._weights.append(w)

    def end_step(self, params: Iterable[torch.nn.Parameter], *, report: bool = True) -> dict | None:
        """Call after the last backward, before clipping. Returns the ``gns_*`` metrics (EMAs) or None.

        With ``report=False`` the step's two norms are queued on the device (no host sync) and folded into
        the EMAs at the next reporting call; a GPU trainer passes ``report=is_log_step``.
        """
        if not self.enabled:
            return None
        if self._n_seen != self.n_micro:
            raise RuntimeError(f"NoiseScaleMeter: expected {self.n_micro} after_micro_backward calls this "
                               f"step, got {self._n_seen} (call begin_step() before the first micro-batch)")
        if self.ddp:
            if not self._local:
                raise RuntimeError("NoiseScaleMeter: no gradient buckets seen this step; call "
                                   "attach_ddp_hook(ddp_model, meter) once after wrapping the model in DDP")
            # model order (not bucket order, which DDP changes after a process's first step): the same sums,
            # rounded the same way, in a resumed run as in an uninterrupted one
            params = list(params)
            local = [self._local[id(p)] for p in params if id(p) in self._local]
            if len(local) != len(self._local):
                raise RuntimeError("NoiseScaleMeter.end_step: the DDP hook saw gradients of parameters not "
                                   "passed here; pass the DDP model's parameters")
            small = torch.stack(local).double().square().sum()
            big = torch.stack(_norms([p.grad for p in params if p.grad is not None])).double().square().sum()
            pair = torch.stack([small, big])
            torch.distributed.all_reduce(pair)  # gloo has no AVG: SUM then divide
            pair = pair / (self.world_size * (self._default_weight * self.n_micro) ** 2)
            self._pending.append(("pair", pair.detach()))
        else:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:
                raise RuntimeError("NoiseScaleMeter.end_step: no parameter has a gradient; call it after the "
                                   "backward passes and before zero_grad()")
            norms = torch.stack(self._step_norms + _norms(grads))  # the step's only extra device op
            self._pending.append(("micro", norms, list(self._counts), list(self._weights)))
        return self.metrics() if report else None

    # ---------------------------------------------------------------- results and state
    def _flush(self) -> None:
        if not self._pending:
            return
        # one device-to-host copy for all queued steps, then each step's slice
        flat = torch.cat([values for _, values, *_ in self._pending]).double().cpu().numpy()
        offsets = np.cumsum([0] + [len(values) for _, values, *_ in self._pending])
        rows = []
        for (kind, _, *layout), lo, hi in zip(self._pending, offsets[:-1], offsets[1:], strict=True):
            v = flat[lo:hi]
            if kind == "pair":
                rows.append((float(v[0]), float(v[1])))
                continue
            counts, weights = layout  # micro-batch i: |its mean-loss gradient|^2 = its squared norms / w_i^2
            sq = np.square(v)
            ends = np.cumsum(counts)
            micro = [sq[e - c : e].sum() / w**2 for c, e, w in zip(counts, ends, weights, strict=True)]
            rows.append((float(np.mean(micro)), float(sq[ends[-1]:].sum() / sum(weights) ** 2)))
        self._pending.clear()
        for sq_small, sq_big in rows:
            sq_small, sq_big = sq_small / self.grad_scale**2, sq_big / self.grad_scale**2
            g2, trace = noise_scale_estimates(sq_small, sq_big, self.b_small, self.b_big)
            self.ema.update(g2, trace)
            self.last = {"sq_norm_small": float(sq_small), "sq_norm_big": float(sq_big), "g2": g2,
                         "trace": trace}
            if sq_big == 0.0 and not self._warned_zero:
                self._warned_zero = True
                warnings.warn("noise scale: the gradient is exactly zero this step; B_simple is undefined "
                              "(reported as None) until the gradient is non-zero", stacklevel=3)

    def metrics(self) -> dict[str, float | None]:
        """``gns_g2`` (|G|^2), ``gns_trace`` (tr(Sigma) per sequence), ``gns_b_simple_tokens`` (EMAs).

        A value is None when unknown: not measurable, no step yet, or (B_simple) while the |G|^2 average is
        still <= 0, which happens early on when the signal is buried in the noise."""
        self._flush()
        if not self.enabled or self.ema.n_updates == 0:
            return {"gns_g2": None, "gns_trace": None, "gns_b_simple_tokens": None}
        g2, trace, b = self.ema.g2, self.ema.trace_sigma, self.ema.b_simple
        ok = math.isfinite(b) and g2 > 0 and trace > 0
        return {"gns_g2": g2, "gns_trace": trace, "gns_b_simple_tokens": b * self.seq_len if ok else None}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state for the checkpoint (the EMAs and the batch geometry they were measured at)."""
        self._flush()
        return {"ema": self.ema.state_dict(), "b_small": self.b_small, "b_big": self.b_big,
                "seq_len": self.seq_len}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the EMAs (a resumed run continues the same averages; batch sizes may differ)."""
        self.ema.load_state_dict(state["ema"])

    def close(self) -> None:
        """Remove the parameter hooks. A trainer that measures only some steps calls it after each measured
        step, so that the others pay nothing; the next ``after_micro_backward`` installs them again."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._hooked.clear()


# -------------------------------------------------------------------- DDP communication hook
def attach_ddp_hook(ddp_model: torch.nn.parallel.DistributedDataParallel, meter: NoiseScaleMeter) -> None:
    """Register the communication hook that feeds ``meter`` (call once, after wrapping the model in DDP).

    Replaces DDP's default all-reduce with the same averaging all-reduce, taking the norm of each
    parameter's local (per-rank) gradient before it (the averaged one is read from ``.grad`` at
    ``end_step``).
    """
    if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError("attach_ddp_hook needs a torch.nn.parallel.DistributedDataParallel model")
    if not meter.ddp:
        raise ValueError(f"attach_ddp_hook: the meter was built with world_size={meter.world_size}; "
                         "pass world_size=torch.distributed.get_world_size()")
    ddp_model.register_comm_hook(meter, _gns_comm_hook)


def _gns_comm_hook(meter, bucket):  # no annotations: DDP checks them and would see strings (__future__)
    buf = bucket.buffer()
    norms = _norms(bucket.gradients())  # views of ``buf``, before it is averaged in place
    meter._local.update((id(p), n) for p, n in zip(bucket.parameters(), norms, strict=True))
    buf.div_(meter.world_size)
    return torch.distributed.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])
