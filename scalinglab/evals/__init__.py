"""Few-shot (in-context) evaluation, GPT-3 style, with the lm-evaluation-harness request contract.

- ``lm``: the ``LM`` protocol (``loglikelihood``, ``loglikelihood_rolling``, ``generate_until``) and the
  batched ``TokenLM`` engine; backends ``hf.HFLM`` (local ``transformers`` models), ``native.ScalingLabLM``.
- ``tasks``: the registry (``get_task``, ``list_tasks``, ``register``); ``prompts``: presets and keyed
  few-shot draws; ``scorers``; ``runner.evaluate``; ``cache.CachingLM``; ``contamination.NgramIndex``;
  ``export.export_hf``; ``scalinglab.study.evals.evaluate_study`` (a study's runs).

Importing this package does not import torch or transformers.
"""

from scalinglab.evals.lm import LM, LogLik, TokenLM
from scalinglab.evals.loading import load_lm
from scalinglab.evals.prompts import Preset
from scalinglab.evals.runner import EvalResult, evaluate
from scalinglab.evals.tasks import Task, get_task, list_tasks, register

__all__ = ["LM", "EvalResult", "LogLik", "Preset", "Task", "TokenLM", "evaluate", "get_task", "list_tasks",
           "load_lm", "register"]
