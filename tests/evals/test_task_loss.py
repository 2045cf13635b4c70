"""The task loss of a few-shot result: -log p(correct continuation) per byte, for every kind of task."""

from __future__ import annotations

import math

import pytest

from scalinglab.evals.prompts import build_context
from scalinglab.evals.runner import evaluate
from scalinglab.evals.tasks import get_task


@pytest.mark.parametrize(
    "task,preset", [("arithmetic.2d+", "gpt3"), ("arithmetic.2d+", "lmeval"), ("analogy.generated", None)]
)
def test_task_loss_is_nats_per_byte_of_the_correct_answer(hf_lm, task, preset):
    r = evaluate(hf_lm, task, shots=[0], preset=preset, limit=6)[0]
    t = get_task(task)
    p = t.preset(preset)
    reqs = []
    for doc in t.docs(t.eval_split)[:6]:
        answer = p.choices(doc)[p.gold(doc)] if p.output_type == "multiple_choice" else p.target(doc)
        reqs.append((build_context(p, doc, []), p.target_delimiter + answer))
    nats = -math.fsum(ll.logprob for ll in hf_lm.loglikelihood(reqs))
    # (rel 1e-6: float32 logits differ slightly with what else is in the batch)
    assert r.task_loss == pytest.approx(nats / sum(len(c.encode()) for _, c in reqs), rel=1e-6)
    assert r.task_loss > 0 and r.to_dict()["task_loss"] == r.task_loss


def test_task_loss_averages_over_seeds(hf_lm):
    one = evaluate(hf_lm, "arithmetic.2d+", shots=[1], seeds=[0], limit=4)[0]
    two = evaluate(hf_lm, "arithmetic.2d+", shots=[1], seeds=[0, 1], limit=4)[0]
    other = evaluate(hf_lm, "arithmetic.2d+", shots=[1], seeds=[1], limit=4)[0]
    # equal byte counts per seed (same documents and answers): the pooled value is the mean of the two
    assert two.task_loss == pytest.approx((one.task_loss + other.task_loss) / 2, rel=1e-9)
