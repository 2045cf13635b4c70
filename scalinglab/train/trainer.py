"""One training run: model + data + AdamW + schedule + metrics + atomic checkpoints; exact resume; DDP.

``train(cfg, out_dir)`` trains the budget ``cfg.tokens`` in steps of ``cfg.batch_size`` sequences of n_ctx
tokens, writing the run folder of docs/interfaces.md: ``config.json``, ``metrics.jsonl``, ``ckpt.pt``,
``summary.json`` (present = finished, status ``done`` or ``diverged``). Launched under ``torchrun``
(WORLD_SIZE > 1) it uses DDP: every rank draws the same global batch and takes its own rows, so the curve is
the single-process one. A run can be stopped at a step boundary with ``should_stop`` (it checkpoints and
returns status ``stopped``) or killed at any time: re-running resumes from the last checkpoint exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from scalinglab.errors import ConfigError, InputError
from scalinglab.faults import point
from scalinglab.io import sweep_temps, writing
from scalinglab.model.counting import FLOP_CONVENTIONS, count_params, flops_per_token, kaplan_lr
from scalinglab.model.lstm import build_model
from scalinglab.train import checkpoint as ckio
from scalinglab.train.config import OPERATIONAL_FIELDS, TrainConfig
from scalinglab.train.hardware import mfu, peak_flops
from scalinglab.train.schedule import lr_at


def _data_api():
    """The data layer (``scalinglab.data``): ensure_dataset, open_dataset, Sampler, eval_batches."""
    import scalinglab.data as data

    return data


# ----------------------------------------------------------------------------------------------- helpers


class _Dist:
    """Process-group facts; ``owned`` when this call initialised the group (and so must destroy it)."""

    def __init__(self) -> None:
        self.owned = False
        if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
            self.owned = True
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank)) if self.on else 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.on:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.on:
            dist.barrier()

    def close(self) -> None:
        if self.owned:
            dist.destroy_process_group()


def _pick_device(cfg: TrainConfig, d: _Dist) -> torch.device:
    if cfg.device != "auto":
        try:
            dev = torch.device(cfg.device)
        except RuntimeError:
            raise ConfigError(f"device {cfg.device!r}: not a torch device (auto, cpu, cuda, cuda:N)") \
                from None
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as e:  # not compiled in, no such GPU, ...
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
            raise ConfigError(
                f"device {cfg.device!r} is not usable with torch {torch.__version__}: {msg}"
            ) from None
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _set_threads() -> None:
    n = os.environ.get("SCALINGLAB_THREADS")
    if n:
        try:
            torch.set_num_threads(max(1, int(n)))
        except ValueError:
            raise ConfigError(f"SCALINGLAB_THREADS={n!r}: must be an integer") from None


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (dim >= 2: linear weights and embeddings), none on gains and biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=0.0, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=True)


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a kill: dropped
            break
    return rows


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class _Meter:
    """The noise-scale meter (scalinglab.train.noise_scale) or a no-op when switched off.

    ``on``: the run measures (noise scale enabled and measurable); the trainer calls begin/micro/end on the
    measured steps only and reads ``metrics()`` (the EMAs) on the others.
    """

    def __init__(self, cfg: TrainConfig, b_micro: int, n_micro: int, world: int, ddp_model,
                 measured_steps: int) -> None:
        self.m = None
        if not cfg.noise_scale:
            return
        from scalinglab.train.noise_scale import NoiseScaleMeter, attach_ddp_hook, beta_for_run

        # one micro-batch on one process (a batch of 1, or micro_batch_size = batch_size): the meter warns
        # that the noise scale is not measured, and gns_* stay None
        self.m = NoiseScaleMeter(b_micro=b_micro, n_micro=n_micro, world_size=world, seq_len=cfg.n_ctx,
                                 beta=beta_for_run(measured_steps))
        if ddp_model is not None:
            attach_ddp_hook(ddp_model, self.m)

    @property
    def on(self) -> bool:
        return self.m is not None and self.m.enabled

    def begin(self) -> None:
        if self.m is not None:
            self.m.begin_step()

    def micro(self, params, loss_weight: float) -> None:
        if self.m is not None:
            self.m.after_micro_backward(params, loss_weight=loss_weight)

    def end(self, params, report: bool) -> dict:
        return (self.m.end_step(params, report=report) or {}) if self.m is not None else {}

    def metrics(self) -> dict:
        return self.m.metrics() if self.m is not None else {}

    @property
    def n_measured(self) -> int:
        """Measurements folded into the averages so far (current after ``metrics``/``end(report=True)``)."""
        return self.m.ema.n_updates if self.m is not None else 0

    def close(self) -> None:
        if self.m is not None:
            self.m.close()

    def state_dict(self):
        return self.m.state_dict() if self.m is not None else None

    def load_state_dict(self, st) -> None:
        if self.m is not None and st is not None:
            self.m.load_state_dict(st)


# ----------------------------------------------------------------------------------------------- train


def train(
    cfg: TrainConfig | dict,
    out_dir: str | Path,
    *,
    resume: bool = True,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> dict:
    """Train one run into ``out_dir`` and return its summary (also ``summary.json``).

    ``resume=True``: a finished folder returns its stored summary; a folder with ``ckpt.pt`` continues from it
    (the config must match, operational fields aside). ``on_metrics(row)`` is called on rank 0 for every
    metrics row. ``should_stop(step)`` is asked after each step: True checkpoints, returns status ``stopped``.
    Losses are in nats per token, FLOPs cumulative under each convention of ``flops_per_token``.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig.make(**cfg)
    out = Path(out_dir)
    summary_path = out / "summary.json"
    if resume and summary_path.is_file():
        cfg_path = out / "config.json"
        if cfg_path.is_file():
            _check_same_config(json.loads(cfg_path.read_text())["train"], cfg, f"{out}: the finished run")
        return json.loads(summary_path.read_text())
    threads = torch.get_num_threads()
    _set_threads()
    d = _Dist()
    try:
        return _train(cfg, out, d, resume, on_metrics, should_stop)
    finally:
        d.close()
        torch.set_num_threads(threads)  # no process-wide state left behind


def _check_same_config(old: dict, cfg: TrainConfig, what: str) -> None:
    """A resume (or a finished run returned as is) must have the config it was written with, operational
    fields (logging, checkpoint intervals, device) aside."""
    try:  # a config written before a field existed: compare with that field's default
        old = TrainConfig.make(**old).model_dump()
    except ConfigError:
        pass
    old = {k: v for k, v in old.items() if k not in OPERATIONAL_FIELDS}
    new = {k: v for k, v in cfg.model_dump().items() if k not in OPERATIONAL_FIELDS}
    if old != new:
        diff = sorted(k for k in new.keys() | old.keys() if old.get(k) != new.get(k))
        raise ConfigError(f"{what} was written with a different config (fields {diff}); "
                          "use another folder or resume=False")


def _default_micro(cfg, per_rank: int, world: int) -> int:
    """Micro-batch size of a *measured* step when the config leaves it open (sequences per rank per backward).

    Under DDP one micro-batch per rank: the noise scale comes from per-rank vs all-reduced gradients. On one
    device with the noise scale on, the batch is split into p equal micro-batches, p its smallest prime factor
    (two for an even batch), so that B_small = B/p and B_big = B give the McCandlish two-batch estimate on
    every run (a single backward would leave it unmeasured). Steps that do not measure (see
    ``noise_scale_every``) run one micro-batch.
    """
    if world == 1 and cfg.noise_scale and per_rank >= 2:
        p = next(k for k in range(2, per_rank + 1) if per_rank % k == 0)
        if p > 4:
            warnings.warn(
                f"batch of {per_rank} sequences: the noise scale needs equal micro-batches, so measured "
                f"steps (every {cfg.noise_scale_every}) run {p} micro-batches of {per_rank // p}; an even "
                "batch size measures with two", stacklevel=3,
            )
        return per_rank // p
    return per_rank


@dataclass
class _Run:
    """Everything one run holds: the config and what is derived from it (the fixed numbers of the run), the
    data, model, optimiser and meter, the run folder's paths, and the progress (``step``, ``last``)."""

    cfg: TrainConfig
    d: _Dist
    out: Path
    api: Any
    ds: Any
    ds_path: Path
    device: torch.device
    mcfg: Any
    T: int
    B: int
    micro: int  # sequences per backward on a plain step
    n_micro: int
    micro_gns: int  # ... and on a noise-measuring step
    n_micro_gns: int
    gns_every: int
    steps: int
    warmup: int
    log_every: int
    eval_every: int
    ckpt_every: int
    params_count: dict
    fpt: dict
    peak: float  # peak learning rate
    amp: bool
    bpt: float | None  # bytes per token of the validation text (bits per byte), None off text
    meta: dict
    raw: Any = None  # the GPT itself
    model: Any = None  # raw, or raw under DDP
    fwd: Any = None  # model, compiled or not
    opt: Any = None
    sampler: Any = None
    meter: Any = None
    params: list = field(default_factory=list)
    dev_peak: float | None = None
    step: int = 0
    wall_prev: float = 0.0  # wall seconds before this process (resumed runs)
    last: dict = field(default_factory=lambda: {"train_loss": None, "val_loss": None, "val_bpb": None})

    @property
    def summary_path(self) -> Path:
        return self.out / "summary.json"

    @property
    def ckpt_path(self) -> Path:
        return self.out / ckio.CKPT_NAME

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"


def _setup(cfg: TrainConfig, out: Path, d: _Dist) -> _Run:
    """The run's data, device and fixed numbers (batch split, steps, intervals, peak LR), checked."""
    api = _data_api()
    ds_path = Path(api.ensure_dataset(cfg.data))
    ds = api.open_dataset(ds_path)
    device = _pick_device(cfg, d)
    mcfg = cfg.arch_config(int(ds.vocab_size))
    if cfg.vocab_size is not None and cfg.vocab_size < int(ds.vocab_size):
        raise ConfigError(
            f"vocab_size {cfg.vocab_size} is smaller than the data's vocabulary {ds.vocab_size}"
        )
    T, B = cfg.n_ctx, cfg.batch_size
    per_rank = B // max(1, d.world)
    micro = cfg.micro_batch_size or per_rank  # a plain step
    micro_gns = cfg.micro_batch_size or _default_micro(cfg, per_rank, d.world)  # a noise-measuring step
    if B % d.world or per_rank % micro or per_rank % micro_gns:
        raise ConfigError(
            f"batch_size {B} must be a multiple of world_size {d.world} x micro_batch_size {micro}"
        )
    steps = cfg.planned_steps
    params_count, fpt = count_params(mcfg), flops_per_token(mcfg)
    peak = float(cfg.lr) if cfg.lr is not None else kaplan_lr(params_count["kaplan"])
    if not peak > 0:
        raise ConfigError(
            f"Kaplan LR(N) = {peak:.3g} is not positive for N = {params_count['kaplan']}: set lr"
        )
    bpt = ds.bytes_per_token("val") if hasattr(ds, "bytes_per_token") else None
    meta = {
        "model": mcfg.to_dict(),
        "data": cfg.data,
        "dataset_path": str(ds_path),
        "vocab_size": int(ds.vocab_size),
        "fingerprint": getattr(ds, "fingerprint", None),
        "domain": getattr(ds, "domain", None),
        "bytes_per_token": bpt,
    }
    return _Run(
        cfg=cfg, d=d, out=out, api=api, ds=ds, ds_path=ds_path, device=device, mcfg=mcfg, T=T, B=B,
        micro=micro, n_micro=per_rank // micro, micro_gns=micro_gns, n_micro_gns=per_rank // micro_gns,
        gns_every=cfg.noise_scale_every if d.world == 1 else 1, steps=steps,
        warmup=max(1, round(0.01 * steps)) if cfg.warmup_tokens is None else cfg.warmup_tokens // (B * T),
        log_every=cfg.log_every or max(1, steps // 200), eval_every=cfg.eval_every or max(1, steps // 10),
        ckpt_every=cfg.ckpt_every or max(1, steps // 10), params_count=params_count, fpt=fpt, peak=peak,
        amp=cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda"), bpt=bpt, meta=meta,
    )


def _build(run: _Run) -> None:
    """Model (seeded by cfg.seed without touching the global RNG), optimiser and sampler, fresh."""
    cfg = run.cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        run.raw = build_model(run.mcfg)
    run.raw.to(run.device)
    run.opt = _optimizer(run.raw, cfg, run.device)
    run.sampler = run.api.Sampler(run.ds, "train", run.B, run.T, cfg.seed, unique_tokens=cfg.unique_tokens)


def _resume(run: _Run, resume: bool) -> dict | None:
    """Load ``ckpt.pt`` into the run (model, optimiser, sampler, RNG, progress) when resuming from one;
    returns the checkpoint (None for a fresh run)."""
    if not (resume and run.ckpt_path.is_file()):
        return None
    ck = ckio.load_checkpoint(run.ckpt_path, map_location=run.device)
    _check_same_config(ck["config"], run.cfg, f"{run.out}: the checkpoint")
    run.raw.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    run.sampler.load_state_dict(ck["sampler"])
    ckio.set_rng_state(ck["rng"])
    run.step, run.wall_prev, run.last = ck["step"], ck["wall_s"], ck["last"]
    return ck


def _prepare_folder(run: _Run, ck: dict | None) -> None:
    """Rank 0: a fresh run starts an empty folder; a resumed one drops the metrics rows logged after its
    checkpoint (they are logged again). Then config.json. Every rank waits."""
    if run.d.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
        sweep_temps(run.out)  # a checkpoint's temporary file from a killed attempt
        if ck is None:
            for p in (run.metrics_path, run.ckpt_path, run.summary_path):
                p.unlink(missing_ok=True)
        else:
            rows = [r for r in _read_metrics(run.metrics_path) if r["step"] <= run.step]
            ckio.atomic_write_bytes(run.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        ckio.atomic_write_json(
            run.out / "config.json",
            {
                "train": run.cfg.model_dump(),
                "meta": run.meta,
                "params": run.params_count,
                "flops_per_token": run.fpt,
                "steps": run.steps,
                "world_size": run.d.world,
            },
        )
    run.d.barrier()


def _wrap(run: _Run, ck: dict | None) -> None:
    """DDP around the model (several processes), the noise-scale meter (restored from the checkpoint) and
    torch.compile when asked."""
    d, raw = run.d, run.raw
    run.model = raw
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.model = DDP(raw, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    run.meter = _Meter(run.cfg, run.micro_gns, run.n_micro_gns, d.world, run.model if d.on else None,
                       -(-run.steps // run.gns_every))
    if ck is not None:
        run.meter.load_state_dict(ck.get("noise_scale"))
        run.last.setdefault("gns_logged_n", run.meter.n_measured)  # a checkpoint from before rows tracked it
    run.fwd = torch.compile(run.model) if run.cfg.compile else run.model
    run.params = [p for p in raw.parameters()]
    if run.device.type == "cuda":
        run.dev_peak = peak_flops(torch.cuda.get_device_name(run.device))


def _evaluate(run: _Run) -> tuple[float | None, float | None]:
    """Validation loss (nats/token) and bits per byte, computed on rank 0 and shared with every rank."""
    d, raw, device, micro = run.d, run.raw, run.device, run.micro
    if d.rank == 0:
        raw.eval()
        tot = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=run.amp):
            # the evaluation set depends on (batch_size, eval_batches) only; forwards go micro-batch-wise
            for b in run.api.eval_batches(run.ds, "val", run.B, run.T, run.cfg.eval_batches):
                for i in range(0, len(b.x), micro):
                    x = torch.from_numpy(np.asarray(b.x[i : i + micro])).to(device)
                    y = torch.from_numpy(np.asarray(b.y[i : i + micro])).to(device)
                    m = (
                        None
                        if b.mask is None
                        else torch.from_numpy(np.asarray(b.mask[i : i + micro])).to(device)
                    )
                    _, loss = raw(x, y, m, return_logits=False)
                    n = float(x.numel() if m is None else m.sum())
                    tot += torch.tensor([float(loss) * n, n], dtype=torch.float64)
        raw.train()
        val = (tot[0] / tot[1]).item() if tot[1] > 0 else float("nan")
    else:
        val = 0.0
    t = d.all_sum(torch.tensor([val], dtype=torch.float64))  # broadcast from rank 0
    val = _finite_or_none(t.item())
    bpb = None if (val is None or not run.bpt) else val / math.log(2) / run.bpt
    return val, bpb


def _checkpoint(run: _Run, cur_step: int, wall: float) -> None:
    """ckpt.pt (atomic, rank 0): model, optimiser, progress, sampler, every RNG, meter, config."""
    if run.d.rank == 0:
        ckio.save_checkpoint(
            run.ckpt_path,
            {
                "model": run.raw.state_dict(),
                "optimizer": run.opt.state_dict(),
                "step": cur_step,
                "tokens": cur_step * run.B * run.T,
                "wall_s": wall,
                "sampler": run.sampler.state_dict(),
                "rng": ckio.rng_state(),
                "noise_scale": run.meter.state_dict(),
                "config": run.cfg.model_dump(),
                "meta": run.meta,
                "last": run.last,
            },
        )
    run.d.barrier()


def _summary(run: _Run, status: str, wall: float, at_step: int) -> dict:
    """The run summary (summary.json) at ``at_step`` steps."""
    tokens = at_step * run.B * run.T
    s = {
        "status": status,
        "params": run.params_count,
        "flops_per_token": run.fpt,
        "tokens": tokens,
        "steps": at_step,
        "flops": {c: v * tokens for c, v in run.fpt.items() if c in FLOP_CONVENTIONS},
        "final_train_loss": run.last["train_loss"],
        "final_val_loss": run.last["val_loss"],
        "final_val_bpb": run.last["val_bpb"],
        "wall_s": wall,
        "batch_size_tokens": run.B * run.T,
        "lr_peak": run.peak,
        "planned_steps": run.steps,
        "world_size": run.d.world,
    }
    if run.cfg.unique_tokens is not None:  # repeated data: the subset and how many passes over it
        s["unique_tokens"] = run.cfg.unique_tokens
        s["epochs"] = tokens / run.sampler.epoch_tokens
    return s


@dataclass
class _Step:
    """What one optimiser step measured: learning rate, global mean train loss (nats/token), gradient norm
    before clipping, the meter's gns_* (on reported steps) and whether the step was taken (finite)."""

    lr: float
    train_loss: float
    gnorm: float
    gns: dict
    ok: bool


def _step(run: _Run) -> _Step:
    """One optimiser step at ``run.step``: the learning rate, the global batch (this rank's rows), the
    micro-batch loop (the noise scale measured on every ``gns_every``-th step), clipping and AdamW. A
    non-finite loss or gradient norm skips the update (``ok`` False)."""
    cfg, d, device, meter, B, T = run.cfg, run.d, run.device, run.meter, run.B, run.T
    step = run.step
    lr = lr_at(
        step,
        peak=run.peak,
        total_steps=run.steps,
        warmup_steps=run.warmup,
        schedule=cfg.schedule,
        min_lr_ratio=cfg.min_lr_ratio,
        decay_frac=cfg.wsd_decay_frac,
    )
    for g in run.opt.param_groups:
        g["lr"] = lr
    batch = run.sampler.next_batch()
    rows = slice(d.rank * (B // d.world), (d.rank + 1) * (B // d.world))
    gx, gy = np.asarray(batch.x), np.asarray(batch.y)
    if gx.shape != (B, T):
        raise InputError(f"data sampler returned a batch of shape {gx.shape}, expected {(B, T)}")
    gm = None if batch.mask is None else np.asarray(batch.mask, dtype=np.float32)
    n_global = float(B * T if gm is None else gm.sum())
    x = torch.from_numpy(gx[rows]).to(device, non_blocking=True)
    y = torch.from_numpy(gy[rows]).to(device, non_blocking=True)
    msk = None if gm is None else torch.from_numpy(gm[rows]).to(device, non_blocking=True)
    measure = meter.on and step % run.gns_every == 0
    mb, n_mb = (run.micro_gns, run.n_micro_gns) if measure else (run.micro, run.n_micro)
    if measure:
        meter.begin()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(n_mb):
        sl = slice(i * mb, (i + 1) * mb)
        mm = None if msk is None else msk[sl]
        n_m = float(mb * T if mm is None else mm.sum())
        weight = n_m * d.world / max(n_global, 1.0)
        sync = contextlib.nullcontext() if (not d.on or i == n_mb - 1) else run.model.no_sync()
        with sync:
            with torch.autocast(device.type, torch.bfloat16, enabled=run.amp):
                _, loss = run.fwd(x[sl], y[sl], mm, return_logits=False)
            # weight so that the summed (and DDP-averaged) gradient is that of the global-batch mean loss
            (loss * weight).backward()
        loss_sum += loss.detach().double() * n_m
        if measure:
            meter.micro(run.params, weight if weight > 0 else 1.0 / n_mb)
    report = (step + 1) % run.log_every == 0 or step + 1 == run.steps
    gns = meter.end(run.params, report=report) if measure else (meter.metrics() if report else {})
    if measure and run.gns_every > 1:
        meter.close()  # no hooks on the steps in between (re-installed by the next measured step)
    train_loss = (d.all_sum(loss_sum) / max(n_global, 1.0)).item()
    gnorm = torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    gnorm = float(gnorm)
    ok = math.isfinite(train_loss) and math.isfinite(gnorm)
    if ok:
        run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    return _Step(lr, train_loss, gnorm, gns, ok)


def _metrics_row(run: _Run, st: _Step, evaluated: bool, tps: float, wall: float) -> dict:
    """The metrics.jsonl row after ``run.step`` steps (docs/interfaces.md: metric keys)."""
    tokens = run.step * run.B * run.T
    row = {
        "step": run.step,
        "tokens": tokens,
        **{f"flops_{c}": run.fpt[c] * tokens for c in FLOP_CONVENTIONS},
        "train_loss": st.train_loss,
        "val_loss": run.last["val_loss"] if evaluated else None,
        "val_bpb": run.last["val_bpb"] if evaluated else None,
        "lr": st.lr,
        "grad_norm": st.gnorm,
        "tokens_per_s": tps,
        "mfu": mfu(tps, run.fpt["palm"], run.dev_peak, run.d.world),
        "gns_g2": None,
        "gns_trace": None,
        "gns_b_simple_tokens": None,
    }
    # gns_* only on a row with a new measurement since the last row that carried them (measured steps are
    # every noise_scale_every-th): a row count is then a measurement count
    if st.gns and run.meter.n_measured != run.last.get("gns_logged_n", 0):
        row.update({k: _finite_or_none(v) for k, v in st.gns.items() if k.startswith("gns_")})
        run.last["gns_logged_n"] = run.meter.n_measured
    row["wall_s"] = wall
    return row


def _train(cfg: TrainConfig, out: Path, d: _Dist, resume: bool, on_metrics, should_stop) -> dict:
    run = _setup(cfg, out, d)
    _build(run)
    ck = _resume(run, resume)
    _prepare_folder(run, ck)
    _wrap(run, ck)
    del ck

    # ---- the loop
    run.raw.train()
    t_start = time.perf_counter()
    tok_log, train_time = 0, 0.0
    status = "done"
    while run.step < run.steps:
        t0 = time.perf_counter()
        st = _step(run)
        if not st.ok:
            status = "diverged"
            break
        run.step += 1
        point("train.step")
        step = run.step
        if run.device.type == "cuda" and step % run.log_every == 0:
            torch.cuda.synchronize(run.device)
        train_time += time.perf_counter() - t0
        tok_log += run.B * run.T
        run.last["train_loss"] = st.train_loss
        is_last = step == run.steps
        evaluated = step % run.eval_every == 0 or is_last
        if evaluated:
            run.last["val_loss"], run.last["val_bpb"] = _evaluate(run)
        if step % run.log_every == 0 or is_last or evaluated:
            tps = tok_log / train_time if train_time > 0 else 0.0
            row = _metrics_row(run, st, evaluated, tps, run.wall_prev + time.perf_counter() - t_start)
            if d.rank == 0:
                with writing(run.metrics_path), open(run.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if on_metrics is not None:
                    on_metrics(row)
            tok_log, train_time = 0, 0.0
        stop = should_stop is not None and bool(should_stop(step))
        if d.on and should_stop is not None:  # any rank asking to stop stops all of them at this step
            stop = d.all_sum(torch.tensor([int(stop)])).item() > 0
        if step % run.ckpt_every == 0 or is_last or stop:
            _checkpoint(run, step, run.wall_prev + time.perf_counter() - t_start)
        if stop and not is_last:
            run.meter.close()
            return _summary(run, "stopped", run.wall_prev + time.perf_counter() - t_start, step)

    run.meter.close()
    wall = run.wall_prev + time.perf_counter() - t_start
    s = _summary(run, status, wall, run.step)
    if status == "diverged":
        s["diverged_at_step"] = run.step + 1
    if status == "done" and d.rank == 0:  # loss by position and on the extra sets (scalinglab.train.evaluate)
        from scalinglab.train.evaluate import final_evaluation

        s.update(final_evaluation(run.raw, run.ds, batch_size=run.B, n_ctx=run.T,
                                  eval_batches=cfg.eval_batches, micro=run.micro, device=run.device,
                                  amp=run.amp, eval_sets=cfg.eval_sets))
    if d.rank == 0:
        ckio.atomic_write_json(run.summary_path, s)
    d.barrier()
    return s
