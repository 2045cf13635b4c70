"""One interface, every back-end: the same tiny run trained in-process, in a process pool and through
submitit's local executor gives the same (deterministic) losses in the store. Ray and a real Slurm:
test_ray.py, test_slurm.py."""

from __future__ import annotations

import os

import pytest

from scalinglab.study.plan import parse_plan
from scalinglab.study.runner import data_identity, execute, register
from scalinglab.study.store import Store

pytest.importorskip("torch")


def _plan(executor: dict, seeds=(0,)):
    return parse_plan(
        {
            "name": "ex",
            "data": {"spec": "text:default", "n_ctx": 16},
            "model": {"shapes": [{"n_layer": 1, "d_model": 16}], "head_dim": 16},
            "tokens": {"absolute": [2048]},
            "batch": {"size": 8},
            "seeds": {"seeds": list(seeds)},
            "train": {"eval_batches": 2, "log_every": 4, "noise_scale": False},
            "executor": executor,
        }
    )


def _study(tmp_path, executor: dict, seeds=(0,)) -> dict[int, float]:
    from scalinglab.study.plan import make_runs

    plan = _plan(executor, seeds)
    vocab, _ = data_identity(plan.data.spec)
    store = Store(tmp_path)
    ids = register(store, tmp_path, plan, make_runs(plan, vocab), vocab)
    lines: list[str] = []
    outcome = execute(store, tmp_path, plan, ids, lines.append)
    runs = store.runs_frame()
    assert outcome == {"done": len(seeds), "diverged": 0, "failed": 0, "pending": 0}, (
        lines,
        list(runs["error"]),
    )
    assert len(store.metrics_frame()) >= 4 * len(seeds)  # the metrics rows were ingested
    return dict(zip(runs["seed"], runs["final_val_loss"], strict=True))


@pytest.fixture(scope="module")
def inline(tmp_path_factory) -> dict[int, float]:
    os.environ.setdefault("SCALINGLAB_THREADS", "1")
    return _study(tmp_path_factory.mktemp("inline"), {"kind": "local", "workers": 0, "threads_per_run": 1})


def test_process_pool_runs_in_parallel_and_matches_inline(tmp_path, inline):
    got = _study(tmp_path, {"kind": "local", "workers": 2, "threads_per_run": 1}, seeds=(0, 1))
    assert got[0] == pytest.approx(inline[0], rel=1e-6) and got[1] != got[0]


def test_submitit_local_executor(tmp_path, inline):
    pytest.importorskip("submitit")
    got = _study(tmp_path, {"kind": "slurm", "slurm_local": True, "threads_per_run": 1})
    assert got[0] == pytest.approx(inline[0], rel=1e-6)
    assert list((tmp_path / "runs").glob("*/slurm/*_log.out"))  # submitit's job logs, in the run folder


def test_slurm_configuration_errors_are_clear(tmp_path, monkeypatch):
    """Not on a cluster, or a misspelt submitit parameter: one ConfigError naming it (no submitit traceback).
    A stub `srun` on PATH stands in for a cluster, so that submitit reads the parameters."""
    pytest.importorskip("submitit")
    from scalinglab.errors import ConfigError
    from scalinglab.study.executors import make_executor

    def plan(**slurm):
        return parse_plan({"model": {"shapes": [{"n_layer": 1, "d_model": 16}]},
                           "tokens": {"absolute": [1e4]}, "executor": {"kind": "slurm", "slurm": slurm}})

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no srun anywhere
    with pytest.raises(ConfigError, match="srun"):
        make_executor(plan().executor, tmp_path / "a")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ConfigError, match="'partion'"):
        make_executor(plan(partion="gpu").executor, tmp_path / "b")


def test_export_into_a_file_is_an_error(tmp_path):
    from scalinglab.errors import InputError

    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match="is a file"):
        Store(tmp_path / "s").export(tmp_path / "afile", "csv")


def test_a_new_executor_is_one_registry_entry(tmp_path, monkeypatch):
    """The plan's executor.kind, the runner's slot count and make_executor all read EXECUTORS."""
    from scalinglab.study import executors
    from scalinglab.study.plan import parse_plan

    made = []

    class Inline:
        capacity = 3

        def __init__(self, cfg, study_dir, threads, cores):
            made.append((cfg.kind, study_dir, threads))

        def submit(self, study_dir, run_id):
            raise NotImplementedError

        def shutdown(self):
            pass

    monkeypatch.setitem(executors.EXECUTORS, "inline", executors.ExecutorKind(Inline, unbounded=True))
    plan = parse_plan({"model": {"shapes": [{"n_layer": 1, "d_model": 16}]}, "tokens": {"absolute": [1e4]},
                       "executor": {"kind": "inline", "threads_per_run": 2}})
    ex = executors.make_executor(plan.executor, tmp_path)
    assert isinstance(ex, Inline) and made == [("inline", tmp_path, 2)]
    assert executors.capacity(plan.executor) == 10**9  # workers = 0 on an unbounded back-end
    assert executors.capacity(plan.executor.model_copy(update={"workers": 4})) == 4
    local = parse_plan({"model": {"shapes": [{"n_layer": 1, "d_model": 16}]}, "tokens": {"absolute": [1e4]}})
    assert executors.capacity(local.executor) == 1
