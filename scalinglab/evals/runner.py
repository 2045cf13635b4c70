"""Run a task on a model for several shot counts K and few-shot seeds; one ``EvalResult`` per K.

For K > 0 the task is evaluated once per seed (different demonstrations), and the result reports the mean
and the sample standard deviation of accuracy over seeds; K = 0 has no randomness and runs once. All
requests of all seeds go to the model in one call, so the engine batches across documents and seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scalinglab.errors import ConfigError
from scalinglab.evals import scorers
from scalinglab.evals.contamination import NgramIndex
from scalinglab.evals.lm import LM
from scalinglab.evals.prompts import build_context, sample_shots
from scalinglab.evals.tasks import Task, get_task


@dataclass
class EvalResult:
    """Accuracy of one (model, task, preset, scorer, K). ``acc`` is the mean over seeds (a fraction in
    [0, 1]); ``acc_sd`` its sample sd over seeds (0 for one seed); ``acc_se`` the binomial standard error
    over documents, sqrt(p (1 - p) / n_docs). ``task_loss``: the negative log-likelihood of the correct
    continuation (target delimiter + answer) in nats per UTF-8 byte, summed over documents and seeds and
    divided by their bytes (OLMo's task bits-per-byte x ln 2; step 1 of the downstream law)."""

    task: str
    preset: str
    scorer: str
    output_type: str
    shots: int
    seeds: list[int]
    acc_per_seed: list[float]
    acc: float
    acc_sd: float
    acc_se: float
    n_docs: int
    task_version: int
    model: dict[str, Any] = field(default_factory=dict)
    contamination: float | None = None
    task_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _requests(task: Task, preset_name: str | None, scorer: str, docs: list[dict], pool: list[dict],
              k: int, seed: int) -> tuple[str, list, list]:
    """(request type, requests, per-doc index plan) for one seed."""
    p = task.preset(preset_name)
    kind = p.output_type
    reqs: list = []
    plan: list = []
    for doc in docs:
        ctx = build_context(p, doc, sample_shots(pool, k, seed=seed, task=task.name, doc=doc))
        if kind == "generate_until":
            plan.append((len(reqs), p.target(doc), p.until))
            reqs.append((ctx, p.until, p.max_tokens))
        elif kind == "loglikelihood":
            plan.append(len(reqs))
            reqs.append((ctx, p.target_delimiter + p.target(doc)))
        else:
            choices = p.choices(doc)  # as the task gives them: the length normalisations divide by these
            conts = [p.target_delimiter + c for c in choices]  # as scored: after the target delimiter
            start = len(reqs)
            reqs.extend((ctx, c) for c in conts)
            if scorers.needs_unconditional(scorer):
                uctx = p.answer_context if scorer == "acc_uncond" else ""
                reqs.extend((uctx, c) for c in conts)
            plan.append((start, choices, p.gold(doc)))
    return kind, reqs, plan


def _gold_requests(task: Task, preset_name: str | None, docs: list[dict], pool: list[dict], k: int,
                   seed: int) -> list[tuple[str, str]]:
    """Per document, (context, target delimiter + correct answer): what the task loss scores."""
    p = task.preset(preset_name)
    out = []
    for doc in docs:
        ctx = build_context(p, doc, sample_shots(pool, k, seed=seed, task=task.name, doc=doc))
        answer = p.choices(doc)[p.gold(doc)] if p.output_type == "multiple_choice" else p.target(doc)
        out.append((ctx, p.target_delimiter + answer))
    return out


def _task_loss(lm: LM, kind: str, outputs: list, plans: list, gold: list[tuple[str, str]]) -> float | None:
    """Nats per byte of the correct continuations (see ``EvalResult``): read off the scored requests where
    they are the gold continuation (loglikelihood, multiple choice), else one extra loglikelihood call."""
    if kind == "generate_until":
        lls = [ll.logprob for ll in lm.loglikelihood(gold)]
    else:
        lls = []
        for offset, plan in plans:
            for item in plan:
                if kind == "loglikelihood":
                    lls.append(outputs[item + offset].logprob)
                else:
                    start, _choices, g = item
                    lls.append(outputs[start + offset + g].logprob)
    n_bytes = sum(len(cont.encode("utf-8")) for _, cont in gold)
    return -math.fsum(lls) / n_bytes if n_bytes else None


def _score(kind: str, scorer: str, outputs: list, plan: list) -> list[bool]:
    if kind == "generate_until":
        # cut at the first stop string here too: not every backend stops by itself
        return [scorers.exact_match(_cut(outputs[i], until), target) for i, target, until in plan]
    if kind == "loglikelihood":
        return [outputs[i].is_greedy for i in plan]
    out = []
    for start, choices, gold in plan:
        n = len(choices)
        lls = outputs[start : start + n]
        unc = outputs[start + n : start + 2 * n] if scorers.needs_unconditional(scorer) else None
        out.append(scorers.argmax(scorers.choice_scores(scorer, choices, lls, unc)) == gold)
    return out


def evaluate(lm: LM, task: str | Task, *, shots: Sequence[int] = (0,), seeds: int | Sequence[int] = 1,
             preset: str | None = None, scorer: str | None = None, limit: int | None = None,
             task_kwargs: dict[str, Any] | None = None,
             contamination: NgramIndex | None = None) -> list[EvalResult]:
    """Evaluate ``lm`` on ``task`` for each K in ``shots``; ``seeds`` is a count (0..n-1) or a list.

    ``limit`` evaluates the first ``limit`` documents of the eval split (the same documents for every K).
    ``contamination``: an ``NgramIndex`` of the training corpus; each result then reports the fraction of
    evaluated documents with a 13-gram overlap.
    """
    t = get_task(task, **(task_kwargs or {})) if isinstance(task, str) else task
    p = t.preset(preset)
    scorer = scorer or p.scorer
    scorers.check_scorer(scorer, p.output_type)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("at least one few-shot seed is needed")
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ConfigError(f"limit={limit!r}: the number of documents to evaluate must be >= 1 (None = all)")
    docs = t.docs(t.eval_split)[:limit] if limit else t.docs(t.eval_split)
    pool = t.docs(t.fewshot_split)
    dirty = None
    if contamination is not None:
        dirty = contamination.fraction(t.decontamination_text(d, preset) for d in docs)
    results = []
    for k in shots:
        if k < 0:
            raise ConfigError(f"shots must be >= 0, got {k}")
        ks = seed_list if k > 0 else seed_list[:1]
        all_reqs: list = []
        plans = []
        gold: list = []
        kind = p.output_type
        for s in ks:
            kind, reqs, plan = _requests(t, preset, scorer, docs, pool, k, s)
            plans.append((len(all_reqs), plan))
            all_reqs.extend(reqs)
            gold.extend(_gold_requests(t, preset, docs, pool, k, s))
        if kind == "generate_until":
            outputs = lm.generate_until(all_reqs)
        else:
            outputs = lm.loglikelihood(all_reqs)
        accs = []
        for offset, plan in plans:
            shifted = _shift(plan, offset, kind)
            correct = _score(kind, scorer, outputs, shifted)
            accs.append(sum(correct) / max(1, len(correct)))
        mean = sum(accs) / len(accs)
        sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
        se = math.sqrt(mean * (1 - mean) / max(1, len(docs)))
        tl = _task_loss(lm, kind, outputs, plans, gold)
        results.append(EvalResult(
            task=t.name, preset=p.name, scorer=scorer, output_type=kind, shots=int(k), seeds=list(ks),
            acc_per_seed=accs, acc=mean, acc_sd=sd, acc_se=se, n_docs=len(docs), task_version=t.version,
            model=dict(getattr(lm, "identity", {}) or {}), contamination=dirty, task_loss=tl,
        ))
    return results


def _shift(plan: list, offset: int, kind: str) -> list:
    if kind == "generate_until":
        return [(i + offset, tgt, until) for i, tgt, until in plan]
    if kind == "loglikelihood":
        return [i + offset for i in plan]
    return [(s + offset, c, g) for s, c, g in plan]


def _cut(text: str, until: Sequence[str]) -> str:
    hits = [text.find(s) for s in until if s and s in text]
    return text[: min(hits)] if hits else text
