"""CPU training throughput: our GPT step against Hugging Face ``GPT2LMHeadModel`` of the same shape, batch,
precision (fp32) and optimiser (AdamW, clip 1.0), measured interleaved in one process.

    python bench/bench_train_cpu.py [--quick]

Prints, per shape, tokens/s of both, the ratio (goal >= 1.3x) and our achieved GFLOP/s (matmul FLOPs and the
PaLM 6N + attention convention). Exits non-zero only if the two models disagree on the loss for the same
weights (a correctness failure). Threads: SCALINGLAB_THREADS (default: torch's).
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


def hf_model(L, d, H, T, V):
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
        activation_function="gelu_new",
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


def check_same_loss(L, d, H, T, V) -> float:
    torch.manual_seed(0)
    hf = hf_model(L, d, H, T, V)
    ours = GPT(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True))
    copy_hf_into_ours(hf, ours)
    x = torch.randint(0, V, (2, T + 1))
    with torch.no_grad():
        ref = hf(input_ids=x[:, :-1], labels=x[:, :-1]).loss  # HF shifts internally: T - 1 targets
        _, ours_loss = ours(x[:, :-2], x[:, 1:-1])
    return abs(ref.item() - ours_loss.item())


def make_steps(L, d, H, T, V, B):
    torch.manual_seed(0)
    ours = GPT(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True))
    decay = [p for p in ours.parameters() if p.dim() >= 2]
    rest = [p for p in ours.parameters() if p.dim() < 2]
    opt_o = torch.optim.AdamW(
        [{"params": decay}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        weight_decay=0.1,
        fused=True,
    )
    hf = hf_model(L, d, H, T, V)
    hf.train()
    opt_h = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))

    def ours_step():
        _, loss = ours(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0, foreach=True)
        opt_o.step()
        opt_o.zero_grad(set_to_none=True)

    def hf_step():
        loss = hf(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt_h.step()
        opt_h.zero_grad()

    return ours_step, hf_step


def timeit(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> int:
    quick = "--quick" in sys.argv
    if os.environ.get("SCALINGLAB_THREADS"):
        torch.set_num_threads(int(os.environ["SCALINGLAB_THREADS"]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32, eager")
    bad = False
    rounds, reps = (3, 3) if quick else (5, 5)
    print(
        f"{'shape (L, d, H, T, V, B)':34s} {'ours tok/s':>11s} {'HF tok/s':>10s} {'ratio':>6s} "
        f"{'GFLOP/s mm':>10s} {'GFLOP/s palm':>12s} {'|dloss|':>8s}"
    )
    ratios = []
    for L, d, H, T, V, B in SHAPES:
        err = check_same_loss(L, d, H, T, V)
        if err > 1e-4:
            bad = True
        ours_step, hf_step = make_steps(L, d, H, T, V, B)
        ours_step(), hf_step()  # warm-up
        to, th = [], []
        for _ in range(rounds):  # interleaved so that load changes hit both alike
            to.append(timeit(ours_step, reps))
            th.append(timeit(hf_step, reps))
        tps_o, tps_h = B * T / statistics.median(to), B * T / statistics.median(th)
        f = flops_per_token(GPTConfig(n_layer=L, d_model=d, n_head=H, vocab_size=V, n_ctx=T, bias=True))
        ratios.append(tps_o / tps_h)
        print(
            f"{str((L, d, H, T, V, B)):34s} {tps_o:11,.0f} {tps_h:10,.0f} {tps_o / tps_h:6.2f} "
            f"{tps_o * f['matmul'] / 1e9:10.2f} {tps_o * f['palm'] / 1e9:12.2f} {err:8.1e}"
        )
    print(f"geometric-mean ratio ours/HF: {statistics.geometric_mean(ratios):.2f}x (goal >= 1.3x)")
    if bad:
        print("CORRECTNESS FAILURE: our loss differs from HF's for the same weights")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
