"""Counting Llama-style and mixture-of-experts models: published totals, exact integers derived by hand, and
the parameter count of the same shape built by Hugging Face transformers."""

from __future__ import annotations

import json

import pytest

from scalinglab.errors import ConfigError
from scalinglab.model.arch import CHINCHILLA_A9, NAMED_DECODERS, DecoderConfig, llama_d_ff, named_decoder
from scalinglab.model.config import NAMED_CONFIGS, GPTConfig
from scalinglab.model.counting import count_params, flops_per_token

# Totals of the released checkpoints (the safetensors/params count the model cards print).
PUBLISHED_TOTALS = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTALS))
def test_named_totals_equal_published(name):
    assert count_params(NAMED_DECODERS[name])["total"] == PUBLISHED_TOTALS[name]


def test_llama2_7b_by_hand():
    # 32 layers of: attention 4 d^2, SwiGLU 3 d d_ff, two RMSNorm scales; a final RMSNorm; untied V x d twice
    d, ff, L, V = 4096, 11008, 32, 32000
    layer = 4 * d * d + 3 * d * ff + 2 * d
    total = L * layer + d + 2 * V * d
    assert total == 6_738_415_616
    p = count_params(named_decoder("llama-2-7b"))
    assert p["total"] == total and p["active"] == total
    assert p["non_embedding"] == L * layer + d
    assert p["kaplan"] == L * (4 * d * d + 3 * d * ff)
    assert p["total_without_head"] == total - V * d


def test_llama_d_ff_rule():
    assert llama_d_ff(4096) == 11008 and llama_d_ff(5120) == 13824
    assert llama_d_ff(8192, 4096, 1.3) == 28672 and llama_d_ff(4096, 1024, 1.3) == 14336


def test_gqa_shrinks_k_and_v_only():
    d, L, V, h = 8192, 80, 32000, 128
    ff = 28672
    attn = d * d + 2 * d * (8 * h) + d * d  # q, k and v with 8 kv heads, o
    layer = attn + 3 * d * ff + 2 * d
    assert count_params(named_decoder("llama-2-70b"))["total"] == L * layer + d + 2 * V * d == 68_976_648_192
    mha = named_decoder("llama-2-70b", n_kv_head=None)
    assert count_params(mha)["total"] - 68_976_648_192 == L * 2 * d * (d - 8 * h)
    # the attention FLOPs do not shrink with GQA: every query head still sees every key
    f_gqa, f_mha = flops_per_token(named_decoder("llama-2-70b")), flops_per_token(mha)
    assert f_mha["palm"] - f_gqa["palm"] == 6 * L * 2 * d * (d - 8 * h)


def test_mixtral_total_and_active():
    d, ff, L, V, E, k = 4096, 14336, 32, 32000, 8, 2
    attn = d * d + 2 * d * 1024 + d * d
    expert = 3 * d * ff
    total = L * (attn + E * expert + d * E + 2 * d) + d + 2 * V * d
    active = L * (attn + k * expert + d * E + 2 * d) + d + 2 * V * d
    p = count_params(named_decoder("mixtral-8x7b"))
    assert p["total"] == total == 46_702_792_704
    assert p["active"] == active == 12_879_925_248
    assert round(p["active"] / 1e9, 1) == 12.9  # "12.9B active parameters" (Mistral AI's announcement)
    assert p["active_non_embedding"] == active - 2 * V * d
    f = flops_per_token(named_decoder("mixtral-8x7b"))
    assert f["6n"] == 6 * L * (attn + k * expert)  # C = 6 N_active D


def test_shared_experts_count_as_active():
    base = DecoderConfig(
        n_layer=2, d_model=64, n_head=4, vocab_size=100, n_ctx=32, d_ff=96, n_experts=4, top_k=1
    )
    shared = base.with_(n_shared_experts=1)
    expert = 3 * 64 * 96
    assert count_params(shared)["total"] - count_params(base)["total"] == 2 * expert
    assert count_params(shared)["active"] - count_params(base)["active"] == 2 * expert


def test_gpt_shapes_count_the_same_through_decoder():
    for cfg in (
        NAMED_CONFIGS["gpt2"],
        GPTConfig(
            n_layer=3,
            d_model=96,
            n_head=4,
            vocab_size=300,
            n_ctx=40,
            d_ff=200,
            sparse_window=8,
            bias=True,
            tied=False,
        ),
    ):
        dec = DecoderConfig.from_gpt(cfg)
        pg, pd_ = count_params(cfg), count_params(dec)
        assert {k: pd_[k] for k in pg} == pg
        assert flops_per_token(cfg) == flops_per_token(dec)


def test_chinchilla_a9_shapes_near_their_labels():
    # Table A9 labels are rounded and their counting convention is not stated; with Gopher's design (RMSNorm,
    # relative positions, a tied 32k embedding, no biases) every row lands within 1.5M (0.8 %) of its label
    worst = 0.0
    for m, *_ in CHINCHILLA_A9:
        p = count_params(named_decoder(f"chinchilla-{m}m"))["total"]
        assert abs(p / 1e6 - m) < 1.5, (m, p)
        worst = max(worst, abs(p / 1e6 - m) / m)
    assert worst < 0.008
    assert len(CHINCHILLA_A9) == 50
    assert abs(count_params(named_decoder("chinchilla-70b"))["total"] / 1e9 - 70) < 0.1


def test_sliding_window_changes_only_attention_flops():
    full = named_decoder("mistral-7b", sliding_window=None)
    mis = named_decoder("mistral-7b")
    assert count_params(full) == count_params(mis)
    f_full, f_win = flops_per_token(full), flops_per_token(mis)
    assert f_full["6n"] == f_win["6n"]
    L, H, hd = 32, 32, 128
    assert f_full["palm"] - f_win["palm"] == L * 12 * H * hd * (32768 - 4096)


def test_decoder_config_errors():
    with pytest.raises(ConfigError, match="must divide n_head"):
        DecoderConfig(n_layer=2, d_model=64, n_head=4, n_kv_head=3)
    with pytest.raises(ConfigError, match="top_k"):
        DecoderConfig(n_layer=2, d_model=64, n_head=4, n_experts=2, top_k=3)
    with pytest.raises(ConfigError, match="mlp"):
        DecoderConfig(n_layer=2, d_model=64, n_head=4, mlp="relu")
    with pytest.raises(ConfigError, match="unknown model"):
        named_decoder("llama-9")


CASES = [  # (transformers config class, its kwargs beyond the common ones, our DecoderConfig kwargs)
    ("LlamaConfig", {"intermediate_size": 176, "num_key_value_heads": 2}, {"d_ff": 176, "n_kv_head": 2}),
    (
        "LlamaConfig",
        {"intermediate_size": 176, "num_key_value_heads": 4, "tie_word_embeddings": True},
        {"d_ff": 176, "n_kv_head": 4, "tied": True},
    ),
    ("LlamaConfig", {"intermediate_size": 176, "num_key_value_heads": 1}, {"d_ff": 176, "n_kv_head": 1}),
    (
        "MixtralConfig",
        {"intermediate_size": 96, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2},
        {"d_ff": 96, "n_kv_head": 2, "n_experts": 4, "top_k": 2},
    ),
]


@pytest.mark.parametrize("cls,hf_kw,ours_kw", CASES)
def test_count_equals_the_transformers_model(cls, hf_kw, ours_kw):
    transformers = pytest.importorskip("transformers")
    import torch

    common = {
        "vocab_size": 300,
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    }
    hf = getattr(transformers, cls)(**common, **hf_kw)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf)
    ours = DecoderConfig(n_layer=3, d_model=64, n_head=4, vocab_size=300, n_ctx=128, **ours_kw)
    assert count_params(ours)["total"] == sum(p.numel() for p in model.parameters())


def test_count_cli_modern(cli):
    code, out, err = cli("count", "--name", "llama-2-7b", "--json")
    assert code == 0, err
    assert json.loads(out)["params"]["total"] == 6_738_415_616
    code, out, err = cli("count", "--name", "mixtral-8x7b", "--top-k", "1", "--json")
    assert code == 0, err
    p = json.loads(out)["params"]
    assert p["total"] == 46_702_792_704 and p["active"] == 12_879_925_248 - 32 * 3 * 4096 * 14336
    code, out, err = cli(
        "count",
        "--arch",
        "llama",
        "--n-layer",
        "2",
        "--d-model",
        "64",
        "--n-head",
        "4",
        "--n-kv-head",
        "2",
        "--vocab",
        "300",
        "--ctx",
        "64",
        "--json",
    )
    assert code == 0, err
    assert (
        json.loads(out)["params"]["total"]
        == count_params(
            DecoderConfig(n_layer=2, d_model=64, n_head=4, n_kv_head=2, vocab_size=300, n_ctx=64)
        )["total"]
    )
    code, out, err = cli("count", "--name", "gpt2", "--n-kv-head", "2")
    assert code == 2 and "unknown model 'gpt2'" in err
