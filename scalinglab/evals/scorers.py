"""Scorers: turn model outputs into a per-document 0/1 correctness. Pure Python (no torch).

Generation: ``exact_match``. Loglikelihood tasks: ``greedy`` (the harness's ``acc`` = ``is_greedy``).
Multiple choice, argmax over the choices of:

| scorer | score of choice c (log-probabilities in nats) | source |
|---|---|---|
| ``acc`` | ``LL(c | ctx)`` | harness ``acc`` |
| ``acc_per_token`` | ``LL(c | ctx) / n_tokens(c)`` | GPT-3 "per-token likelihood" |
| ``acc_norm`` | ``LL(c | ctx) / len(c)`` in characters of c without the delimiter | harness ``acc_norm`` |
| ``acc_bytes`` | ``LL(c | ctx) / len(c.encode())``, c without the delimiter | harness ``acc_bytes`` |
| ``acc_uncond`` | ``LL(c | ctx) - LL(c | answer_context)`` | GPT-3 ARC/RACE/OpenBookQA (``"Answer:"``) |
| ``acc_mutual_info`` | ``LL(c | ctx) - LL(c | "")`` | harness ``acc_mutual_info`` |
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from scalinglab.errors import ConfigError
from scalinglab.evals.lm import LogLik

MC_SCORERS = ("acc", "acc_per_token", "acc_norm", "acc_bytes", "acc_uncond", "acc_mutual_info")
SCORERS = ("exact_match", "greedy") + MC_SCORERS


def check_scorer(name: str, output_type: str) -> None:
    """Raise ConfigError when ``name`` is unknown or does not apply to ``output_type``."""
    allowed = {"generate_until": ("exact_match",), "loglikelihood": ("greedy",),
               "multiple_choice": MC_SCORERS}[output_type]
    if name not in allowed:
        raise ConfigError(f"scorer {name!r} does not apply to {output_type} tasks; "
                          f"allowed: {', '.join(allowed)}")


def exact_match(generation: str, target: str, *, ignore_case: bool = False,
                ignore_punctuation: bool = False) -> bool:
    """1 when the generation equals the target after stripping surrounding whitespace."""
    a, b = generation.strip(), target.strip()
    if ignore_case:
        a, b = a.lower(), b.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        a, b = a.translate(table), b.translate(table)
    return a == b


def needs_unconditional(scorer: str) -> bool:
    """Whether the scorer needs a second request per choice (the choice given an answer/empty context)."""
    return scorer in ("acc_uncond", "acc_mutual_info")


def choice_scores(scorer: str, choices: Sequence[str], lls: Sequence[LogLik],
                  uncond: Sequence[LogLik] | None = None) -> list[float]:
    """The per-choice score that the scorer maximises (see the module table). ``choices`` are the choice
    strings as the task gives them, *without* the target delimiter that precedes them when scored: the
    harness divides by ``len(doc_to_choice(doc)[i])`` (characters or UTF-8 bytes), not by the scored
    string."""
    if scorer not in MC_SCORERS:
        raise ConfigError(f"unknown multiple-choice scorer {scorer!r}; choose one of {', '.join(MC_SCORERS)}")
    ll = [x[0] for x in lls]
    if scorer == "acc":
        return ll
    if scorer == "acc_per_token":
        return [v / max(1, x.n_tokens) for v, x in zip(ll, lls, strict=True)]
    if scorer == "acc_norm":
        return [v / max(1, len(c)) for v, c in zip(ll, choices, strict=True)]
    if scorer == "acc_bytes":
        return [v / max(1, len(c.encode("utf-8"))) for v, c in zip(ll, choices, strict=True)]
    if uncond is None or len(uncond) != len(choices):
        raise ConfigError(f"scorer {scorer!r} needs one unconditional log-likelihood per choice")
    return [v - u[0] for v, u in zip(ll, uncond, strict=True)]


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value (the first one on ties)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))
