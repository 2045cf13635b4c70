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
from pathlib import Path

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
    summary_path, ckpt_path, metrics_path = out / "summary.json", out / ckio.CKPT_NAME, out / "metrics.jsonl"
    if resume and summary_path.is_file():
        cfg_path = out / "config.json"
        if cfg_path.is_file():
            _check_same_config(json.loads(cfg_path.read_text())["train"], cfg, f"{out}: the finished run")
        return json.loads(summary_path.read_text())
    threads = torch.get_num_threads()
    _set_threads()
    d = _Dist()
    try:
        return _train(cfg, out, d, resume, on_metrics, should_stop, summary_path, ckpt_path, metrics_path)
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


def _train(cfg, out, d, resume, on_metrics, should_stop, summary_path, ckpt_path, metrics_path) -> dict:
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
    n_micro, n_micro_gns = per_rank // micro, per_rank // micro_gns
    gns_every = cfg.noise_scale_every if d.world == 1 else 1
    steps = max(1, cfg.tokens // (B * T))
    warmup = max(1, round(0.01 * steps)) if cfg.warmup_tokens is None else cfg.warmup_tokens // (B * T)
    log_every = cfg.log_every or max(1, steps // 200)
    eval_every = cfg.eval_every or max(1, steps // 10)
    ckpt_every = cfg.ckpt_every or max(1, steps // 10)
    params_count, fpt = count_params(mcfg), flops_per_token(mcfg)
    peak = float(cfg.lr) if cfg.lr is not None else kaplan_lr(params_count["kaplan"])
    if not peak > 0:
        raise ConfigError(
            f"Kaplan LR(N) = {peak:.3g} is not positive for N = {params_count['kaplan']}: set lr"
        )
    amp = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda")
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

    # ---- model, optimiser, state (fresh or resumed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        raw = build_model(mcfg)
    raw.to(device)
    opt = _optimizer(raw, cfg, device)
    sampler = api.Sampler(ds, "train", B, T, cfg.seed, unique_tokens=cfg.unique_tokens)
    step, wall_prev = 0, 0.0
    last = {"train_loss": None, "val_loss": None, "val_bpb": None}
    ck = None
    if resume and ckpt_path.is_file():
        ck = ckio.load_checkpoint(ckpt_path, map_location=device)
        _check_same_config(ck["config"], cfg, f"{out}: the checkpoint")
        raw.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sampler.load_state_dict(ck["sampler"])
        ckio.set_rng_state(ck["rng"])
        step, wall_prev, last = ck["step"], ck["wall_s"], ck["last"]
    if d.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        sweep_temps(out)  # a checkpoint's temporary file from a killed attempt
        if ck is None:
            for p in (metrics_path, ckpt_path, summary_path):
                p.unlink(missing_ok=True)
        else:  # drop rows logged after the checkpoint (the resumed run logs them again)
            rows = [r for r in _read_metrics(metrics_path) if r["step"] <= step]
            ckio.atomic_write_bytes(metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        ckio.atomic_write_json(
            out / "config.json",
            {
                "train": cfg.model_dump(),
                "meta": meta,
                "params": params_count,
                "flops_per_token": fpt,
                "steps": steps,
                "world_size": d.world,
            },
        )
    d.barrier()

    model = raw
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(raw, device_ids=[device.index] if device.type == "cuda" else None)
    meter = _Meter(cfg, micro_gns, n_micro_gns, d.world, model if d.on else None, -(-steps // gns_every))
    if ck is not None:
        meter.load_state_dict(ck.get("noise_scale"))
        last.setdefault("gns_logged_n", meter.n_measured)  # a checkpoint from before rows tracked it
    fwd = torch.compile(model) if cfg.compile else model
    params = [p for p in raw.parameters()]
    dev_peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None

    def evaluate() -> tuple[float | None, float | None]:
        if d.rank == 0:
            raw.eval()
            tot = torch.zeros(2, dtype=torch.float64)
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
                # the evaluation set depends on (batch_size, eval_batches) only; forwards go micro-batch-wise
                for b in api.eval_batches(ds, "val", B, T, cfg.eval_batches):
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
        bpb = None if (val is None or not bpt) else val / math.log(2) / bpt
        return val, bpb

    def checkpoint(cur_step: int, wall: float) -> None:
        if d.rank == 0:
            ckio.save_checkpoint(
                ckpt_path,
                {
                    "model": raw.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": cur_step,
                    "tokens": cur_step * B * T,
                    "wall_s": wall,
                    "sampler": sampler.state_dict(),
                    "rng": ckio.rng_state(),
                    "noise_scale": meter.state_dict(),
                    "config": cfg.model_dump(),
                    "meta": meta,
                    "last": last,
                },
            )
        d.barrier()

    def summary(status: str, wall: float, at_step: int) -> dict:
        tokens = at_step * B * T
        s = {
            "status": status,
            "params": params_count,
            "flops_per_token": fpt,
            "tokens": tokens,
            "steps": at_step,
            "flops": {c: v * tokens for c, v in fpt.items() if c in FLOP_CONVENTIONS},
            "final_train_loss": last["train_loss"],
            "final_val_loss": last["val_loss"],
            "final_val_bpb": last["val_bpb"],
            "wall_s": wall,
            "batch_size_tokens": B * T,
            "lr_peak": peak,
            "planned_steps": steps,
            "world_size": d.world,
        }
        if cfg.unique_tokens is not None:  # repeated data: the subset and how many passes over it
            s["unique_tokens"] = cfg.unique_tokens
            s["epochs"] = tokens / sampler.epoch_tokens
        return s

    # ---- the loop
    raw.train()
    t_start = time.perf_counter()
    tok_log, train_time = 0, 0.0
    status = "done"
    while step < steps:
        t0 = time.perf_counter()
        lr = lr_at(
            step,
            peak=peak,
            total_steps=steps,
            warmup_steps=warmup,
            schedule=cfg.schedule,
            min_lr_ratio=cfg.min_lr_ratio,
            decay_frac=cfg.wsd_decay_frac,
        )
        for g in opt.param_groups:
            g["lr"] = lr
        batch = sampler.next_batch()
        rows = slice(d.rank * (B // d.world), (d.rank + 1) * (B // d.world))
        gx, gy = np.asarray(batch.x), np.asarray(batch.y)
        if gx.shape != (B, T):
            raise InputError(f"data sampler returned a batch of shape {gx.shape}, expected {(B, T)}")
        gm = None if batch.mask is None else np.asarray(batch.mask, dtype=np.float32)
        n_global = float(B * T if gm is None else gm.sum())
        x = torch.from_numpy(gx[rows]).to(device, non_blocking=True)
        y = torch.from_numpy(gy[rows]).to(device, non_blocking=True)
        msk = None if gm is None else torch.from_numpy(gm[rows]).to(device, non_blocking=True)
        measure = meter.on and step % gns_every == 0
        mb, n_mb = (micro_gns, n_micro_gns) if measure else (micro, n_micro)
        if measure:
            meter.begin()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(n_mb):
            sl = slice(i * mb, (i + 1) * mb)
            mm = None if msk is None else msk[sl]
            n_m = float(mb * T if mm is None else mm.sum())
            weight = n_m * d.world / max(n_global, 1.0)
            sync = contextlib.nullcontext() if (not d.on or i == n_mb - 1) else model.no_sync()
            with sync:
                with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                    _, loss = fwd(x[sl], y[sl], mm, return_logits=False)
                # weight so that the summed (and DDP-averaged) gradient is that of the global-batch mean loss
                (loss * weight).backward()
            loss_sum += loss.detach().double() * n_m
            if measure:
                meter.micro(params, weight if weight > 0 else 1.0 / n_mb)
        report = (step + 1) % log_every == 0 or step + 1 == steps
        gns = meter.end(params, report=report) if measure else (meter.metrics() if report else {})
        if measure and gns_every > 1:
            meter.close()  # no hooks on the steps in between (re-installed by the next measured step)
        train_loss = (d.all_sum(loss_sum) / max(n_global, 1.0)).item()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        gnorm = float(gnorm)
        if not (math.isfinite(train_loss) and math.isfinite(gnorm)):
            status = "diverged"
            opt.zero_grad(set_to_none=True)
            break
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        point("train.step")
        if device.type == "cuda" and step % log_every == 0:
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        tok_log += B * T
        last["train_loss"] = train_loss
        is_last = step == steps
        evaluated = step % eval_every == 0 or is_last
        if evaluated:
            last["val_loss"], last["val_bpb"] = evaluate()
        if step % log_every == 0 or is_last or evaluated:
            tps = tok_log / train_time if train_time > 0 else 0.0
            tokens = step * B * T
            row = {
                "step": step,
                "tokens": tokens,
                **{f"flops_{c}": fpt[c] * tokens for c in FLOP_CONVENTIONS},
                "train_loss": train_loss,
                "val_loss": last["val_loss"] if evaluated else None,
                "val_bpb": last["val_bpb"] if evaluated else None,
                "lr": lr,
                "grad_norm": gnorm,
                "tokens_per_s": tps,
                "mfu": mfu(tps, fpt["palm"], dev_peak, d.world),
                "gns_g2": None,
                "gns_trace": None,
                "gns_b_simple_tokens": None,
            }
            # gns_* only on a row with a new measurement since the last row that carried them (measured
            # steps are every noise_scale_every-th): a row count is then a measurement count
            if gns and meter.n_measured != last.get("gns_logged_n", 0):
                row.update({k: _finite_or_none(v) for k, v in gns.items() if k.startswith("gns_")})
                last["gns_logged_n"] = meter.n_measured
            row["wall_s"] = wall_prev + time.perf_counter() - t_start
            if d.rank == 0:
                with writing(metrics_path), open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if on_metrics is not None:
                    on_metrics(row)
            tok_log, train_time = 0, 0.0
        stop = should_stop is not None and bool(should_stop(step))
        if d.on and should_stop is not None:  # any rank asking to stop stops all of them at this step
            stop = d.all_sum(torch.tensor([int(stop)])).item() > 0
        if step % ckpt_every == 0 or is_last or stop:
            checkpoint(step, wall_prev + time.perf_counter() - t_start)
        if stop and not is_last:
            meter.close()
            return summary("stopped", wall_prev + time.perf_counter() - t_start, step)

    meter.close()
    wall = wall_prev + time.perf_counter() - t_start
    s = summary(status, wall, step)
    if status == "diverged":
        s["diverged_at_step"] = step + 1
    if status == "done" and d.rank == 0:  # loss by position and on the extra sets (scalinglab.train.evaluate)
        from scalinglab.train.evaluate import final_evaluation

        s.update(final_evaluation(raw, ds, batch_size=B, n_ctx=T, eval_batches=cfg.eval_batches, micro=micro,
                                  device=device, amp=amp, eval_sets=cfg.eval_sets))
    if d.rank == 0:
        ckio.atomic_write_json(summary_path, s)
    d.barrier()
    return s
