"""Fuzzed few-shot task loading: task names (families, wildcards, lists), K values, seeds, presets, scorers,
limits and task options (sizes, seeds, the text of ``lambada.corpus``) either evaluate or raise the project's
documented error (ConfigError / InputError: one line at the CLI); never another exception. The model is a
deterministic stand-in (no torch): what is fuzzed is the loading of tasks and the building of requests.

Found by these (fixed): an option a task does not take was a TypeError; a count that is not an integer
(``n_test="x"``) a ValueError; and ``n_test = 10**9`` would have generated problems for hours."""

from __future__ import annotations

import contextlib
import io
import os
import sys

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from scalinglab.errors import ScalingLabError
from scalinglab.evals.lm import LogLik
from scalinglab.evals.runner import evaluate
from scalinglab.evals.scorers import MC_SCORERS
from scalinglab.evals.tasks import expand, list_tasks

SETTINGS = settings(max_examples=int(os.environ.get("SCALINGLAB_FUZZ_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TASKS = list_tasks()
FAMILIES = sorted({t.split(".")[0] for t in TASKS})


class FakeLM:
    """Answers every request deterministically from its text (no model)."""

    identity = {"name": "fake"}

    def loglikelihood(self, requests):
        return [LogLik(-float(len(c) % 7), len(ctx) % 2 == 0, 1) for ctx, c in requests]

    def generate_until(self, requests):
        return [ctx[-4:] for ctx, *_ in requests]


names = st.one_of(
    st.sampled_from(TASKS), st.sampled_from(FAMILIES), st.sampled_from([f + ".*" for f in FAMILIES]),
    st.sampled_from(["", ",", "arithmetic,,words", " Arithmetic.2D+ ", "*", ".*", "nope", "arithmetic.",
                     "lambada", "words.*,analogy"]),
    st.text(max_size=12),
)
options = st.dictionaries(
    st.sampled_from(["n_test", "n_train", "data_seed", "rules", "min_len", "n_words", "bogus"]),
    st.one_of(st.integers(-3, 40),
              st.sampled_from([0, 1, 2, 10**9, "paper", "released", "x", None, 2.5, True])),
    max_size=3,
)
texts = st.one_of(st.none(), st.dictionaries(st.sampled_from(["test", "val", "train"]), st.text(max_size=400)
                                             | st.sampled_from(["word " * 200 + "house.", "a. " * 100]),
                                             max_size=2))


@SETTINGS
@given(task=names, shots=st.lists(st.integers(-2, 12) | st.sampled_from([10**6]), min_size=1, max_size=3),
       seeds=st.integers(-1, 3) | st.lists(st.integers(-5, 2**40), max_size=2),
       preset=st.none() | st.sampled_from(["gpt3", "lmeval", "nope", ""]),
       scorer=st.none() | st.sampled_from(list(MC_SCORERS) + ["greedy", "exact_match", "nope"]),
       limit=st.none() | st.integers(-1, 6) | st.sampled_from([True, 2.5, 0]), opts=options, text=texts)
@example(task="arithmetic.2d+", shots=[10**6], seeds=1, preset=None, scorer=None, limit=2, opts={}, text=None)
@example(task="lambada.corpus", shots=[0], seeds=1, preset=None, scorer=None, limit=None, opts={},
         text={"test": "", "val": ""})
def test_any_task_request(task, shots, seeds, preset, scorer, limit, opts, text) -> None:
    try:
        for name in expand(task):
            kw = dict(opts)
            if name == "lambada.corpus":
                kw = {k: v for k, v in kw.items() if k in ("n_words", "n_test")}
                kw["texts"] = text or {"test": "the house. " * 60, "val": "a dog. " * 60}
            kw.setdefault("n_test", 8)  # small tasks: the fuzz is about loading, not about size
            if name != "lambada.corpus":
                kw.setdefault("n_train", 40)
            for r in evaluate(FakeLM(), name, shots=shots, seeds=seeds, preset=preset, scorer=scorer,
                              limit=limit, task_kwargs=kw):
                assert 0.0 <= r.acc <= 1.0
        event("evaluated")
    except ScalingLabError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(str(e))
        event(type(e).__name__)


@SETTINGS
@given(task=names, shots=st.text(max_size=10) | st.sampled_from(["0,1,10", "-1", "1,,2", "1e3", " 3 "]))
def test_cli_eval_arguments_give_one_line(task: str, shots: str) -> None:
    """`scalinglab eval` on a folder that is no model: its --task and --shots are read first; whatever they
    hold, the command ends with one `error:` line."""
    from scalinglab.cli._app import main

    err = io.StringIO()
    old = sys.argv
    sys.argv = ["scalinglab", "eval", "/nonexistent/model", f"--task={task}", f"--shots={shots}"]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code
    finally:
        sys.argv = old
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err.getvalue())


def test_a_good_request_evaluates() -> None:
    """The fuzz must not pass by refusing everything."""
    res = evaluate(FakeLM(), "arithmetic.2d+", shots=[0, 1], task_kwargs={"n_test": 5, "n_train": 20})
    assert [r.shots for r in res] == [0, 1] and all(r.n_docs == 5 for r in res)
