"""13-gram contamination check (GPT-3 App. C): how many of a task's documents overlap the training corpus.

Text is normalised to lowercase word tokens (letters and digits; punctuation and whitespace separate).
A document is *contaminated* when any of its word 13-grams occurs in the corpus; a document shorter than
13 words (e.g. ``Q: What is 98 plus 45? A: 143``) is contaminated when its whole word sequence occurs in
the corpus contiguously. Pure Python; memory is one hash per corpus 13-gram.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script (not only ASCII)


def words(text: str) -> list[str]:
    """Lowercase alphanumeric word tokens (Unicode letters and digits)."""
    return _WORD.findall(text.lower())


class NgramIndex:
    """The set of word n-grams of a corpus, plus its normalised text for documents shorter than n."""

    def __init__(self, corpus: str | Iterable[str], n: int = 13) -> None:
        self.n = n
        texts = [corpus] if isinstance(corpus, str) else list(corpus)
        toks: list[list[str]] = [words(t) for t in texts]
        self.grams = {hash(tuple(w[i : i + n])) for w in toks for i in range(len(w) - n + 1)}
        self.joined = "".join(" " + " ".join(w) + " \n" for w in toks)

    def contaminated(self, text: str) -> bool:
        w = words(text)
        if not w:
            return False
        if len(w) < self.n:
            return (" " + " ".join(w) + " ") in self.joined
        return any(hash(tuple(w[i : i + self.n])) in self.grams for i in range(len(w) - self.n + 1))

    def fraction(self, texts: Iterable[str]) -> float:
        """Fraction of ``texts`` that are contaminated (0 for an empty list)."""
        flags = [self.contaminated(t) for t in texts]
        return sum(flags) / len(flags) if flags else 0.0
