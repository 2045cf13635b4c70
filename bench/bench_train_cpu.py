"""CPU training throughput: our GPT step against Hugging Face ``GPT2LMHeadModel`` of the same shape,
batch, precision (fp32) and optimiser (AdamW, clip 1.0), measured interleaved in one process. Throughput is
tokens per CPU-second of this process (median round), which other processes on a shared machine disturb far
less than wall time; SCALINGLAB_THREADS=1 gives the cleanest figure (the wall-clock ratio is printed too).

    python bench/bench_train_cpu.py [--quick]

Prints, per shape, tokens/s of both, the ratio (goal >= 1.3x), our achieved GFLOP/s (matmul FLOPs and the
PaLM 6N + attention convention), the share of our step spent in GEMM kernels and in the SDPA attention
kernels (torch.profiler, self CPU time), and the ceilings those shares put on the ratio against HF-erf: HF's
step time over our time in GEMMs alone ("erf ceil": as if attention, GELU, LayerNorm, loss, optimiser and
Python took no time) and over our time in GEMMs plus SDPA ("+sdpa": as if only the kernels both steps share
by construction, the same GEMMs and the SDPA that the model must call, took time). Exits
non-zero only if the two models disagree on the loss for the same weights (a correctness failure).
Threads: SCALINGLAB_THREADS (default: torch's).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from scalinglab.model.config import GPTConfig
from scalinglab.model.counting import flops_per_token
from scalinglab.model.gpt import GPT

SHAPES = [  # (n_layer, d_model, n_head, n_ctx, vocab, batch)
    (2, 64, 2, 64, 256, 16),
    (4, 128, 4, 128, 256, 16),
    (4, 256, 4, 256, 256, 8),
    (2, 128, 2, 128, 50257, 4),
]


HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new"}  # our activation -> HF's name for the same function


def hf_model(L, d, H, T, V, act="gelu_tanh"):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=L,
        n_embd=d,
        n_head=H,
        n_positions=T,
        vocab_size=V,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=HF_ACT[act],
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg)


def copy_hf_into_ours(hf, ours: GPT) -> None:
    """HF GPT-2 weights -> our module (Conv1D stores [in, out]: transpose)."""
    t = hf.transformer
    with torch.no_grad():
        ours.wte.weight.copy_(t.wte.weight)
        ours.wpe.weight.copy_(t.wpe.weight)
        for hb, ob in zip(t.h, ours.blocks, strict=False):
            for hl, ol in (
                (hb.attn.c_attn, ob.attn.qkv),
                (hb.attn.c_proj, ob.attn.proj),
                (hb.mlp.c_fc, ob.mlp.fc),
                (hb.mlp.c_proj, ob.mlp.proj),
            ):
                ol.weight.copy_(hl.weight.T)
                ol.bias.copy_(hl.bias)
            for hn, on in ((hb.ln_1, ob.ln_1), (hb.ln_2, ob.ln_2)):
                on.weight.copy_(hn.weight)
                on.bias.copy_(hn.bias)
        ours.ln_f.weight.copy_(t.ln_f.weight)
        ours.ln_f.bias.copy_(t.ln_f.bias)


def check_same_loss(L, d, H, T, V, act) -> float:
    """|loss difference| of HF and ours on the same weights and tokens (correctness of the comparison)."""
    torch.manual_seed(0)
    hf = hf_model(L, d, H, T, V, act)
    ours = GPT(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True, activation=act))
    copy_hf_into_ours(hf, ours)
    x = torch.randint(0, V, (2, T + 1))
    with torch.no_grad():
        ref = hf(input_ids=x[:, :-1], labels=x[:, :-1]).loss  # HF shifts internally: T - 1 targets
        _, ours_loss = ours(x[:, :-2], x[:, 1:-1])
    return abs(ref.item() - ours_loss.item())


def our_step(L, d, H, T, V, B, x, y):
    """Our training step as the trainer runs it: AdamW fused, no decay on gains/biases, clip 1.0."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    params = list(model.parameters())

    def step():
        _, loss = model(x, y, return_logits=False)  # as the trainer calls it: no [B, T, V] logits
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def hf_step(L, d, H, T, V, B, x, act):
    """HF GPT2LMHeadModel, dropout 0, labels = inputs (HF shifts), AdamW (torch default), clip 1.0."""
    torch.manual_seed(0)
    hf = hf_model(L, d, H, T, V, act)
    hf.train()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def step():
        loss = hf(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return step


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def kernel_shares(fn, n: int = 2) -> tuple[float, float]:
    """(GEMM share, SDPA share) of ``fn``'s self CPU time: the GEMM kernels, and the scaled-dot-product
    attention kernels (forward and backward; their own GEMMs included). Both are the very kernels HF's step
    runs. The profiler's own overhead lands on the other ops, so the shares err low and the ceilings derived
    from them err high."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    gemm = sum(e.self_cpu_time_total for e in ev if e.key in GEMM_OPS)
    sdpa = sum(e.self_cpu_time_total for e in ev if "scaled_dot_product" in e.key)
    return gemm / total, sdpa / total


def timeit(fn, n: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call. CPU time counts only while this process runs, so on a
    shared machine it measures a step's work far more stably than wall time (1 thread: the idle-core time)."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def main() -> int:
    quick = "--quick" in sys.argv
    if os.environ.get("SCALINGLAB_THREADS"):
        torch.set_num_threads(int(os.environ["SCALINGLAB_THREADS"]))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32, eager; "
        "ours: exact GELU, biases on (HF's shape)\n"
        "HF-tanh = GPT2LMHeadModel as configured for GPT-2 (gelu_new); HF-erf = the same GELU as ours"
    )
    rounds, reps = (4, 2) if quick else (10, 2)
    print("tok/s = tokens per CPU-second of this process (median of the rounds)")
    head = (
        "shape (L, d, H, T, V, B)",
        "ours tok/s",
        "HF-tanh",
        "HF-erf",
        "x tanh",
        "x erf",
        "GFLOP/s mm",
        "GFLOP/s palm",
        "GEMM %",
        "SDPA %",
        "erf ceil",
        "+sdpa",
        "|dloss|",
    )
    widths = (10, 9, 9, 7, 6, 10, 12, 6, 6, 8, 6, 8)
    print(f"{head[0]:28s} " + " ".join(f"{h:>{w}s}" for h, w in zip(head[1:], widths, strict=True)))
    bad = False
    r_tanh, r_erf, r_med, ceil, ceil_sdpa = [], [], [], [], []
    for L, d, H, T, V, B in SHAPES:
        err = max(check_same_loss(L, d, H, T, V, act) for act in ("gelu", "gelu_tanh"))
        bad |= err > 1e-4
        x = torch.randint(0, V, (B, T))
        y = torch.randint(0, V, (B, T))
        fns = {
            "ours": our_step(L, d, H, T, V, B, x, y),
            "tanh": hf_step(L, d, H, T, V, B, x, "gelu_tanh"),
            "erf": hf_step(L, d, H, T, V, B, x, "gelu"),
        }
        for fn in fns.values():
            fn()  # warm-up
        times = {k: [] for k in fns}
        order = list(fns)
        for r in range(rounds):  # interleaved, order alternating, so that load changes hit all alike
            for k in order if r % 2 else order[::-1]:
                times[k].append(timeit(fns[k], reps))
        # tokens per CPU-second (median round): robust to other processes; wall-clock tokens/s for reference
        tps = {k: B * T / statistics.median(c for _, c in v) for k, v in times.items()}
        wall = {k: B * T / statistics.median(w for w, _ in v) for k, v in times.items()}
        r_med.append(wall["ours"] / wall["erf"])
        f = flops_per_token(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True))
        r_tanh.append(tps["ours"] / tps["tanh"])
        r_erf.append(tps["ours"] / tps["erf"])
        share, sdpa = kernel_shares(fns["ours"])
        ceil.append(r_erf[-1] / share)
        ceil_sdpa.append(r_erf[-1] / (share + sdpa))
        print(
            f"{str((L, d, H, T, V, B)):28s} {tps['ours']:10,.0f} {tps['tanh']:9,.0f} {tps['erf']:9,.0f} "
            f"{r_tanh[-1]:7.2f} {r_erf[-1]:6.2f} {tps['ours'] * f['matmul'] / 1e9:10.2f} "
            f"{tps['ours'] * f['palm'] / 1e9:12.2f} {100 * share:6.1f} {100 * sdpa:6.1f} {ceil[-1]:7.2f}x "
            f"{ceil_sdpa[-1]:5.2f}x {err:8.1e}"
        )
    gm = statistics.geometric_mean
    print(
        f"ratio ours/HF (geometric mean over shapes): {gm(r_tanh):.2f}x vs HF GPT-2 (gelu_new), "
        f"{gm(r_erf):.2f}x vs HF with the same exact GELU (goal >= 1.3x), from CPU time; "
        f"from wall time: {gm(r_med):.2f}x vs HF-erf (noisy on a shared machine)\n"
        f"ceiling vs HF-erf if all but our GEMMs took no time: {gm(ceil):.2f}x; "
        f"if all but our GEMMs and SDPA took no time: {gm(ceil_sdpa):.2f}x (geometric means)"
    )
    if bad:
        print("CORRECTNESS FAILURE: our loss differs from HF's for the same weights")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
