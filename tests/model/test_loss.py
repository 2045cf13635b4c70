"""The chunked head + cross-entropy (``linear_cross_entropy``) against a float64 reference, and the GPT
training call (``return_logits=False``) against the plain logits path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalinglab.model.config import GPTConfig
from scalinglab.model.gpt import GPT
from scalinglab.model.loss import MIN_VOCAB, linear_cross_entropy


def reference(h, w, t, mask):
    """F.cross_entropy on materialised float64 logits: the masked mean (nats/token) and its gradients."""
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    per = F.cross_entropy(h64 @ w64.t(), t, reduction="none")
    loss = per.mean() if mask is None else (per * mask.double()).sum() / mask.double().sum().clamp_min(1)
    gh, gw = torch.autograd.grad(loss * 3.0, (h64, w64))
    return loss.item(), gh, gw


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])  # one row per chunk, a ragged last chunk, one chunk
def test_matches_float64_cross_entropy(masked: bool, chunk_rows: int) -> None:
    g = torch.Generator().manual_seed(chunk_rows)
    n, d, v = 45, 24, 301
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (0.3 * torch.randn(v, d, generator=g)).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    mask = (torch.rand(n, generator=g) > 0.4).float() if masked else None
    want, gh, gw = reference(h, w, t, mask)
    loss = linear_cross_entropy(h, w, t, mask, chunk_elems=chunk_rows * v)
    (loss * 3.0).backward()  # the incoming gradient scales the precomputed one
    assert loss.item() == pytest.approx(want, rel=1e-6)
    torch.testing.assert_close(h.grad.double(), gh, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w.grad.double(), gw, rtol=1e-5, atol=1e-7)


def test_all_masked_is_zero_and_no_grad_gives_the_loss_only() -> None:
    h, w = torch.randn(6, 8, requires_grad=True), torch.randn(11, 8, requires_grad=True)
    t = torch.randint(0, 11, (6,))
    loss = linear_cross_entropy(h, w, t, torch.zeros(6))
    loss.backward()
    assert loss.item() == 0.0 and h.grad.abs().max() == 0 and w.grad.abs().max() == 0
    with torch.no_grad():
        out = linear_cross_entropy(h, w, t)
    assert not out.requires_grad
    assert out.item() == pytest.approx(reference(h, w, t, None)[0], rel=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_gpt_training_call_equals_the_logits_path(tied: bool) -> None:
    """Same loss and the same gradient for every parameter (the tied embedding gets both contributions)."""
    v = MIN_VOCAB + 7  # the fused path is taken from MIN_VOCAB on
    cfg = GPTConfig(n_layer=2, d_model=32, n_head=2, vocab_size=v, n_ctx=16, tied=tied)
    torch.manual_seed(0)
    model = GPT(cfg)
    x, y = torch.randint(0, v, (4, 16)), torch.randint(0, v, (4, 16))
    mask = (torch.rand(4, 16) > 0.3).float()
    for m in (None, mask):
        grads = []
        for fused in (False, True):
            model.zero_grad(set_to_none=True)
            logits, loss = model(x, y, m, return_logits=not fused)
            assert (logits is None) == fused
            assert (loss.grad_fn.name() == "_LinearCrossEntropyBackward") == fused
            loss.backward()
            grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
        (l_plain, g_plain), (l_fused, g_fused) = grads
        assert l_fused == pytest.approx(l_plain, rel=1e-6)
        for a, b in zip(g_plain, g_fused, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_small_vocabulary_keeps_the_plain_path() -> None:
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_head=1, vocab_size=MIN_VOCAB - 1, n_ctx=8))
    x = torch.randint(0, MIN_VOCAB - 1, (2, 8))
    logits, loss = model(x, x, return_logits=False)
    assert logits is None and loss.grad_fn.name() != "_LinearCrossEntropyBackward"
