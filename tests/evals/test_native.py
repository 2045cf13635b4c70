"""The scalinglab-GPT backend: cached/padded forward equals the plain forward; HF export equals our logits."""

from __future__ import annotations

import pytest
import torch

from scalinglab.data.tokenizer import ByteTokenizer  # noqa: E402
from scalinglab.evals.export import hf_tokenizer, to_hf  # noqa: E402
from scalinglab.evals.hf import HFLM  # noqa: E402
from scalinglab.evals.native import ScalingLabLM, forward_with_cache  # noqa: E402
from scalinglab.model.config import GPTConfig  # noqa: E402
from scalinglab.model.gpt import GPT  # noqa: E402


def tiny(attention=None, bias=False, tied=True, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig(n_layer=2, d_model=32, n_head=4, vocab_size=256, n_ctx=64, attention=attention, bias=bias,
                    tied=tied, **kw)
    m = GPT(cfg).eval()
    with torch.no_grad():  # larger weights than the init: peaked, well-separated logits
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


@pytest.mark.parametrize("attention", [None, ["dense", "banded:5"]])
def test_forward_with_cache_equals_forward(attention):
    m = tiny(attention)
    seqs = [torch.randint(0, 256, (n,)) for n in (17, 9, 30)]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):], mask[r, width - len(s):] = s, 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        # prompt minus its last 4 tokens, then 4 single-token cached steps
        logits, cache = forward_with_cache(m, ids[:, :-4], mask[:, :-4], pos[:, :-4], None)
        steps = [logits]
        for t in range(width - 4, width):
            lg, cache = forward_with_cache(m, ids[:, t:t + 1], mask[:, :t + 1], pos[:, t:t + 1], cache)
            steps.append(lg)
        got = torch.cat(steps, 1)
        for r, s in enumerate(seqs):
            ref = m(s[None])[0][0]
            assert torch.allclose(got[r, width - len(s):], ref, atol=1e-5), (attention, r)


def test_scalinglab_lm_loglikelihood_and_generation():
    m = tiny()
    lm = ScalingLabLM(m, ByteTokenizer(), batch_size=2)
    reqs = [("Q: What is 2 plus 3?\n\nA:", " 5"), ("abc ", "def"), ("", "xyz"), ("hello", " world!")]
    got = lm.loglikelihood(reqs)
    for (c, x), r in zip(reqs, got, strict=True):
        c2 = c.rstrip()
        x2 = c[len(c2):] + x
        ids = list(c2.encode()) or [10]
        full = ids + list(x2.encode())
        with torch.no_grad():
            lp = torch.log_softmax(m(torch.tensor([full]))[0][0].double(), -1)
        ref = sum(lp[len(ids) - 1 + i, t].item() for i, t in enumerate(full[len(ids):]))
        assert r.logprob == pytest.approx(ref, abs=1e-5)
    # batched cached generation == GPT.generate (no padding, one prompt at a time)
    prompts = ["Q: 12", "a longer prompt here", "xyz"]
    gens = lm.generate_until([(p, [], 5) for p in prompts])
    for p, g in zip(prompts, gens, strict=True):
        ref = m.generate(torch.tensor([list(p.encode())]), 5)[0, len(p):].tolist()
        assert g == ByteTokenizer().decode(ref)


@pytest.mark.parametrize("bias,tied,act", [(False, True, "gelu"), (True, False, "gelu_tanh")])
def test_hf_export_logits_equal(bias, tied, act):
    m = tiny(bias=bias, tied=tied, activation=act)
    if bias:
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
    hf = to_hf(m)
    x = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, m(x)[0], atol=1e-5)
    tok = hf_tokenizer(ByteTokenizer())
    text = "Q: What is 98 plus 45?\n\nA: 143 é"
    assert tok.encode(text, add_special_tokens=False) == list(text.encode())
    a = HFLM(hf, tok).loglikelihood([("Q: 1 plus 1?", " 2")])[0]
    b = ScalingLabLM(m, ByteTokenizer()).loglikelihood([("Q: 1 plus 1?", " 2")])[0]
    assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_export_refuses_banded():
    from scalinglab.errors import InputError

    with pytest.raises(InputError, match="banded"):
        to_hf(tiny(["dense", "banded:4"]))
