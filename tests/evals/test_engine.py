"""The request engine against a direct ``transformers`` forward computation."""

from __future__ import annotations

import random

import pytest
import torch

from scalinglab.evals.lm import rolling_windows, split_whitespace

CONTEXTS = ["Q: What is 12 plus 7?\n\nA:", "The cat sat on the ", "", "x", "Hello, world. " * 6, "é ü 日本 "]
CONTS = [" 19", "mat", "start", "yz", "End.", " done\n"]


def direct_ll(model, tok, context: str, cont: str) -> tuple[float, bool]:
    """Reference: encode the joint string, one unbatched forward, sum log-softmax over the continuation."""
    ctx, cont = split_whitespace(context, cont)
    whole = tok.encode(ctx + cont, add_special_tokens=False)
    c = tok.encode(ctx, add_special_tokens=False) if ctx else []
    n_ctx = len(c)
    seq = ([tok.eos_token_id] if n_ctx == 0 else []) + whole
    n_ctx = max(n_ctx, 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
    targets = seq[n_ctx:]
    rows = logp[n_ctx - 1 : len(seq) - 1]
    ll = sum(rows[i, t].item() for i, t in enumerate(targets))
    greedy = all(rows[i].argmax().item() == t for i, t in enumerate(targets))
    return ll, greedy


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_loglikelihood_matches_transformers(hf_lm, batch_size):
    reqs = [(c, x) for c in CONTEXTS for x in CONTS]
    random.Random(0).shuffle(reqs)
    hf_lm.batch_size = batch_size
    got = hf_lm.loglikelihood(reqs)
    worst = 0.0
    for (c, x), r in zip(reqs, got, strict=True):
        ref, greedy = direct_ll(hf_lm.model, hf_lm.tokenizer, c, x)
        worst = max(worst, abs(r.logprob - ref))
        assert r.is_greedy == greedy
    assert worst < 1e-5, worst


def test_whitespace_moves_to_continuation(hf_lm):
    a, b = hf_lm.loglikelihood([("Answer: ", "yes"), ("Answer:", " yes")])
    assert a.logprob == pytest.approx(b.logprob, abs=1e-6)
    assert a.n_tokens == b.n_tokens == 4


def test_greedy_continuation_is_detected(hf_lm):
    ctx = hf_lm.tok_encode("abc")
    gen = naive_greedy(hf_lm.model, hf_lm.tokenizer, "abc", 3)
    (r,) = hf_lm.loglikelihood_tokens([(ctx, gen)])
    assert r.is_greedy and r.n_tokens == 3
    wrong = gen[:-1] + [(gen[-1] + 1) % 256]
    assert not hf_lm.loglikelihood_tokens([(ctx, wrong)])[0].is_greedy


def test_rolling_windows_cover_every_token_once():
    toks = list(range(1, 24))
    for L in (1, 4, 7, 23, 50):
        wins = rolling_windows(toks, 0, L)
        assert [t for _, tgt in wins for t in tgt] == toks
        full = [0] + toks
        pos = 0
        for ctx, tgt in wins:
            assert len(ctx) + len(tgt) - 1 <= L and len(ctx) >= 1
            assert ctx == full[pos + 1 - len(ctx) : pos + 1]  # the tokens just before the targets
            pos += len(tgt)


def test_rolling_equals_direct_when_text_fits(hf_lm):
    text = "In the beginning was the word."
    (ll,) = hf_lm.loglikelihood_rolling([text])
    ids = [256] + hf_lm.tok_encode(text)
    with torch.no_grad():
        logp = torch.log_softmax(hf_lm.model(torch.tensor([ids])).logits[0].double(), -1)
    ref = sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1))
    assert ll == pytest.approx(ref, abs=1e-5)


def test_rolling_long_text_uses_windows(hf_lm):
    text = "abcdefghij" * 30  # 300 tokens > n_positions = 128
    (ll,) = hf_lm.loglikelihood_rolling([text])
    assert ll < 0 and len(rolling_windows(hf_lm.tok_encode(text), 256, 128)) == 3
    assert hf_lm.loglikelihood_rolling([text, "abc"])[0] == pytest.approx(ll, abs=1e-5)


def naive_greedy(model, tok, ctx: str, n: int) -> list[int]:
    ids = tok.encode(ctx, add_special_tokens=False)
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
    return out


@pytest.mark.parametrize("batch_size", [1, 4])
def test_generate_until_matches_no_cache_greedy(hf_lm, batch_size):
    hf_lm.batch_size = batch_size
    prompts = ["Q: 1+1", "a", "The quick brown fox jumps", "zz top " * 5, "Q: 1+1"]
    got = hf_lm.generate_until([(p, [], 6) for p in prompts])
    for p, g in zip(prompts, got, strict=True):
        assert g == hf_lm.tok_decode(naive_greedy(hf_lm.model, hf_lm.tokenizer, p, 6))
    # stop strings cut the text at the first occurrence
    full = got[2]
    stop = full[2:4]
    cut = hf_lm.generate_until([(prompts[2], [stop], 6)])[0]
    assert cut == full[: full.find(stop)]


def test_generation_does_not_depend_on_the_batch(hf_lm):
    """A long context is cut to max_length minus the request's *own* budget, whatever else is batched with
    it; a stop string may be given as one string; a continuation longer than the context is an error."""
    from scalinglab.errors import InputError

    long_ctx = "the quick brown fox jumps over the lazy dog " * 40  # longer than the model's context
    reqs = [(long_ctx, [], 3), ("Q: 1+1", [], 40)]
    hf_lm.batch_size = 1
    alone = hf_lm.generate_until(reqs)
    hf_lm.batch_size = 2
    assert hf_lm.generate_until(reqs) == alone
    full = hf_lm.generate_until([("The quick brown fox jumps", [], 6)])[0]
    stop = full[2:4]
    assert hf_lm.generate_until([("The quick brown fox jumps", stop, 6)]) == [full[: full.find(stop)]]
    with pytest.raises(InputError, match="does not fit the model's context"):
        hf_lm.loglikelihood([("", "x " * (hf_lm.max_length + 5))])


def test_generation_uses_the_current_cache_api(hf_lm):
    """transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns and goes in 5.40): the
    cached decoding passes whichever keyword this release's forward takes, without a deprecation warning,
    and still matches uncached greedy decoding."""
    import inspect
    import warnings

    from scalinglab.evals.hf import cache_keyword

    names = inspect.signature(hf_lm.model.forward).parameters
    assert cache_keyword(hf_lm.model) == ("cache" if "cache" in names else "past_key_values")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = hf_lm.generate_until([("The quick brown fox", [], 5)])[0]
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    assert got == hf_lm.tok_decode(naive_greedy(hf_lm.model, hf_lm.tokenizer, "The quick brown fox", 5))
