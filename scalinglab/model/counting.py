"""Exact parameter and FLOP counts of a `GPTConfig`, under every convention in use. Pure integers, no torch.

Parameters (``count_params``), for the model ``scalinglab.model.gpt.GPT`` builds:

- ``kaplan``: Kaplan et al. 2020 eq. 2.1, N = 2 d_model n_layer (2 d_attn + d_ff) (= 12 n_layer d_model^2 in
  the standard shape): attention and MLP weight matrices only; no embeddings, biases or LayerNorms.
- ``non_embedding``: every parameter except the token embedding, the position embedding and the output head
  (i.e. the transformer blocks and the final LayerNorm, with their biases).
- ``non_embedding_with_head``: ``non_embedding`` + the V x d_model output projection, counted whether or
  not it is tied to the token embedding (nanoGPT ``get_num_params()``, OLMo-core, nanochat "Kaplan-style").
- ``total``: every distinct parameter of the built model (= ``sum(p.numel())``; a tied head is counted once).
- ``total_without_head``: ``total`` minus an untied head (= ``total`` when tied). Chinchilla's N = ``total``.
- ``embedding`` (V d_model + n_ctx d_model) and ``head`` (V d_model) for reference.

Training FLOPs per token (forward + backward = 3 x forward), sequence length n_ctx (``flops_per_token``):

- ``6n``: 6 N with N = ``kaplan`` (Kaplan's C = 6 N D).
- ``kaplan``: 3 x C_forward, C_forward = 2N + 2 n_layer n_ctx d_attn (Kaplan eq. 2.2; only QK^T counted).
- ``palm``: 6 N' + 12 n_layer n_head d_head T with N' = ``non_embedding_with_head`` (PaLM App. B).
- ``chinchilla``: Hoffmann et al. 2022 App. F, forward per sequence of length s: embeddings 2 s V d; per layer
  QKV 2*3 s d d_attn, QK^T 2 s^2 d_attn, softmax 3 n_head s^2, AV 2 s^2 d_attn, out-projection 2 s d_attn d,
  MLP 2 s (2 d d_ff); output logits 2 s d V; training = 3 x forward, divided by s.
- ``matmul`` (extra, not logged): every matmul of our forward and backward, 3 x (2 x weights of the linear
  layers incl. head + 4 s d_attn per layer), i.e. Chinchilla without embeddings and softmax (nanoGPT's
  ``transformer_sizing`` count: 874,944,921,600 per 1024-token sequence for GPT-2 small).

Attention terms use no causal halving (the convention of all four sources). For a banded layer the context
length in the attention terms is min(W, n_ctx) (as nanochat does for sliding windows).

LSTM language models (``LSTMConfig``: embedding V x d, ``n_layer`` torch ``nn.LSTM`` layers of width d, head
V x d tied or not). A layer holds W_ih [4d, d], W_hh [4d, d] and the biases b_ih, b_hh [4d] each:

- ``kaplan``: the weight matrices, 8 n_layer d^2 (Kaplan's N counts weight matrices, not biases);
- ``non_embedding``: every LSTM parameter and the final LayerNorm's gain, n_layer (8 d^2 + 8 d) + d;
  ``non_embedding_with_head`` adds V d;
- ``total`` (= ``sum(p.numel())``), ``total_without_head``, ``embedding`` (V d, no position table),
  ``head`` (V d).

Training FLOPs per token are 3 x the forward's matmuls (the gate nonlinearities and element-wise products,
about 10 n_layer d per token, are not counted, as no convention counts a transformer's element-wise work):
``6n`` = 6 N (N = ``kaplan``); ``kaplan`` = 6 N too (there is no attention, so no context term);
``palm`` = 6 ``non_embedding_with_head``; ``chinchilla`` = 3 (2 V d + 16 n_layer d^2 + 2 d V) (embedding,
the recurrent matmuls, the logits); ``matmul`` = 3 (16 n_layer d^2 + 2 d V).
"""

from __future__ import annotations

from scalinglab.model.config import GPTConfig, LSTMConfig


def count_params(cfg: GPTConfig | LSTMConfig) -> dict[str, int]:
    """Parameter counts (plain integers) under every convention; see the module docstring."""
    if isinstance(cfg, LSTMConfig):
        return _count_lstm(cfg)
    d, L, V, T, da, ff = cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.n_ctx, cfg.d_attn, cfg.ff
    b = 1 if cfg.bias else 0
    ln = d * (1 + b)  # LayerNorm weight (+ bias)
    attn = d * 3 * da + b * 3 * da + da * d + b * d
    mlp = d * ff + b * ff + ff * d + b * d
    block = 2 * ln + attn + mlp
    non_embedding = L * block + ln  # blocks + final LayerNorm
    wte, wpe, head = V * d, T * d, V * d
    total = wte + wpe + non_embedding + (0 if cfg.tied else head)
    return {
        "kaplan": 2 * d * L * (2 * da + ff),
        "non_embedding": non_embedding,
        "non_embedding_with_head": non_embedding + head,
        "total": total,
        "total_without_head": total - (0 if cfg.tied else head),
        "embedding": wte + wpe,
        "head": head,
    }


def _attn_ctx(cfg: GPTConfig) -> list[int]:
    """Per layer, the number of keys a query is charged for: n_ctx, or min(W, n_ctx) for a banded layer."""
    return [cfg.n_ctx if w is None else min(w, cfg.n_ctx) for w in cfg.windows()]


def flops_per_token(cfg: GPTConfig | LSTMConfig) -> dict[str, int]:
    """Training FLOPs per token (forward + backward) per convention; exact integers (see module docstring)."""
    if isinstance(cfg, LSTMConfig):
        return _flops_lstm(cfg)
    p = count_params(cfg)
    d, V, s, da, ff, H = cfg.d_model, cfg.vocab_size, cfg.n_ctx, cfg.d_attn, cfg.ff, cfg.n_head
    ctx = _attn_ctx(cfg)
    n = p["kaplan"]
    kaplan_fwd = 2 * n + sum(2 * c * da for c in ctx)
    palm = 6 * p["non_embedding_with_head"] + sum(12 * H * cfg.head_dim * c for c in ctx)
    # Chinchilla App. F, forward per sequence; every term is a multiple of s, so the per-token value is exact.
    layer_dense = 2 * 3 * s * d * da + 2 * s * da * d + 2 * s * 2 * d * ff
    chin_fwd_seq = (
        2 * s * V * d
        + sum(layer_dense + 2 * s * c * da + 3 * H * s * c + 2 * s * c * da for c in ctx)
        + 2 * s * d * V
    )
    matmul_fwd_seq = sum(layer_dense + 4 * s * c * da for c in ctx) + 2 * s * d * V
    return {
        "6n": 6 * n,
        "kaplan": 3 * kaplan_fwd,
        "palm": palm,
        "chinchilla": 3 * chin_fwd_seq // s,
        "matmul": 3 * matmul_fwd_seq // s,
    }


def _count_lstm(cfg: LSTMConfig) -> dict[str, int]:
    d, L, V = cfg.d_model, cfg.n_layer, cfg.vocab_size
    non_embedding = L * (8 * d * d + 8 * d) + d  # the LSTM layers and the final LayerNorm (no bias)
    emb = head = V * d
    total = emb + non_embedding + (0 if cfg.tied else head)
    return {
        "kaplan": 8 * L * d * d,
        "non_embedding": non_embedding,
        "non_embedding_with_head": non_embedding + head,
        "total": total,
        "total_without_head": total - (0 if cfg.tied else head),
        "embedding": emb,
        "head": head,
    }


def _flops_lstm(cfg: LSTMConfig) -> dict[str, int]:
    p = _count_lstm(cfg)
    d, L, V = cfg.d_model, cfg.n_layer, cfg.vocab_size
    recurrent = 2 * 8 * L * d * d  # forward: W_ih x and W_hh h, 4d x d each, per layer
    return {
        "6n": 6 * p["kaplan"],
        "kaplan": 6 * p["kaplan"],
        "palm": 6 * p["non_embedding_with_head"],
        "chinchilla": 3 * (2 * V * d + recurrent + 2 * d * V),
        "matmul": 3 * (recurrent + 2 * d * V),
    }


FLOP_CONVENTIONS = ("6n", "kaplan", "palm", "chinchilla")
"""The conventions logged by the trainer as ``flops_<name>`` (cumulative)."""


def kaplan_lr(n_kaplan: float) -> float:
    """Kaplan et al. 2020 eq. D.1: peak LR(N) = 0.003239 - 0.0001395 ln N (natural log; N non-embedding)."""
    import math

    return 0.003239 - 0.0001395 * math.log(n_kaplan)
