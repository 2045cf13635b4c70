"""Loglikelihood requests/s: our batched engine vs a one-request-at-a-time Hugging Face loop, same model.

The model is a random GPT-2 (``transformers``, built locally) with a BPE tokenizer trained here on 1 MB of the
bundled corpus (``--vocab 8192``; ``--vocab 0`` for the byte-level tokenizer); the requests are few-shot
arithmetic prompts (``arithmetic.2d+``, ``lmeval`` preset, K=3) with their answers, as an eval
would send them. The reference loop encodes each (context, continuation) pair by the same rule, runs one
forward pass per request and sums ``log_softmax`` over the continuation. Both run in this process with the
same thread count (``SCALINGLAB_THREADS``, default 1), alternating, best of ``--repeats``.

Also checks correctness: our log-likelihoods equal the reference's to 1e-5 at several batch sizes (the
script exits 1 otherwise). Prints the ratio (goal: >= 2x) and the absolute numbers.

    python bench/bench_evals_speed.py [--requests 256] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch


def reference_loop(model, tok, requests, eot):
    """The straightforward loop: one request, one forward pass."""
    from scalinglab.evals.lm import split_whitespace

    out = []
    with torch.no_grad():
        for ctx, cont in requests:
            ctx, cont = split_whitespace(ctx, cont)
            whole = tok.encode(ctx + cont, add_special_tokens=False)
            n_ctx = len(tok.encode(ctx, add_special_tokens=False)) if ctx else 0
            ids = ([eot] if n_ctx == 0 else []) + whole
            n_ctx = max(n_ctx, 1)
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
            tgt = torch.tensor(ids[n_ctx:])
            out.append(logp[n_ctx - 1 : len(ids) - 1].gather(-1, tgt[:, None]).sum().item())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size; 0 = bytes")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("SCALINGLAB_THREADS", "1")))

    from transformers import GPT2Config, GPT2LMHeadModel

    from scalinglab.evals.hf import HFLM, byte_tokenizer
    from scalinglab.evals.prompts import build_context, sample_shots
    from scalinglab.evals.tasks import get_task

    if args.vocab:
        from scalinglab.data.text import default_corpus
        from scalinglab.data.tokenizer import BPETokenizer
        from scalinglab.evals.export import hf_tokenizer

        text = default_corpus()[0][:1_000_000].decode("utf-8", errors="ignore")
        tok = hf_tokenizer(BPETokenizer.train(text.split("\n\n"), args.vocab))
    else:
        tok = byte_tokenizer()
    eot = tok.eos_token_id
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=args.d_model, n_layer=args.layers,
                     n_head=max(1, args.d_model // 64), bos_token_id=eot, eos_token_id=eot)
    model = GPT2LMHeadModel(cfg).eval()
    task = get_task("arithmetic.2d+")
    p = task.preset("lmeval")
    docs, pool = task.docs("test")[: args.requests], task.docs("train")
    reqs = [(build_context(p, d, sample_shots(pool, 3, seed=0, task=task.name, doc=d)), p.target(d))
            for d in docs]
    n_tokens = sum(len(tok.encode(c + x)) for c, x in reqs)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: GPT-2 d_model={args.d_model} layers={args.layers} vocab={len(tok)} ({n_params:,} params), "
          f"{len(reqs)} requests, {n_tokens / len(reqs):.0f} tokens each on average, "
          f"threads={torch.get_num_threads()}")

    ref = reference_loop(model, tok, reqs, eot)
    ok = True
    for bs in (1, 8, 32, 128):
        got = HFLM(model, tok, batch_size=bs).loglikelihood(reqs)
        diff = max(abs(g.logprob - r) for g, r in zip(got, ref, strict=True))
        ok &= diff < 1e-5
        print(f"batch_size={bs:4d}: max |ll - reference| = {diff:.2e} nats")

    lm = HFLM(model, tok, batch_size=args.batch_size)
    t_ref, t_ours = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        reference_loop(model, tok, reqs, eot)
        t_ref.append(time.perf_counter() - t)
        t = time.perf_counter()
        lm.loglikelihood(reqs)
        t_ours.append(time.perf_counter() - t)
    r_ref, r_ours = len(reqs) / min(t_ref), len(reqs) / min(t_ours)
    print(f"one-at-a-time HF loop : {r_ref:8.1f} requests/s (best of {args.repeats}: {min(t_ref):.2f} s)")
    print(f"batched engine (bs={args.batch_size}): {r_ours:8.1f} requests/s "
          f"(best of {args.repeats}: {min(t_ours):.2f} s)")
    print(f"speed ratio: {r_ours / r_ref:.2f}x (goal >= 2x)")
    if not ok:
        print("CORRECTNESS FAILURE: log-likelihoods differ from the reference by more than 1e-5")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
