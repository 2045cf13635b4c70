"""GPT-3 word scrambling and manipulation (Brown et al. 2020, sec. 3.9.2): CL, A1, A2, RI, RW.

- ``words.cl`` cycle letters: the word rotated by a non-identity shift (``lyinevitab`` -> ``inevitably``).
- ``words.a1``: every letter but the first and last shuffled (``criroptuon`` -> ``corruption``).
- ``words.a2``: every letter but the first two and last two shuffled (``opoepnnt`` -> ``opponent``).
- ``words.ri``: one random punctuation or space character between each pair of letters
  (``s.u!c/c!e.s s i/o/n`` -> ``succession``).
- ``words.rw``: the word spelled backwards (``stcejbo`` -> ``objects``).

Rules: ``paper`` (default) scrambles always differ from the word (A1, A2, CL) and RI draws from
``string.punctuation`` + space; ``released`` mimics the released files: RI draws from {space . / !} and A2
may leave a word unchanged (193 of 10,000 in the released file).

Word list (``data/words.txt``): the paper drew from the 10,000 most frequent English words of length
5-14 [Nor09]; that list is not available offline, so we ship ``build_word_list(text:default corpus)``: the
10,000 most frequent lowercase alphabetic words of length 5-14 in the bundled King James Bible + Shakespeare
corpus, ties broken alphabetically (a test rebuilds it). It is older English than [Nor09] (``shalt``,
``israel``). Each word appears once
per task; the test split (2000 words by default) and the few-shot split (the rest) are disjoint.

Presets: ``gpt3`` (App. G): the instruction ``Please unscramble the letters into a word, and write that
word:`` then ``<scrambled> =`` -> `` <word>``, one newline between examples, greedy generation until a
newline, exact match. ``lmeval``: the harness's ``unscramble`` tasks: no instruction, the released context
``\\n<scrambled> =`` + `` <word>``, ``\\n\\n`` between examples.
"""

from __future__ import annotations

import random
import string
from functools import lru_cache
from importlib import resources

from scalinglab.errors import ConfigError
from scalinglab.evals.prompts import Doc, Preset, doc_seed
from scalinglab.evals.tasks import register
from scalinglab.evals.tasks.base import Task, count_option

RI_CHARS = {"paper": string.punctuation + " ", "released": " ./!"}
INSTRUCTION = "Please unscramble the letters into a word, and write that word:\n"

GPT3 = Preset(
    name="gpt3", text=lambda d: f"{d['scrambled']} =", target=lambda d: d["word"], description=INSTRUCTION,
    output_type="generate_until", scorer="exact_match", target_delimiter=" ", fewshot_delimiter="\n",
    until=("\n",), max_tokens=24, notes="GPT-3 App. G prompt with the unscramble instruction",
)
LMEVAL = Preset(
    name="lmeval", text=lambda d: f"\n{d['scrambled']} =", target=lambda d: " " + d["word"],
    output_type="generate_until", scorer="exact_match", target_delimiter="", fewshot_delimiter="\n\n",
    until=("\n",), max_tokens=24, notes="lm-evaluation-harness unscramble: released context, no instruction",
)


def build_word_list(text: str, n: int = 10_000, min_len: int = 5, max_len: int = 14) -> list[str]:
    """The ``n`` most frequent words of ``text`` (lowercased runs of a-z) with ``min_len <= len <= max_len``,
    most frequent first, ties in alphabetical order."""
    import re
    from collections import Counter

    counts = Counter(w for w in re.findall(r"[a-z]+", text.lower()) if min_len <= len(w) <= max_len)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


@lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """The shipped word list (most frequent first)."""
    text = resources.files("scalinglab.evals.tasks").joinpath("data/words.txt").read_text("utf-8")
    return tuple(w for w in text.split() if w)


def _shuffle_middle(word: str, lo: int, hi: int, rng: random.Random, must_change: bool) -> str | None:
    mid = list(word[lo : len(word) - hi])
    if must_change and len(set(mid)) < 2:
        return None
    while True:
        rng.shuffle(mid)
        out = word[:lo] + "".join(mid) + word[len(word) - hi :]
        if out != word or not must_change:
            return out


def scramble(kind: str, word: str, rng: random.Random, rules: str = "paper") -> str | None:
    """The scrambled form of ``word`` for task ``kind`` (cl, a1, a2, ri, rw); None when impossible."""
    if kind == "cl":
        k = rng.randrange(1, len(word))
        out = word[k:] + word[:k]
        return None if out == word else out
    if kind == "a1":
        return _shuffle_middle(word, 1, 1, rng, must_change=True)
    if kind == "a2":
        return _shuffle_middle(word, 2, 2, rng, must_change=(rules == "paper"))
    if kind == "ri":
        chars = RI_CHARS[rules]
        return "".join(c + rng.choice(chars) for c in word[:-1]) + word[-1]
    if kind == "rw":
        return word[::-1]
    raise ConfigError(f"unknown word task {kind!r}")


class WordTask(Task):
    version = 1
    default_preset = "gpt3"
    presets = {"gpt3": GPT3, "lmeval": LMEVAL}

    def __init__(self, name: str, *, n_test: int = 2000, data_seed: int = 0, rules: str = "paper",
                 min_len: int | None = None) -> None:
        if rules not in RI_CHARS:
            raise ConfigError(f"{name}: rules must be 'paper' or 'released', got {rules!r}")
        self.name, self.kind, self.rules = name, name.split(".", 1)[1], rules
        self.n_test, self.data_seed = count_option(name, "n_test", n_test), data_seed
        default = 6 if self.kind == "a2" else 5  # A2 needs a middle of 2+
        self.min_len = default if min_len is None else count_option(name, "min_len", min_len, maximum=14)
        self._docs: dict[str, list[Doc]] | None = None

    def docs(self, split: str) -> list[Doc]:
        if split not in ("test", "train"):
            raise ConfigError(f"{self.name}: unknown split {split!r}; choose test or train")
        if self._docs is None:
            rng = random.Random(doc_seed(self.data_seed, self.name + "/" + self.rules, "words"))
            words = [w for w in word_list() if self.min_len <= len(w) <= 14]
            rng.shuffle(words)
            docs: list[Doc] = []
            for w in words:
                s = scramble(self.kind, w, rng, self.rules)
                if s is not None:
                    docs.append({"word": w, "scrambled": s})
            if len(docs) <= self.n_test + 100:
                raise ConfigError(f"{self.name}: only {len(docs)} words, need more than n_test + 100")
            self._docs = {"test": docs[: self.n_test], "train": docs[self.n_test :]}
            for sp, ds in self._docs.items():
                for i, d in enumerate(ds):
                    d["id"] = f"{sp}-{i}"
        return self._docs[split]


for _kind in ("cl", "a1", "a2", "ri", "rw"):
    register(f"words.{_kind}")(WordTask)
