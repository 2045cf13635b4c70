"""GPU training throughput and MFU: GPT-2 124M (12 layers, d 768, 12 heads, V 50257, T 1024), bf16 autocast,
``torch.compile``, SDPA flash attention, fused AdamW, one GPU.

    python bench/bench_train_gpu.py [--batch 16] [--steps 30] [--no-compile]
    python bench/bench_train_gpu.py --smoke     # CPU, 2 layers, V 1024, 3 steps, fp32: checks the script only


Prints tokens/s and MFU = tokens/s x (6N + 12 L H Q T FLOPs/token, PaLM) / peak dense bf16 FLOP/s of
the device (H100 SXM: 989 TFLOP/s; scalinglab.train.hardware), plus the same ratio under the 6N convention.
The ratio measured in one run is MFU itself (achieved / peak). Exits 0 without CUDA (nothing to measure) and
non-zero only if the loss is not finite (a correctness failure). ``--smoke`` runs the same code on the CPU
with a 2-layer model (the tests do, so that the script works the first time a GPU is lent).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up steps)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU, 2 layers, T 64, V 1024, 1 + 2 steps, fp32")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.steps, args.no_compile = 2, 2, True
    elif not torch.cuda.is_available():
        print("bench_train_gpu: no CUDA device; skipped (nothing measured)")
        return 0

    from scalinglab.model.config import named_config
    from scalinglab.model.counting import flops_per_token
    from scalinglab.model.gpt import GPT
    from scalinglab.train.hardware import peak_flops

    dev = torch.device("cpu" if args.smoke else "cuda")
    name = "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(dev)
    peak = peak_flops(name)
    cfg = named_config("gpt2")  # n_ctx 1024, V 50257, tied, no biases
    if args.smoke:
        cfg = cfg.with_(n_layer=2, n_ctx=64, vocab_size=1024)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = model if args.no_compile else torch.compile(model)
    B, T = args.batch, cfg.n_ctx
    x = torch.randint(0, cfg.vocab_size, (B, T + 1), device=dev)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def step() -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=not args.smoke):
            _, loss = fwd(inp, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(1 if args.smoke else 5):
        loss = step()
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t0
    tps = B * T * args.steps / dt
    f = flops_per_token(cfg)
    what = "GPT-2 shape, 2 layers" if args.smoke else "GPT-2 124M"
    print(
        f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, device {name}, "
        f"torch {torch.__version__}, compile {not args.no_compile}, bf16 autocast {not args.smoke}"
    )
    print(
        f"{what}, B {B} x T {T}: {tps:,.0f} tokens/s ({dt / args.steps * 1e3:.1f} ms/step; "
        f"warm-up incl. compile {warm:.1f} s), loss {loss.item():.3f}"
    )
    if peak:
        print(
            f"MFU (PaLM 6N + 12LHQT, {f['palm']:,} FLOPs/token) = {tps * f['palm'] / peak:.1%} of "
            f"{peak / 1e12:.0f} TFLOP/s dense bf16; 6N convention: {tps * f['6n'] / peak:.1%} (goal >= 50%)"
        )
    else:
        print(f"MFU: peak FLOP/s of {name!r} unknown (add it to scalinglab.train.hardware.PEAK_BF16)")
    if not torch.isfinite(loss):
        print("CORRECTNESS FAILURE: non-finite loss")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
