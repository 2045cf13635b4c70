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

Modern shapes (``scalinglab.model.arch.DecoderConfig``: SwiGLU, RMSNorm, RoPE or relative positions, GQA,
untied heads, top-k mixture of experts) are counted by the same code; a GPT shape is a DecoderConfig with a
GELU MLP, LayerNorm and learned positions. For a DecoderConfig the dict also has ``active`` (parameters a
token passes through: routed top-k + shared experts, the router, everything outside the MLPs) and
``active_non_embedding``; ``kaplan`` counts the *active* attention and MLP matrices, so that 6N is the
training FLOPs per token of a mixture of experts too. With GQA, K and V have n_kv_head heads (their
projections are smaller) while every query head still attends over all keys (the attention FLOPs do not
shrink). A SwiGLU MLP costs 3 x 2 d d_ff per token instead of 2 x 2 d d_ff; the router 2 d n_experts.
Relative-position terms (Gopher/Chinchilla) are counted as parameters but not in the FLOPs.

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

from scalinglab.model.arch import DecoderConfig, experts_per_token
from scalinglab.model.config import GPTConfig, LSTMConfig


def _as_decoder(cfg: GPTConfig | DecoderConfig) -> DecoderConfig:
    return DecoderConfig.from_gpt(cfg) if isinstance(cfg, GPTConfig) else cfg


def _layer_parts(c: DecoderConfig) -> dict[str, int]:
    """Per layer: attention, one MLP expert, router, norms, position parameters (weights + biases)."""
    d, da, ff, b = c.d_model, c.d_attn, c.ff, 1 if c.bias else 0
    kv = c.kv_heads * c.head_dim
    norm = d * (1 + b) if c.norm == "layernorm" else d
    attn = d * (da + 2 * kv) + b * (da + 2 * kv) + da * d + b * d
    n_mat = 3 if c.mlp == "swiglu" else 2
    mlp = n_mat * d * ff + b * ((n_mat - 1) * ff + d)
    return {
        "attn": attn,
        "attn_matrices": d * (da + 2 * kv) + da * d,
        "mlp": mlp,
        "mlp_matrices": n_mat * d * ff,
        "router": d * c.n_experts if c.n_experts > 1 else 0,
        "norms": 2 * norm,
        "norm": norm,
        "positions": d * da + 2 * da if c.positions == "relative" else 0,
    }


def count_params(cfg: GPTConfig | DecoderConfig | LSTMConfig) -> dict[str, int]:
    """Parameter counts (plain integers) under every convention; see the module docstring. A GPTConfig gets
    the GPT keys; a DecoderConfig also ``active`` and ``active_non_embedding``; an LSTMConfig its own."""
    if isinstance(cfg, LSTMConfig):
        return _count_lstm(cfg)
    c = _as_decoder(cfg)
    p = _layer_parts(c)
    L, d, V = c.n_layer, c.d_model, c.vocab_size
    experts = c.n_experts + c.n_shared_experts if c.n_experts > 1 else 1 + c.n_shared_experts
    per_token = experts_per_token(c)
    outside = p["attn"] + p["router"] + p["norms"] + p["positions"]
    non_embedding = L * (outside + experts * p["mlp"]) + p["norm"]  # blocks + final norm
    active_non_embedding = L * (outside + per_token * p["mlp"]) + p["norm"]
    wte, head = V * d, V * d
    wpe = c.n_ctx * d if c.positions == "learned" else 0
    untied = 0 if c.tied else head
    total = wte + wpe + non_embedding + untied
    out = {
        "kaplan": L * (p["attn_matrices"] + per_token * p["mlp_matrices"]),
        "non_embedding": non_embedding,
        "non_embedding_with_head": non_embedding + head,
        "total": total,
        "total_without_head": total - untied,
        "embedding": wte + wpe,
        "head": head,
    }
    if isinstance(cfg, GPTConfig):
        return out
    out["active"] = wte + wpe + active_non_embedding + untied
    out["active_non_embedding"] = active_non_embedding
    return out


def _attn_ctx(cfg: GPTConfig | DecoderConfig) -> list[int]:
    """Per layer, the number of keys a query is charged for: n_ctx, or min(W, n_ctx) for a banded layer."""
    return [cfg.n_ctx if w is None else min(w, cfg.n_ctx) for w in cfg.windows()]


def flops_per_token(cfg: GPTConfig | DecoderConfig | LSTMConfig) -> dict[str, int]:
    """Training FLOPs per token (forward + backward) per convention; exact integers (see module docstring).
    For a mixture of experts every convention counts the active parameters."""
    if isinstance(cfg, LSTMConfig):
        return _flops_lstm(cfg)
    c = _as_decoder(cfg)
    p = count_params(c)
    parts = _layer_parts(c)
    d, V, s, da, ff, H = c.d_model, c.vocab_size, c.n_ctx, c.d_attn, c.ff, c.n_head
    kv = c.kv_heads * c.head_dim
    ctx = _attn_ctx(c)
    n = p["kaplan"]
    kaplan_fwd = 2 * n + sum(2 * k * da for k in ctx)
    palm = 6 * (p["active_non_embedding"] + p["head"]) + sum(12 * H * c.head_dim * k for k in ctx)
    # Chinchilla App. F, forward per sequence; every term is a multiple of s, so the per-token value is exact.
    n_mat = 3 if c.mlp == "swiglu" else 2
    mlp = experts_per_token(c) * 2 * s * n_mat * d * ff + 2 * s * parts["router"]
    layer_dense = 2 * s * d * (da + 2 * kv) + 2 * s * da * d + mlp
    chin_fwd_seq = (
        2 * s * V * d
        + sum(layer_dense + 2 * s * k * da + 3 * H * s * k + 2 * s * k * da for k in ctx)
        + 2 * s * d * V
    )
    matmul_fwd_seq = sum(layer_dense + 4 * s * k * da for k in ctx) + 2 * s * d * V
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
