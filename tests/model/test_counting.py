"""Parameter and FLOP counts: published anchors and the built model's own sum(p.numel())."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scalinglab.errors import ConfigError
from scalinglab.model.config import NAMED_CONFIGS, GPTConfig, config_for_target, named_config
from scalinglab.model.counting import count_params, flops_per_token, kaplan_lr
from scalinglab.model.gpt import GPT

GPT2 = GPTConfig(n_layer=12, d_model=768, n_head=12, vocab_size=50257, n_ctx=1024, tied=True, bias=False)


def built_numel(cfg: GPTConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(cfg).parameters())


def test_gpt2_small_anchors():
    p = count_params(GPT2)
    assert p["total"] == 124_337_664  # nanoGPT transformer_sizing, bias=False
    assert p["kaplan"] == 84_934_656 == 12 * 12 * 768**2
    assert p["embedding"] == 38_597_376 + 786_432
    f = flops_per_token(GPT2)
    assert f["6n"] == 6 * 84_934_656
    assert f["palm"] * 1024 == 875_062_886_400  # nanoGPT estimate_mfu per 1024-token sequence
    assert f["matmul"] * 1024 == 874_944_921_600  # nanoGPT transformer_sizing, forward x 3
    assert f["kaplan"] == 3 * (2 * 84_934_656 + 2 * 12 * 1024 * 768)


def test_gpt2_with_biases_matches_hf_count():
    # Hugging Face gpt2 (biases everywhere, tied): 124,439,808 (transformers issue #14960)
    assert count_params(GPT2.with_(bias=True))["total"] == 124_439_808


@pytest.mark.parametrize(
    "cfg",
    [
        GPT2,
        GPT2.with_(tied=False, bias=True),
        GPTConfig(n_layer=3, d_model=96, n_head=4, vocab_size=300, n_ctx=40, d_ff=200, sparse_window=8),
        GPTConfig(n_layer=2, d_model=64, n_head=3, vocab_size=100, n_ctx=16, d_head=40, tied=False),
    ],
)
def test_counts_equal_built_model(cfg):
    p = count_params(cfg)
    assert p["total"] == built_numel(cfg)
    with torch.device("meta"):
        m = GPT(cfg)
    emb = m.wte.weight.numel() + m.wpe.weight.numel()
    head = m.lm_head.weight.numel()
    assert p["non_embedding"] == p["total"] - emb - (0 if cfg.tied else head)
    matrices = sum(
        mod.weight.numel() for b in m.blocks for mod in (b.attn.qkv, b.attn.proj, b.mlp.fc, b.mlp.proj)
    )
    assert p["kaplan"] == matrices
    assert p["total_without_head"] == p["total"] - (0 if cfg.tied else head)


def test_gpt3_named_sizes_reproduce_table_d1():
    table_m = {
        "gpt3-small": 125,
        "gpt3-medium": 356,
        "gpt3-large": 760,
        "gpt3-xl": 1320,
        "gpt3-2.7b": 2650,
        "gpt3-6.7b": 6660,
        "gpt3-13b": 12850,
        "gpt3-175b": 174600,
    }
    for name, m in table_m.items():
        total = count_params(NAMED_CONFIGS[name])["total"]
        assert abs(total / 1e6 - m) / m < 0.005, name


def test_chinchilla_appendix_f_by_hand():
    cfg = GPTConfig(n_layer=2, d_model=8, n_head=2, vocab_size=11, n_ctx=4)
    s, d, V, L, H = 4, 8, 11, 2, 2
    fwd = (
        2 * s * V * d
        + L
        * (
            2 * 3 * s * d * d
            + 2 * s * s * d
            + 3 * H * s * s
            + 2 * s * s * d
            + 2 * s * d * d
            + 2 * s * 2 * d * 4 * d
        )
        + 2 * s * d * V
    )
    assert flops_per_token(cfg)["chinchilla"] * s == 3 * fwd


def test_banded_layers_charge_their_window():
    dense = GPTConfig(n_layer=2, d_model=64, n_head=4, vocab_size=50, n_ctx=128)
    sparse = dense.with_(sparse_window=16)
    fd, fs = flops_per_token(dense), flops_per_token(sparse)
    assert fd["6n"] == fs["6n"]
    assert fd["kaplan"] - fs["kaplan"] == 3 * 2 * (128 - 16) * 64  # one banded layer of two


def test_config_for_target_and_errors():
    cfg = config_for_target(1e6, aspect=32, head_dim=32, vocab_size=256, n_ctx=64)
    n = count_params(cfg)["kaplan"]
    assert 0.6e6 < n < 1.5e6 and cfg.d_model % 32 == 0
    assert named_config("gpt2") == NAMED_CONFIGS["gpt2"]
    with pytest.raises(ConfigError, match="n_head"):
        GPTConfig(n_layer=2, d_model=10, n_head=3)
    with pytest.raises(ConfigError, match="banded"):
        GPTConfig(n_layer=1, d_model=8, n_head=2, attention=["sparse"])
    with pytest.raises(ConfigError, match="unknown model size"):
        named_config("gpt5")


def test_kaplan_lr():
    assert kaplan_lr(1e8) == pytest.approx(6.7e-4, abs=5e-6)  # SPEC a.5
    assert kaplan_lr(1.5e9) == pytest.approx(2.9e-4, abs=5e-6)


def test_counting_never_imports_torch():
    code = (
        "import sys, scalinglab.model.counting, scalinglab.model.config, scalinglab.train.schedule, "
        "scalinglab.train.hardware; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
