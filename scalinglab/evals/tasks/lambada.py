"""LAMBADA-style last-word prediction on held-out text of a study's own corpus.

LAMBADA (Paperno et al. 2016) asks for the last word of a passage. Here passages come from the ``test``
split of a prepared text dataset (default ``text:default``, the bundled KJV + Shakespeare corpus),
demonstrations from ``val`` (GPT-3 drew LAMBADA demonstrations from the dev set). A passage is ``n_words``
words of running text ending with a sentence-final word of 3+ letters (``... went up to the house.``); the
target is that word without its punctuation. Passages do not overlap. Unlike LAMBADA, targets are not
filtered for needing the whole passage, so this is easier and closer to a cloze test of the corpus.

Presets: ``lmeval`` (the harness's ``lambada_openai``: context + `` word``, acc = greedy match) and ``gpt3``
(the paper's fill-in-the-blank: ``Fill in blank:`` then ``<context> ____. ->`` + `` word``).
"""

from __future__ import annotations

import re

from scalinglab.errors import ConfigError
from scalinglab.evals.prompts import Doc, Preset
from scalinglab.evals.tasks import register
from scalinglab.evals.tasks.base import Task, count_option

_END = re.compile(r"^([A-Za-z]{3,})[.!?;]$")

LMEVAL = Preset(
    name="lmeval", text=lambda d: d["context"], target=lambda d: d["word"], output_type="loglikelihood",
    scorer="greedy", target_delimiter=" ", fewshot_delimiter="\n\n", notes="harness lambada_openai layout",
)
GPT3 = Preset(
    name="gpt3", text=lambda d: f"{d['context']} ____. ->", target=lambda d: d["word"],
    output_type="loglikelihood",
    scorer="greedy", description="Fill in blank:\n", target_delimiter=" ", fewshot_delimiter="\n\n",
    notes="GPT-3 fill-in-the-blank layout (App. G)",
)


def passages(text: str, n_words: int = 48, limit: int | None = None, prefix: str = "p") -> list[Doc]:
    """Non-overlapping passages of ``n_words`` words, each ending with a sentence-final word."""
    spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    out: list[Doc] = []
    last = -1
    for i in range(n_words, len(spans)):
        if i - n_words <= last:
            continue
        m = _END.match(spans[i][2])
        if not m:
            continue
        start = spans[i - n_words][0]
        context = " ".join(text[start : spans[i][0]].split())  # one space between words
        out.append({"id": f"{prefix}-{len(out)}", "context": context, "word": m.group(1)})
        last = i
        if limit and len(out) >= limit:
            break
    return out


@register("lambada.corpus")
class CorpusLastWord(Task):
    version = 1
    uses_data = True
    eval_split = "test"
    fewshot_split = "val"
    default_preset = "lmeval"
    presets = {"lmeval": LMEVAL, "gpt3": GPT3}

    def __init__(self, name: str, *, data: str = "text:default", texts: dict[str, str] | None = None,
                 n_words: int = 48, n_test: int = 500) -> None:
        self.name, self.data = name, data
        self.n_words = count_option(name, "n_words", n_words)
        self.n_test = count_option(name, "n_test", n_test)
        self._texts = texts
        self._docs: dict[str, list[Doc]] = {}

    def _text(self, split: str) -> str:
        if self._texts is None:
            from scalinglab.data import ensure_dataset, open_dataset

            ds = open_dataset(ensure_dataset(self.data))
            if getattr(ds.tokenizer, "kind", "") not in ("bytes", "bpe"):
                raise ConfigError(f"{self.name}: dataset {self.data!r} is not text")
            self._texts = {s: ds.text(s) for s in ("test", "val")}
        if split not in self._texts:
            raise ConfigError(f"{self.name}: no {split!r} text; have {', '.join(self._texts)}")
        return self._texts[split]

    def docs(self, split: str) -> list[Doc]:
        if split not in self._docs:
            self._docs[split] = passages(self._text(split), self.n_words, self.n_test, prefix=split)
            if not self._docs[split]:
                raise ConfigError(f"{self.name}: no passage of {self.n_words} words in the {split} split")
        return self._docs[split]
