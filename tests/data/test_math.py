"""Generated math: every answer is right, the loss mask covers exactly the answers, difficulty splits."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest

from scalinglab.data import Sampler, eval_batches, open_dataset, prepare
from scalinglab.errors import ConfigError


def _check(question: str, answer: str) -> bool:
    """Recompute the answer from the question text alone."""
    if m := re.fullmatch(r"(-?\d+)\*x([+-]\d+)=(-?\d+);x=", question):
        a, b, c = map(int, m.groups())
        return a * int(answer) + b == c
    if m := re.fullmatch(r"(\d+)/(\d+)([+-])(\d+)/(\d+)=", question):
        p, q, op, r, s = m.groups()
        v = Fraction(int(p), int(q)) + (1 if op == "+" else -1) * Fraction(int(r), int(s))
        return Fraction(answer) == v and str(v) == answer
    if m := re.fullmatch(r"Q: What is (\d+) (plus|minus|times) (\d+)\?\nA: ", question):
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return int(answer) == {"plus": a + b, "minus": a - b, "times": a * b}[op]
    assert re.fullmatch(r"[\d()+\-*]+=", question), question
    return int(answer) == eval(question[:-1])  # noqa: S307 (digits, parentheses and + - * only)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "mixed"
    prepare("math:mixed,n=3000,n_test=100,difficulty=2-5,extrapolate=2", out)
    return open_dataset(out)


def _records(ds, split):
    tok = np.asarray(ds.tokens(split))
    mask = np.asarray(ds.mask(split))
    bounds = list(ds.doc_starts(split)) + [len(tok)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        yield tok[a:b].tobytes().decode(), mask[a:b]


def test_answers_are_correct_and_only_answers_are_masked(mixed):
    n = 0
    for split in mixed.splits:
        for text, m in _records(mixed, split):
            q, a = text[: int(np.argmax(m))], text[int(np.argmax(m)):]
            assert m[len(q):].all() and not m[:len(q)].any()
            assert a.endswith("\n") and _check(q, a[:-1]), text
            n += 1
    assert n > 3000


def test_every_family_is_right(tmp_path):
    for fam in ("arith", "fractions", "linear", "qa"):
        ds = open_dataset(prepare(f"math:{fam},n=300,n_test=20,difficulty=1-4", tmp_path / fam).path)
        for text, m in _records(ds, "train"):
            cut = int(np.argmax(m))
            assert _check(text[:cut], text[cut:-1]), text


def test_difficulty_splits_are_held_out_from_train(mixed):
    levels = mixed.meta["difficulty_splits"]
    assert {v["kind"] for v in levels.values()} == {"interpolate", "extrapolate"}
    assert set(levels) == {f"test_d{k}" for k in range(2, 8)}
    train = set(mixed.documents("train"))
    for split in ["val", "test", *levels]:
        assert not train & set(mixed.documents(split)), split
    # harder levels have longer problems
    mean_len = [mixed.num_tokens(f"test_d{k}") / levels[f"test_d{k}"]["problems"] for k in range(2, 8)]
    assert mean_len == sorted(mean_len)


def test_record_aligned_sampling_and_eval_count_each_answer_once(mixed):
    b = Sampler(mixed, "train", 8, 48, seed=0).next_batch()
    starts = set(mixed.doc_starts("train").tolist())
    assert all(int(o) in starts for o in Sampler(mixed, "train", 8, 48, seed=0).offsets(0))
    assert b.mask is not None and 0 < b.mask.mean() < 0.5
    answer_tokens = int(np.asarray(mixed.mask("test_d7")).sum())
    counted = sum(e.mask.sum() for e in eval_batches(mixed, "test_d7", 16, 64))
    assert counted == answer_tokens


def test_bad_math_options(tmp_path):
    with pytest.raises(ConfigError, match="difficulty"):
        prepare("math:arith,difficulty=5-2", tmp_path / "a")
    with pytest.raises(ConfigError, match="unknown family"):
        prepare("math:calculus", tmp_path / "b")
    assert not list(tmp_path.iterdir())


def test_a_context_shorter_than_a_record_is_refused(mixed):
    """A window shorter than a problem would cut its answer, the only counted targets, without a word."""
    longest = max(len(q) for q, _ in _records(mixed, "val"))
    with pytest.raises(ConfigError, match=f"records of up to {longest} tokens"):
        next(eval_batches(mixed, "val", 8, longest - 2))
    with pytest.raises(ConfigError, match="use a context of at least"):
        Sampler(mixed, "val", 8, longest - 2)
    assert next(eval_batches(mixed, "val", 8, longest - 1)) is not None  # exactly fits


def test_an_unknown_domain_or_tokenizer_is_refused_not_guessed(tmp_path, digits):
    """A domain that is not text or image is not built as math, and a dataset folder whose meta.json names
    a tokenizer we do not know is not read with the pixel tokenizer."""
    import json
    import shutil

    from scalinglab.data.prepare import _build
    from scalinglab.data.spec import Spec
    from scalinglab.errors import InputError

    with pytest.raises(ConfigError, match="unknown data domain 'audio'"):
        _build(Spec("audio", "x.wav"))
    with pytest.raises(ConfigError, match="expected DOMAIN:SOURCE with DOMAIN in"):  # parsing says so first
        prepare("audio:x.wav", tmp_path / "a")
    bad = tmp_path / "bad"
    shutil.copytree(digits.path, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["tokenizer"]["kind"] = "sentencepiece"
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unknown tokenizer kind 'sentencepiece'"):
        open_dataset(bad).tokenizer  # noqa: B018
    assert open_dataset(digits.path).tokenizer.kind == "pixels"
