"""The LSTM family: exact parameter counts (= sum(p.numel())), FLOPs counted independently, a textbook
LSTM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from scalinglab.errors import ConfigError
from scalinglab.model import LSTMConfig, build_model, count_params, flops_per_token, model_config_from_dict
from scalinglab.model.loss import MIN_VOCAB
from scalinglab.model.lstm import LSTMLM
from scalinglab.train.config import TrainConfig


@pytest.mark.parametrize(
    "n_layer,d,vocab,tied", [(1, 16, 256, True), (2, 32, 256, False), (3, 24, 1031, True)]
)
def test_counts_equal_the_built_module(n_layer, d, vocab, tied):
    cfg = LSTMConfig(n_layer=n_layer, d_model=d, vocab_size=vocab, n_ctx=64, tied=tied)
    m = build_model(cfg)
    p = count_params(cfg)
    assert isinstance(m, LSTMLM) and p["total"] == m.num_params() == sum(q.numel() for q in m.parameters())
    lstm = {n: q for n, q in m.named_parameters() if n.startswith("lstm.")}
    assert p["non_embedding"] == sum(q.numel() for q in lstm.values()) + m.ln_f.weight.numel()
    assert p["kaplan"] == sum(q.numel() for n, q in lstm.items() if "weight" in n) == 8 * n_layer * d * d
    assert p["embedding"] == p["head"] == vocab * d
    assert p["total_without_head"] == p["total"] - (0 if tied else vocab * d)
    assert (m.lm_head.weight is m.wte.weight) is tied


def _reference(m: LSTMLM, idx: torch.Tensor) -> torch.Tensor:
    """A step-by-step LSTM (gates i, f, g, o from F.linear) with the module's weights: its logits."""
    x = m.wte(idx)
    B, T, d = x.shape
    for layer in range(m.cfg.n_layer):
        w_ih, w_hh = getattr(m.lstm, f"weight_ih_l{layer}"), getattr(m.lstm, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(m.lstm, f"bias_ih_l{layer}"), getattr(m.lstm, f"bias_hh_l{layer}")
        h = c = x.new_zeros(B, d).requires_grad_()  # a zero state; its gradient too is a matmul
        out = []
        for t in range(T):
            i, f, g, o = (F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        x = torch.stack(out, dim=1)
    return F.linear(F.layer_norm(x, (d,), m.ln_f.weight), m.lm_head.weight)


def test_a_textbook_lstm_whose_matmuls_are_the_documented_flops():
    torch.manual_seed(0)
    cfg = LSTMConfig(n_layer=2, d_model=16, vocab_size=64, n_ctx=12, tied=False)
    m = build_model(cfg)
    idx = torch.randint(0, 64, (3, 12))
    logits, _ = m(idx)
    torch.testing.assert_close(logits, _reference(m, idx), rtol=1e-5, atol=1e-5)
    with FlopCounterMode(display=False) as fc:  # forward + backward of every matmul of the reference
        loss = F.cross_entropy(_reference(m, idx).flatten(0, 1), idx.flatten())
        loss.backward()
    n_tokens = idx.numel()
    assert fc.get_total_flops() == flops_per_token(cfg)["matmul"] * n_tokens
    f = flops_per_token(cfg)
    p = count_params(cfg)
    assert f["6n"] == f["kaplan"] == 6 * p["kaplan"] and f["palm"] == 6 * p["non_embedding_with_head"]
    assert f["chinchilla"] == f["matmul"] + 3 * 2 * cfg.vocab_size * cfg.d_model  # + the embedding term


def test_forward_contract_loss_paths_and_decoding():
    torch.manual_seed(1)
    m = build_model(LSTMConfig(n_layer=1, d_model=16, vocab_size=MIN_VOCAB + 5, n_ctx=8))
    x = torch.randint(0, MIN_VOCAB + 5, (2, 8))
    mask = (torch.arange(8) % 2).float().expand(2, 8)
    logits, plain = m(x, x, mask)
    none, fused = m(x, x, mask, return_logits=False)  # the chunked CPU path (vocabulary >= MIN_VOCAB)
    assert logits.shape == (2, 8, MIN_VOCAB + 5) and none is None
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    # carrying the state through two halves equals one pass
    a, _, st = m(x[:, :5], return_state=True)
    b, _ = m(x[:, 5:], state=st)
    torch.testing.assert_close(torch.cat([a, b], dim=1), logits, rtol=1e-5, atol=1e-5)
    out = m.generate(x[:, :3], 4)
    assert out.shape == (2, 7) and torch.equal(out[:, :3], x[:, :3])
    assert model_config_from_dict(m.cfg.to_dict()) == m.cfg


def test_config_validation():
    with pytest.raises(ConfigError, match="positive integer"):
        LSTMConfig(n_layer=0, d_model=8)
    with pytest.raises(ConfigError, match="n_head is required"):
        TrainConfig.make(n_layer=1, d_model=8, n_ctx=8, tokens=100)
    with pytest.raises(ConfigError, match=r"\['n_head', 'd_ff'\] do not apply to arch 'lstm'"):
        TrainConfig.make(arch="lstm", n_layer=1, d_model=8, n_head=2, d_ff=16, n_ctx=8, tokens=100)
    cfg = TrainConfig.make(arch="lstm", n_layer=2, d_model=8, n_ctx=8, tokens=100, tied=False)
    assert cfg.arch_config(256) == LSTMConfig(n_layer=2, d_model=8, vocab_size=256, n_ctx=8, tied=False)
    with pytest.raises(ConfigError, match="arch 'rnn'"):
        model_config_from_dict({"arch": "rnn", "n_layer": 1})
