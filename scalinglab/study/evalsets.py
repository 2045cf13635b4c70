"""A study's evaluation sets: the plan's `[eval]` table and getting every run's results into the store.

Each finished run has, in the store (`eval_sets` and `position_loss` tables): its final validation loss by
context position (set `val`, the same tokens as its `final_val_loss`) and its loss (nats/token; bits per byte
for text) on every set of `[eval] sets`, with loss by position too. The trainer computes them at the end of
a run (`scalinglab.train.evaluate`) and puts them in its summary; `collect` copies them into the store and,
for a set the plan gained after a run finished (or a run older than these records), evaluates the run's final
checkpoint. Runs trained elsewhere simply lack them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, field_validator

from scalinglab.study.store import Store

VAL = "val"  # the set name of a run's own validation split


class EvalPlan(BaseModel):
    """`[eval]`: ``sets`` = extra evaluation sets, every run is evaluated on each (Kaplan 2020 Fig. 8):
    ``text:SOURCE[,split=all|train|val|test]`` (a bundled corpus such as ``text:xz-docs``, a file, a folder, a
    glob; encoded with the run's own tokenizer) or ``file:PATH`` (one text file, or ``.npy`` token ids)."""

    model_config = ConfigDict(extra="forbid")
    sets: list[str] = []

    @field_validator("sets")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        from scalinglab.data.evalsets import parse_eval_set
        from scalinglab.errors import ConfigError

        for spec in v:
            try:
                parse_eval_set(spec)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        if len(set(v)) != len(v) or VAL in v:
            raise ValueError(f"eval sets must be distinct and not named {VAL!r}: {v}")
        return v


def check_sets(sets: list[str], train_spec: str) -> None:
    """Refuse (ConfigError) a set that would evaluate on the training documents (see data.evalsets)."""
    from scalinglab.data.evalsets import check_eval_set

    for spec in sets:
        check_eval_set(spec, train_spec)


def collect(
    store: Store, study_dir, ids: list[str], sets: list[str], echo: Callable[[str], None] = print
) -> int:
    """Put every done run's `val` positions and ``sets`` results into the store: from its summary where the
    trainer recorded them, else by evaluating its checkpoint. Returns how many runs were evaluated afresh."""
    from scalinglab.study.executors import run_dir

    fresh = 0
    for rid in ids:
        run = store.run(rid)
        if run["status"] != "done":
            continue
        have = store.eval_set_names(rid)
        want = [VAL, *sets]
        if all(s in have for s in want):
            continue
        summ = run["summary"] or {}
        results = _from_summary(summ)
        missing = [s for s in want if s not in results]
        if missing:
            d = run_dir(study_dir, rid)
            if not (d / "ckpt.pt").is_file():
                echo(f"eval sets: run {rid} has no checkpoint to evaluate {', '.join(missing)} on")
            else:
                try:
                    results.update(_evaluate(d, [s for s in missing if s != VAL]))
                    fresh += 1
                except Exception as e:  # one run's evaluation never stops the study
                    echo(f"eval sets: run {rid} could not be evaluated ({type(e).__name__}: {e})")
        for name, res in results.items():
            if name in want and name not in have:
                store.put_eval_set(rid, name, res)
    if fresh:
        echo(f"eval sets: evaluated {fresh} finished run(s) from their checkpoints")
    return fresh


def _from_summary(summ: dict) -> dict[str, dict]:
    out = {name: dict(r) for name, r in (summ.get("eval_sets") or {}).items()}
    if summ.get("val_loss_by_position"):
        out[VAL] = {"loss": summ.get("final_val_loss"), "bpb": summ.get("final_val_bpb"),
                    "tokens": int(sum(summ.get("val_tokens_by_position") or [])),
                    "loss_by_position": summ["val_loss_by_position"],
                    "tokens_by_position": summ.get("val_tokens_by_position")}
    return out


def _evaluate(run_dir, sets: list[str]) -> dict[str, dict]:
    from scalinglab.train.evaluate import evaluate_run

    ev = evaluate_run(run_dir, sets)
    summ = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return _from_summary({**summ, **ev})
