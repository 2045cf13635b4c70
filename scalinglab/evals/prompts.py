"""Prompt presets and few-shot context assembly.

A prompt is ``description + K x (text(shot) + target_delimiter + target(shot) + fewshot_delimiter)`` then
``text(doc)`` (the harness's layout; GPT-3's is the same with its own delimiters). The K demonstrations of a
document are drawn from the task's few-shot split with a generator seeded by ``(seed, task, doc id)``, so a
document's prompt does not depend on which other documents are evaluated, or in which order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalinglab.errors import ConfigError

Doc = dict[str, Any]


@dataclass(frozen=True)
class Preset:
    """How a task's documents become requests.

    ``output_type`` is ``generate_until`` (scored by exact match of the greedy generation),
    ``loglikelihood`` (scored by whether the target is the greedy continuation) or ``multiple_choice``.
    ``answer_context`` is the denominator prompt of the ``acc_uncond`` scorer (GPT-3: ``"Answer:"``).
    """

    name: str
    text: Callable[[Doc], str]
    target: Callable[[Doc], str]
    output_type: str = "generate_until"
    scorer: str = "exact_match"
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    until: tuple[str, ...] = ("\n",)
    max_tokens: int = 16
    choices: Callable[[Doc], list[str]] | None = None
    gold: Callable[[Doc], int] | None = None
    answer_context: str = "Answer:"
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def demo(self, doc: Doc) -> str:
        """One solved demonstration: text + delimiter + correct target."""
        if self.output_type == "multiple_choice":
            assert self.choices is not None and self.gold is not None
            answer = self.choices(doc)[self.gold(doc)]
        else:
            answer = self.target(doc)
        return self.text(doc) + self.target_delimiter + answer


def doc_seed(seed: int, task: str, doc_id: Any) -> int:
    """A 64-bit seed that depends only on (seed, task name, document id)."""
    digest = hashlib.sha256(f"{seed}|{task}|{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_shots(pool: Sequence[Doc], k: int, *, seed: int, task: str, doc: Doc) -> list[Doc]:
    """K demonstrations from ``pool`` for ``doc``, never the document itself (matched by ``id``)."""
    if k == 0:
        return []
    if len(pool) < k + 1:
        raise ConfigError(f"task {task}: {k} shots requested but the few-shot split has {len(pool)} docs")
    rng = random.Random(doc_seed(seed, task, doc["id"]))
    picked = [pool[i] for i in rng.sample(range(len(pool)), k + 1)]
    return [d for d in picked if d["id"] != doc["id"]][:k]


def build_context(preset: Preset, doc: Doc, shots: Sequence[Doc]) -> str:
    """The full prompt for ``doc`` after the given demonstrations (ends before the target delimiter)."""
    parts = [preset.description]
    for s in shots:
        parts.append(preset.demo(s) + preset.fewshot_delimiter)
    parts.append(preset.text(doc))
    return "".join(parts)
