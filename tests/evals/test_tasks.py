"""Task generators against the GPT-3 paper's rules (fixed seeds), the registry, and prompt assembly."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest

from scalinglab.errors import ConfigError
from scalinglab.evals.prompts import build_context, sample_shots
from scalinglab.evals.tasks import expand, get_task, list_tasks
from scalinglab.evals.tasks.words import build_word_list, word_list

ARITH = {"2d+": (100, "plus"), "2d-": (100, "minus"), "3d+": (1000, "plus"), "3d-": (1000, "minus"),
         "4d+": (10**4, "plus"), "4d-": (10**4, "minus"), "5d+": (10**5, "plus"), "5d-": (10**5, "minus"),
         "2dx": (100, "times")}


def test_registry_lists_all_gpt3_tasks():
    names = list_tasks()
    for code in list(ARITH) + ["1dc"]:
        assert f"arithmetic.{code}" in names
    for w in ("cl", "a1", "a2", "ri", "rw"):
        assert f"words.{w}" in names
    assert "analogy.generated" in names and "lambada.corpus" in names
    assert expand("arithmetic")[:2] == ["arithmetic.1dc", "arithmetic.2d+"] and len(expand("words.*")) == 5
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("arithmetic.7d+")


@pytest.mark.parametrize("code", sorted(ARITH))
def test_arithmetic_rules(code):
    hi, word = ARITH[code]
    t = get_task(f"arithmetic.{code}", n_test=500, n_train=500)
    docs = t.docs("test") + t.docs("train")
    assert len({d["question"] for d in docs}) == 1000  # distinct, splits disjoint
    a_all, b_all = [], []
    for d in docs:
        a, op, b = d["question"].split()
        a, b = int(a), int(b)
        assert op == word and 0 <= a < hi and 0 <= b < hi
        assert int(d["answer"]) == {"plus": a + b, "minus": a - b, "times": a * b}[op]
        a_all.append(a)
        b_all.append(b)
    # uniform over the range: both halves are drawn, and large operands appear
    assert max(a_all) > 0.9 * hi and min(a_all) < 0.1 * hi and max(b_all) > 0.9 * hi
    if word == "minus":
        assert any(int(d["answer"]) < 0 for d in docs)
    # prompt formats: the released file layout (gpt3) and the harness rewrite (lmeval)
    d = docs[0]
    g = t.preset("gpt3")
    assert build_context(g, d, []) + g.target_delimiter + g.target(d) == \
        f"\n\nQ: What is {d['question']}?\n\nA: {d['answer']}"
    lm = t.preset("lmeval")
    assert lm.text(d) + lm.target(d) == f"Question: What is {d['question']}?\nAnswer: {d['answer']}"


def test_1dc_paper_and_released_rules():
    paper = get_task("arithmetic.1dc", n_test=1000, n_train=100).docs("test")
    pat = re.compile(r"^(\d)([-+*])\((\d)([-+*])(\d)\)$")
    ops = Counter()
    for d in paper:
        m = pat.match(d["question"])
        assert m, d["question"]
        a, o1, b, o2, c = m.groups()
        assert int(d["answer"]) == eval(f"{a}{o1}({b}{o2}{c})")
        ops.update([o1, o2])
    assert set(ops) == {"+", "-", "*"} and any("0" in d["question"] for d in paper)
    rel = get_task("arithmetic.1dc", n_test=1000, n_train=100, rules="released").docs("test")
    pat = re.compile(r"^\(([1-9]) ([-+*]) ([1-9])\) ([-+*]) ([1-9])$")
    for d in rel:
        m = pat.match(d["question"])
        assert m, d["question"]
        a, o1, b, o2, c = m.groups()
        assert int(d["answer"]) == eval(f"({a}{o1}{b}){o2}{c}")


def test_word_list_is_the_documented_one():
    words = word_list()
    assert len(words) == 10_000 and len(set(words)) == 10_000
    assert all(w.isalpha() and w.islower() and 5 <= len(w) <= 14 for w in words)
    text = "Apple apple, APPLE banana kiwi cherry cherry zzzzzzzzzzzzzzz"
    assert build_word_list(text, n=2) == ["apple", "cherry"]
    from scalinglab.data.text import default_corpus

    assert list(words) == build_word_list(default_corpus()[0].decode("utf-8"))  # rebuilt from the corpus


@pytest.mark.parametrize("rules", ["paper", "released"])
def test_word_task_rules(rules):
    seen_unchanged_a2 = 0
    for kind in ("cl", "a1", "a2", "ri", "rw"):
        t = get_task(f"words.{kind}", n_test=300, rules=rules)
        test, train = t.docs("test"), t.docs("train")
        assert len(test) == 300 and len(train) > 5000
        assert not {d["word"] for d in test} & {d["word"] for d in train}
        for d in test:
            w, s = d["word"], d["scrambled"]
            assert 5 <= len(w) <= 14
            if kind == "cl":
                assert s != w and any(s == w[k:] + w[:k] for k in range(1, len(w)))
            elif kind == "a1":
                assert s != w and s[0] == w[0] and s[-1] == w[-1] and sorted(s) == sorted(w)
            elif kind == "a2":
                assert len(w) >= 6 and s[:2] == w[:2] and s[-2:] == w[-2:] and sorted(s) == sorted(w)
                seen_unchanged_a2 += s == w
            elif kind == "ri":
                assert s[::2] == w and len(s) == 2 * len(w) - 1
                allowed = set(string.punctuation + " ") if rules == "paper" else set(" ./!")
                assert set(s[1::2]) <= allowed
            else:
                assert s == w[::-1]
        if kind == "ri":
            inserted = Counter(c for d in test for c in d["scrambled"][1::2])
            assert len(inserted) == (33 if rules == "paper" else 4)
    if rules == "paper":
        assert seen_unchanged_a2 == 0
    p = get_task("words.ri").preset("gpt3")
    d = get_task("words.ri").docs("test")[0]
    ctx = build_context(p, d, [])
    assert ctx == "Please unscramble the letters into a word, and write that word:\n" + d["scrambled"] + " ="


def test_fewshot_draws_depend_only_on_seed_task_and_doc():
    t = get_task("arithmetic.2d+")
    pool, docs = t.docs("train"), t.docs("test")
    a = [sample_shots(pool, 5, seed=1, task=t.name, doc=d) for d in docs[:20]]
    b = [sample_shots(pool, 5, seed=1, task=t.name, doc=d) for d in reversed(docs[:20])][::-1]
    assert a == b  # order of evaluation does not matter
    c = sample_shots(pool, 5, seed=2, task=t.name, doc=docs[0])
    assert c != a[0] and len(c) == 5
    assert sample_shots(pool, 5, seed=1, task="arithmetic.2d-", doc=docs[0]) != a[0]
    # the document itself is never its own demonstration, even when drawn from its own split
    for d in docs[:50]:
        assert d["id"] not in {s["id"] for s in sample_shots(docs, 20, seed=0, task=t.name, doc=d)}
    ctx = build_context(t.preset("lmeval"), docs[0], a[0])
    assert ctx.count("Question:") == 6 and ctx.count("\n\n") == 5 and ctx.endswith("Answer:")


def test_analogy_set():
    t = get_task("analogy.generated")
    test, train = t.docs("test"), t.docs("train")
    assert len(test) == 400 and len(train) == 400
    from scalinglab.evals.tasks.analogy import RELATIONS

    def pairs(d):
        return {(d["a"], d["b"]), tuple(d["choices"][d["gold"]].split(" is to "))}

    test_pairs = set().union(*(pairs(d) for d in test))
    train_pairs = set().union(*(pairs(d) for d in train))
    assert not test_pairs & train_pairs
    for d in test:
        assert len(d["choices"]) == 5 == len(set(d["choices"]))
        c, dd = d["choices"][d["gold"]].split(" is to ")
        assert (d["a"], d["b"]) in RELATIONS[d["relation"]] and (c, dd) in RELATIONS[d["relation"]]
        wrong = [tuple(x.split(" is to ")) for i, x in enumerate(d["choices"]) if i != d["gold"]]
        assert not any(w in RELATIONS[d["relation"]] for w in wrong)  # exactly one right answer
    assert Counter(d["gold"] for d in test).most_common()[-1][1] > 50  # answer position balanced


def test_lambada_passages():
    text = ("In the beginning God created the heaven and the earth. And the earth was without form. " * 8)
    t = get_task("lambada.corpus", texts={"test": text, "val": text}, n_words=12)
    docs = t.docs("test")
    assert docs and all(d["word"] in ("earth", "form") for d in docs)
    d = docs[0]
    assert len(d["context"].split()) == 12 and (d["context"] + " " + d["word"] + ".") in text
    p = t.preset("gpt3")
    assert build_context(p, d, []).startswith("Fill in blank:\n") and p.text(d).endswith(" ____. ->")


def test_a_task_says_whether_it_reads_the_model_data():
    """`eval` and `study eval` hand a model's data spec only to the tasks built from it (an attribute of the
    task, not a name the callers know)."""
    from scalinglab.evals.tasks import data_kwargs

    assert data_kwargs("lambada.corpus", "text:/x") == {"data": "text:/x"}
    assert data_kwargs("arithmetic.2d+", "text:/x") == {}
    assert get_task("lambada.corpus", **data_kwargs("lambada.corpus", "text:/x")).data == "text:/x"
