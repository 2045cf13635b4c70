"""Scorers, the runner (with oracle models of known accuracy), the request cache and 13-gram contamination."""

from __future__ import annotations

import re

import pytest

from scalinglab.errors import ConfigError
from scalinglab.evals import scorers
from scalinglab.evals.cache import CachingLM
from scalinglab.evals.contamination import NgramIndex
from scalinglab.evals.lm import LogLik
from scalinglab.evals.runner import evaluate


def test_mc_scorers_pick_by_their_normalisation():
    choices = ["a", "bbbb"]  # as the task gives them; scored as " a", " bbbb" after the delimiter
    lls = [LogLik(-2.0, False, 1), LogLik(-4.0, False, 4)]
    unc = [LogLik(-1.0, False, 1), LogLik(-9.0, False, 4)]
    pick = {s: scorers.argmax(scorers.choice_scores(s, choices, lls, unc))
            for s in scorers.MC_SCORERS}
    assert pick["acc"] == 0  # -2 > -4
    assert pick["acc_per_token"] == 1  # -2/1 < -4/4
    assert pick["acc_norm"] == 1  # -2/1 < -4/4
    assert pick["acc_bytes"] == 1
    assert pick["acc_uncond"] == 1 and pick["acc_mutual_info"] == 1  # -2+1 < -4+9
    # the harness's length is that of the choice without the delimiter: -1/1 < -2.5/3, so choice 1 (dividing
    # by the scored " a" and " bbb" would give -1/2 > -2.5/4, choice 0)
    lls = [LogLik(-1.0, False, 1), LogLik(-2.5, False, 3)]
    assert scorers.argmax(scorers.choice_scores("acc_norm", ["a", "bbb"], lls)) == 1
    assert scorers.choice_scores("acc_bytes", ["é"], [LogLik(-2.0, 0, 2)]) == [-1.0]  # 2 UTF-8 bytes
    with pytest.raises(ConfigError):
        scorers.choice_scores("acc_uncond", choices, lls)
    with pytest.raises(ConfigError):
        scorers.check_scorer("acc_norm", "generate_until")
    assert scorers.exact_match(" 143\n", "143") and not scorers.exact_match("1430", "143")
    assert scorers.exact_match("Casino!", "casino", ignore_case=True, ignore_punctuation=True)


class Oracle:
    """Answers the last arithmetic question of a prompt; correct on a known subset of documents."""

    identity = {"backend": "oracle", "weights": "0", "path": "oracle", "dtype": "none"}
    greedy_generation = True

    def __init__(self, wrong_if_answer_endswith: str = "") -> None:
        self.wrong = wrong_if_answer_endswith
        self.calls = 0

    def _answer(self, ctx: str) -> str:
        q = re.findall(r"What is (\d+) plus (\d+)\?", ctx)[-1]
        ans = str(int(q[0]) + int(q[1]))
        return ans + "0" if self.wrong and ans.endswith(self.wrong) else ans

    def generate_until(self, requests):
        self.calls += len(requests)
        return [" " + self._answer(c) + "\n\nQ: more" for c, _, _ in requests]

    def loglikelihood(self, requests):
        self.calls += len(requests)
        return [LogLik(-1.0, x.strip() == self._answer(c), 1) for c, x in requests]

    def loglikelihood_rolling(self, requests):
        return [-1.0] * len(requests)


def test_runner_recovers_known_accuracy():
    perfect = evaluate(Oracle(), "arithmetic.2d+", shots=[0, 2], seeds=3, limit=200)
    assert [r.acc for r in perfect] == [1.0, 1.0]
    assert perfect[1].seeds == [0, 1, 2] and perfect[0].seeds == [0]
    # wrong whenever the answer ends in 7: exactly that fraction of the 200 documents, for both presets
    from scalinglab.evals.tasks import get_task

    docs = get_task("arithmetic.2d+").docs("test")[:200]
    expected = 1 - sum(d["answer"].endswith("7") for d in docs) / 200
    for preset in ("gpt3", "lmeval"):
        (r,) = evaluate(Oracle("7"), "arithmetic.2d+", shots=[1], seeds=2, limit=200, preset=preset)
        assert r.acc == pytest.approx(expected) and r.acc_sd == 0.0
        assert r.scorer == ("exact_match" if preset == "gpt3" else "greedy") and r.preset == preset
    with pytest.raises(ConfigError):
        evaluate(Oracle(), "arithmetic.2d+", scorer="acc_norm")


def test_cache_is_keyed_by_model(tmp_path, hf_lm, make_tiny_gpt2):
    reqs = [("Q: What is 1 plus 2?\n\nA:", " 3"), ("abc", "d")]
    c = CachingLM(hf_lm, tmp_path / "cache.sqlite")
    first = c.loglikelihood(reqs)
    again = c.loglikelihood(reqs)
    assert c.misses == 2 and c.hits == 2 and again == first and again[0].n_tokens == 2
    g1 = c.generate_until([("abc", ["\n"], 4)])
    assert c.generate_until([("abc", ["\n"], 4)]) == g1 and c.hits == 3
    # another model (different weights) must not read these entries
    from scalinglab.evals.hf import HFLM, byte_tokenizer

    other = CachingLM(HFLM(make_tiny_gpt2(seed=1), byte_tokenizer()), tmp_path / "cache.sqlite")
    res = other.loglikelihood(reqs)
    assert other.misses == 2 and other.hits == 0 and res[0].logprob != first[0].logprob


def test_sampled_generations_are_not_cached(tmp_path):
    o = Oracle()
    o.greedy_generation = False
    c = CachingLM(o, tmp_path / "c.sqlite")
    c.generate_until([("What is 1 plus 1?", ["\n"], 3)] * 2)
    c.generate_until([("What is 1 plus 1?", ["\n"], 3)])
    assert o.calls == 3 and c.hits == 0


def test_contamination_13grams():
    corpus = ("the quick brown fox jumps over the lazy dog and then runs far away into the forest "
              "Q: What is 12 plus 30?\n\nA: 42\n")
    idx = NgramIndex(corpus)
    assert idx.contaminated("The QUICK brown fox jumps over the lazy dog, and then runs far away!")
    assert not idx.contaminated("the quick brown fox jumps over the lazy cat and then runs far away")
    assert idx.contaminated("Q: What is 12 plus 30? A: 42")  # short document: whole sequence
    assert not idx.contaminated("Q: What is 12 plus 31? A: 43")
    assert idx.fraction(["what is 12 plus 30", "what is 1 plus 1"]) == 0.5
    r = evaluate(Oracle(), "arithmetic.2d+", limit=50, contamination=NgramIndex(corpus))[0]
    from scalinglab.evals.tasks import get_task

    docs = get_task("arithmetic.2d+").docs("test")[:50]
    assert r.contamination == pytest.approx(sum(d["question"] == "12 plus 30" for d in docs) / 50)
    # letters of any script are words; an accented letter is not a separator
    assert NgramIndex("Привет мир как дела").contaminated("привет мир как дела")
    assert not NgramIndex("caf au lait").contaminated("café au lait")
    # the evaluated preset's prompt is what is searched: a corpus holding the lm-eval layout of a document
    task = get_task("arithmetic.2d+")
    corpus = "\n".join(task.preset("lmeval").demo(d) for d in docs)
    for preset in ("gpt3", "lmeval"):
        want = 1.0 if preset == "lmeval" else 0.0  # the gpt3 layout ("Q: ... A:") is not in this corpus
        got = evaluate(Oracle(), task, limit=50, preset=preset, contamination=NgramIndex(corpus))[0]
        assert got.contamination == pytest.approx(want), preset


def test_runner_normalises_by_the_choice_without_the_delimiter(monkeypatch):
    """The runner scores " " + choice but hands the scorer the choice itself (the harness's doc_to_choice)."""
    from scalinglab.evals.tasks import get_task

    task = get_task("analogy.generated")
    seen: list[list[str]] = []
    score = scorers.choice_scores

    def spy(scorer, choices, lls, uncond=None):
        seen.append(list(choices))
        return score(scorer, choices, lls, uncond)

    class Flat:
        identity = {"backend": "flat", "weights": "0", "path": "flat", "dtype": "none"}

        def loglikelihood(self, reqs):
            assert all(cont.startswith(" ") for _, cont in reqs)
            return [LogLik(-float(len(cont)), False, 1) for _, cont in reqs]

    monkeypatch.setattr(scorers, "choice_scores", spy)
    evaluate(Flat(), task, shots=[0], scorer="acc_norm", limit=5)
    docs = task.docs("test")[:5]
    assert seen == [d["choices"] for d in docs]
