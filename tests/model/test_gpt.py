"""The GPT module: banded attention never sees outside its window, masks, logits, KV-cache decoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalinglab.model.config import GPTConfig
from scalinglab.model.gpt import GPT


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    base = dict(n_layer=2, d_model=32, n_head=4, vocab_size=61, n_ctx=24)
    base.update(kw)
    return GPT(GPTConfig(**base)).double()


@pytest.mark.parametrize("window", [1, 3, 6])
def test_banded_layer_gradient_is_zero_outside_band(window):
    m = _model(attention=[f"banded:{window}", "dense"])
    attn = m.blocks[0].attn
    x = torch.randn(2, 24, 32, dtype=torch.float64, requires_grad=True)
    for i in (0, 5, 23):
        y, _ = attn(x)
        (g,) = torch.autograd.grad(y[:, i].sum(), x)
        touched = g.abs().sum(dim=(0, 2)) > 0
        inside = torch.zeros(24, dtype=torch.bool)
        inside[max(0, i - window + 1) : i + 1] = True
        assert torch.equal(touched, inside)  # exactly zero outside, non-zero inside


def test_all_banded_model_receptive_field():
    w = 4
    m = _model(attention=[f"banded:{w}"] * 2)
    emb = torch.randn(1, 24, 32, dtype=torch.float64, requires_grad=True)
    x = emb + m.wpe.weight[None]
    for b in m.blocks:
        x, _ = b(x)
    (g,) = torch.autograd.grad(x[0, 20].sum(), emb)
    touched = (g[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert touched == list(range(20 - 2 * (w - 1), 21))  # two layers: 2 (w - 1) positions back


def test_band_wider_than_context_equals_dense():
    dense, banded = _model(), _model(attention=["banded:24", "banded:100"])
    banded.load_state_dict(dense.state_dict())
    idx = torch.randint(0, 61, (3, 24))
    assert torch.allclose(dense(idx)[0], banded(idx)[0], atol=1e-12)


def test_alternating_default_pattern():
    cfg = GPTConfig(n_layer=4, d_model=32, n_head=4, sparse_window=8)
    assert cfg.patterns == ("dense", "banded:8", "dense", "banded:8")


def test_logits_every_position_and_masked_loss():
    m = _model()
    idx, tgt = torch.randint(0, 61, (3, 24)), torch.randint(0, 61, (3, 24))
    mask = (torch.rand(3, 24) > 0.6).float()
    logits, loss = m(idx, tgt, mask)
    assert logits.shape == (3, 24, 61)
    per = F.cross_entropy(logits.reshape(-1, 61), tgt.reshape(-1), reduction="none")
    assert loss.item() == pytest.approx((per * mask.reshape(-1)).sum().item() / mask.sum().item(), rel=1e-12)
    _, full = m(idx, tgt)
    assert full.item() == pytest.approx(per.mean().item(), rel=1e-12)
    # a prefix's logits do not depend on later tokens (causality)
    assert torch.allclose(m(idx[:, :10])[0], logits[:, :10], atol=1e-12)


def test_tied_head_shares_storage():
    m = _model()
    assert m.lm_head.weight is m.wte.weight
    assert _model(tied=False).lm_head.weight is not _model(tied=False).wte.weight


@pytest.mark.parametrize("kw", [{}, {"sparse_window": 3}])
def test_generate_with_kv_cache_matches_full_recompute(kw):
    m = _model(**kw)
    idx = torch.randint(0, 61, (2, 5))
    out = m.generate(idx, 24)  # runs past n_ctx = 24: cache rebuilt on a sliding window
    ref = idx
    for _ in range(24):
        logits, _ = m(ref[:, -24:])
        ref = torch.cat([ref, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ref)


def test_too_long_input_is_an_error():
    with pytest.raises(ValueError, match="n_ctx"):
        _model()(torch.zeros(1, 25, dtype=torch.long))


def test_flex_band_kernel_equals_the_masked_path():
    """The GPU's block-sparse band (FlexAttention) against the boolean-mask SDPA the CPU uses, forward only:
    torch runs FlexAttention's forward on the CPU but not its backward, so this is as far as CI can check the
    band function and block mask that the GPU path trains with."""
    from scalinglab.model.gpt import _FlexBand, band_mask

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 256, 16) for _ in range(3))
    flex = _FlexBand()
    for window in (1, 200):  # itself only; across the 128-blocks, most of the sequence
        got = flex(q, k, v, window)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(256, 256, window))
        assert torch.allclose(got, want, atol=1e-5), window
    assert torch.allclose(flex(q, k, v, 1), v, atol=1e-6)  # a window of 1 attends to itself only
