"""CLI commands for train: ``scalinglab train`` (one run into a run folder; DDP under torchrun)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from scalinglab.cli._app import app, print_json


@app.command("train")
def train_cmd(
    out: Path = typer.Option(
        ..., "--out", help="Run folder (config.json, metrics.jsonl, ckpt.pt, summary.json)."
    ),
    arch: str = typer.Option("gpt", "--arch", help="Model family: gpt (transformer) | lstm."),
    n_layer: int = typer.Option(..., "--n-layer"),
    d_model: int = typer.Option(..., "--d-model"),
    n_head: int = typer.Option(None, "--n-head", help="Attention heads (gpt; required there)."),
    ctx: int = typer.Option(..., "--ctx", help="Context length (tokens per sequence)."),
    tokens: float = typer.Option(..., "--tokens", help="Training budget in tokens (1e6 accepted)."),
    unique_tokens: float = typer.Option(
        None, "--unique-tokens", help="Repeated data: epochs over the first U tokens of the train split."
    ),
    data: str = typer.Option("text:default", "--data", help="Data spec or prepared folder."),
    batch_size: int = typer.Option(16, "--batch-size", help="Global batch in sequences."),
    micro_batch_size: int = typer.Option(None, "--micro-batch-size", help="Sequences per micro-batch."),
    lr: float = typer.Option(None, "--lr", help="Peak LR (default Kaplan LR(N))."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | constant | wsd"),
    warmup_tokens: float = typer.Option(None, "--warmup-tokens", help="Default 1% of the budget."),
    weight_decay: float = typer.Option(0.1, "--weight-decay"),
    grad_clip: float = typer.Option(1.0, "--grad-clip", help="0 = off."),
    seed: int = typer.Option(0, "--seed"),
    d_ff: int = typer.Option(None, "--d-ff"),
    untied: bool = typer.Option(False, "--untied"),
    bias: bool = typer.Option(False, "--bias"),
    sparse_window: int = typer.Option(
        None, "--sparse-window", help="Alternate dense and banded:W attention."
    ),
    eval_every: int = typer.Option(0, "--eval-every", help="Steps (0 = ~10 evaluations)."),
    eval_batches: int = typer.Option(8, "--eval-batches", help="Validation batches per evaluation."),
    eval_set: list[str] = typer.Option(
        None, "--eval-set", help="Extra evaluation set for the final validation (repeatable): "
        "text:SOURCE[,split=test] or file:PATH."
    ),
    log_every: int = typer.Option(0, "--log-every", help="Steps (0 = ~200 rows)."),
    ckpt_every: int = typer.Option(0, "--ckpt-every", help="Steps (0 = ~10 checkpoints)."),
    noise_scale: bool = typer.Option(True, "--noise-scale/--no-noise-scale"),
    noise_scale_every: int = typer.Option(
        4, "--noise-scale-every", help="One device: measure the noise scale on every k-th step."
    ),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
) -> None:
    """Train one run (GPT or LSTM); prints a progress bar (loss, tokens/s) on stderr and the summary at the
    end."""
    import math
    import sys

    from scalinglab.errors import ConfigError
    from scalinglab.train.config import TrainConfig
    from scalinglab.train.trainer import train

    flags = (("--tokens", tokens), ("--warmup-tokens", warmup_tokens), ("--unique-tokens", unique_tokens))
    for flag, v in flags:
        if v is not None and not math.isfinite(v):
            raise ConfigError(f"{flag} {v}: must be a finite number of tokens")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if arch not in ("gpt", "lstm"):
        raise ConfigError(f"--arch {arch!r}: allowed gpt or lstm")
    gpt_only = dict(n_head=n_head, d_ff=d_ff, bias=bias or None, sparse_window=sparse_window)
    if arch == "lstm" and any(v is not None for v in gpt_only.values()):
        bad = [k for k, v in gpt_only.items() if v is not None]
        flags = ", ".join("--" + k.replace("_", "-") for k in bad)
        raise ConfigError(f"--arch lstm: {flags} apply to gpt only")
    cfg = TrainConfig.make(
        arch=arch,
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        n_ctx=ctx,
        d_ff=d_ff,
        tied=not untied,
        bias=bias,
        sparse_window=sparse_window,
        data=data,
        tokens=int(tokens),
        unique_tokens=None if unique_tokens is None else int(unique_tokens),
        batch_size=batch_size,
        micro_batch_size=micro_batch_size,
        lr=lr,
        schedule=schedule,
        warmup_tokens=None if warmup_tokens is None else int(warmup_tokens),
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        seed=seed,
        eval_every=eval_every,
        eval_batches=eval_batches,
        eval_sets=list(eval_set or []),
        log_every=log_every,
        ckpt_every=ckpt_every,
        noise_scale=noise_scale,
        noise_scale_every=noise_scale_every,
        device=device,
        dtype=dtype,
        compile=compile_,
    )
    if not resume and ((out / "ckpt.pt").exists() or (out / "summary.json").exists()):
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    steps = max(1, cfg.tokens // (cfg.batch_size * cfg.n_ctx))

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=as_json,
        disable=not rank0,
    )
    task = progress.add_task("train", total=steps, info="")

    def on_metrics(row: dict) -> None:
        if not progress.live.is_started:  # shown from the first row: an error before it stays one line
            progress.start()
        val = "" if row.get("val_loss") is None else f" val {row['val_loss']:.3f}"
        progress.update(
            task,
            completed=row["step"],
            info=f"loss {row['train_loss']:.3f}{val}  {row['tokens_per_s']:,.0f} tok/s",
        )

    try:
        summary = train(cfg, out, resume=resume, on_metrics=on_metrics)
    finally:
        if progress.live.is_started:
            progress.stop()
    if not rank0:
        return
    if as_json:
        print_json(summary)
    else:
        sys.stdout.write(
            f"{summary['status']}: {summary['steps']} steps, {summary['tokens']:,} tokens, "
            f"train loss {summary['final_train_loss']}, val loss {summary['final_val_loss']} "
            f"nats/token, {summary['wall_s']:.1f} s -> {out}\n"
        )
        for name, r in (summary.get("eval_sets") or {}).items():
            bpb = "" if r.get("bpb") is None else f", {r['bpb']:.4f} bits/byte"
            sys.stdout.write(f"  eval set {name}: {r['loss']:.4f} nats/token{bpb} ({r['tokens']:,} tokens)\n")
