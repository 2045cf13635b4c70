"""Loglikelihood requests/s: our batched engine vs lm-evaluation-harness's HF backend and a one-at-a-time
Hugging Face loop, same model, same requests, in one process.

The model is a random GPT-2 (``transformers``, built locally) with a BPE tokenizer trained here on 1 MB of the
bundled corpus (``--vocab 8192``) or the byte-level tokenizer (``--vocab 0``; ``--vocab 8192,0`` runs both);
the requests are few-shot arithmetic prompts (``arithmetic.2d+``, ``lmeval`` preset, K=3) with their answers,
as an eval would send them. The reference loop encodes each (context, continuation) pair by the same rule,
runs one forward pass per request and sums ``log_softmax`` over the continuation. The harness
(``lm_eval.models.huggingface.HFLM`` given the same model object and tokenizer, ``batch_size`` as ours) runs
when ``lm_eval`` is installed (a bench-only dependency: ``pip install lm-eval accelerate``; skipped with the
reason printed otherwise). All run with the same thread count (``SCALINGLAB_THREADS``, default 1),
alternating, best of ``--repeats``; timed in CPU seconds of this process and in wall seconds.

Also checks correctness: our log-likelihoods equal the reference's (and the harness's) to 1e-5 at several
batch sizes (the script exits 1 otherwise). Prints the ratios (goal: >= 2x vs the harness).

    python bench/bench_evals_speed.py [--requests 500] [--batch-size 16] [--repeats 3] [--vocab 8192,0]
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


def harness(model, tok, batch_size: int):
    """(a function scoring requests with lm-evaluation-harness's HF backend, its version) or (None, why)."""
    try:
        import lm_eval
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM as HarnessLM
    except ImportError as e:
        return None, f"lm-evaluation-harness not installed ({e}; `pip install lm-eval accelerate`)"
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    h = HarnessLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")

    def score(reqs):
        inst = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(reqs)]
        return [r[0] for r in h.loglikelihood(inst, disable_tqdm=True)]

    return score, getattr(lm_eval, "__version__", "?")


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(best CPU s, best wall s) of ``repeats`` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def run(vocab: int, args) -> bool:
    from transformers import GPT2Config, GPT2LMHeadModel

    from scalinglab.evals.hf import HFLM, byte_tokenizer
    from scalinglab.evals.prompts import build_context, sample_shots
    from scalinglab.evals.tasks import get_task

    if vocab:
        from scalinglab.data.text import default_corpus
        from scalinglab.data.tokenizer import BPETokenizer
        from scalinglab.evals.export import hf_tokenizer

        text = default_corpus()[0][:1_000_000].decode("utf-8", errors="ignore")
        tok = hf_tokenizer(BPETokenizer.train(text.split("\n\n"), vocab))
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
    print(f"\nmodel: GPT-2 d_model={args.d_model} layers={args.layers} vocab={len(tok)} "
          f"({n_params:,} params), {len(reqs)} requests, {n_tokens / len(reqs):.0f} tokens each on average, "
          f"threads={torch.get_num_threads()}")

    ref = reference_loop(model, tok, reqs, eot)
    ok = True
    for bs in (1, 8, 32, 128):
        got = HFLM(model, tok, batch_size=bs).loglikelihood(reqs)
        diff = max(abs(g.logprob - r) for g, r in zip(got, ref, strict=True))
        ok &= diff < 1e-5
        print(f"batch_size={bs:4d}: max |ll - reference| = {diff:.2e} nats")
    lm = HFLM(model, tok, batch_size=args.batch_size)
    score_h, h_info = harness(model, tok, args.batch_size)
    if score_h is not None:
        diff = max(abs(a.logprob - b) for a, b in zip(lm.loglikelihood(reqs), score_h(reqs), strict=True))
        ok &= diff < 1e-5
        print(f"lm-evaluation-harness {h_info} (HF backend, batch_size={args.batch_size}): max |ll - ours| = "
              f"{diff:.2e} nats")
    t_ref = best_of(lambda: reference_loop(model, tok, reqs, eot), args.repeats)
    t_ours = best_of(lambda: lm.loglikelihood(reqs), args.repeats)
    t_h = best_of(lambda: score_h(reqs), args.repeats) if score_h is not None else None
    n = len(reqs)
    def rate(t):
        return f"{n / t[0]:8.1f} requests/CPU-s ({t[0]:.2f} s CPU, {t[1]:.2f} s wall)"

    print(f"one-at-a-time HF loop : {rate(t_ref)}")
    if t_h is not None:
        print(f"lm-evaluation-harness : {rate(t_h)}")
    else:
        print(f"lm-evaluation-harness : skipped: {h_info}")
    print(f"batched engine (bs={args.batch_size}): {rate(t_ours)}")
    line = f"speed ratio (CPU): {t_ref[0] / t_ours[0]:.2f}x vs the one-at-a-time loop"
    if t_h is not None:
        line += f", {t_h[0] / t_ours[0]:.2f}x vs the harness (goal >= 2x; wall {t_h[1] / t_ours[1]:.2f}x)"
    print(line)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", default="8192,0", help="BPE vocabulary sizes (comma-separated); 0 = bytes")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("SCALINGLAB_THREADS", "1")))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = all([run(int(v), args) for v in args.vocab.split(",")])
    if not ok:
        print("CORRECTNESS FAILURE: log-likelihoods differ from the reference or the harness by > 1e-5")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
