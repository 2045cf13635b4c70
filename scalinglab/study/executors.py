"""Executors: where a study's runs train. One interface, three back-ends, no scheduler of our own.

    ex = make_executor(plan.executor, cores=os.cpu_count())
    handle = ex.submit(study_dir, run_id)   # -> object with .done() and .result() (a dict, or raises)
    ex.shutdown()

- `local`, workers = 0: runs one after another in a thread of this process (killing the study kills them).
- `local`, workers = k: a process pool of k (spawned; each worker dies with its parent via PR_SET_PDEATHSIG).
- `ray`: one Ray task per run (`ray_address` None = a local Ray instance); needs `pip install ray`.
- `slurm`: one Slurm job per run through submitit (`slurm_local`: submitit's LocalExecutor).

Every back-end calls the same picklable worker, `run_one(study_dir, run_id)`: it reads
`runs/<run_id>/spec.json` (written by the runner), takes an exclusive lock on the run folder (so two
workers never train one run at once), and calls the trainer with `resume=True`: an interrupted run
continues from its checkpoint. Workers never write the SQLite store (it may live on a network file
system); the runner ingests `metrics.jsonl` and the summary from the run folder.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scalinglab.errors import ConfigError, DivergedError

_STOP = threading.Event()  # in-process runs: set on shutdown (Ctrl-C) so the trainer checkpoints and returns


class Handle(Protocol):
    def done(self) -> bool: ...

    def result(self) -> dict[str, Any]: ...


class Executor(Protocol):
    """What the runner needs from a back-end: ``submit`` one run (``run_one`` somewhere), ``capacity`` runs
    in flight at once, ``shutdown``. A new back-end is a class with these and an ``EXECUTORS`` entry."""

    capacity: int

    def submit(self, study_dir: str | Path, run_id: str) -> Handle: ...

    def shutdown(self) -> None: ...


def run_dir(study_dir: str | Path, run_id: str) -> Path:
    return Path(study_dir) / "runs" / run_id


@contextlib.contextmanager
def _run_lock(path: Path):
    """An exclusive flock on `path/.lock`, released when the process dies (blocks while another holds it)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint in a run folder, or None when there is none."""
    from scalinglab.train import checkpoint as ckio

    ckpt = path / ckio.CKPT_NAME
    if not ckpt.is_file():
        return None
    try:
        state = ckio.load_checkpoint(ckpt, map_location="cpu")
    except Exception:  # an unreadable checkpoint: the trainer decides what to do with it
        return None
    step = state.get("step") if isinstance(state, dict) else None
    return int(step) if step is not None else None


def run_one(study_dir: str, run_id: str) -> dict[str, Any]:
    """Train one run of a study (picklable; runs in any executor). Returns
    {"run_id", "summary": the trainer's summary dict, "resumed_from_step": int | None}."""
    path = run_dir(study_dir, run_id)
    spec = json.loads((path / "spec.json").read_text())
    threads = spec.get("threads")
    if threads:
        os.environ["SCALINGLAB_THREADS"] = str(threads)
    with _run_lock(path):
        summary_file = path / "summary.json"
        if summary_file.is_file():  # finished (perhaps by an orphaned worker) while we waited for the lock
            return {
                "run_id": run_id,
                "summary": json.loads(summary_file.read_text()),
                "resumed_from_step": None,
            }
        resumed = checkpoint_step(path)
        from scalinglab.train.config import TrainConfig
        from scalinglab.train.trainer import train

        cfg = TrainConfig.make(**spec["config"])
        try:
            summary = train(cfg, path, resume=True, should_stop=lambda step: _STOP.is_set())
        except DivergedError as e:
            summary = {"status": "diverged", "error": str(e)}
    return {"run_id": run_id, "summary": summary, "resumed_from_step": resumed}


# ------------------------------------------------------------------------------------------ local


def _die_with_parent(threads: int) -> None:
    """Process-pool initializer: SIGKILL this worker when its parent dies (Linux), set torch threads."""
    if threads:
        os.environ["SCALINGLAB_THREADS"] = str(threads)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # parent already gone
            os._exit(1)


class LocalExecutor:
    """workers = 0: sequential in a thread of this process; workers = k: a spawned process pool of k."""

    def __init__(self, workers: int = 0, threads_per_run: int = 0):
        self.workers = workers
        self.capacity = max(1, workers)
        if workers == 0:
            if threads_per_run:
                os.environ["SCALINGLAB_THREADS"] = str(threads_per_run)
            self.pool: cf.Executor = cf.ThreadPoolExecutor(1, thread_name_prefix="scalinglab-run")
        else:
            import multiprocessing as mp

            self.pool = cf.ProcessPoolExecutor(
                workers,
                mp_context=mp.get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(threads_per_run,),
            )

    def submit(self, study_dir: str | Path, run_id: str) -> Handle:
        return self.pool.submit(run_one, str(study_dir), run_id)

    def shutdown(self) -> None:
        if self.workers == 0:  # the run in this process's thread checkpoints at its next step and returns
            _STOP.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            _STOP.clear()
        else:
            self.pool.shutdown(wait=False, cancel_futures=True)


# -------------------------------------------------------------------------------------------- ray


class RayExecutor:
    """One Ray task per run, each asking for `threads_per_run` CPUs (tested on a local Ray instance)."""

    def __init__(self, address: str | None = None, threads_per_run: int = 1, workers: int = 0):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor.kind = 'ray' needs Ray: pip install ray") from None
        self.ray = ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kw)
        self.remote = ray.remote(num_cpus=max(1, threads_per_run), max_retries=0)(run_one)
        self.capacity = workers or 10**9

    def submit(self, study_dir: str | Path, run_id: str) -> Handle:
        return self.remote.remote(str(study_dir), run_id).future()

    def shutdown(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ slurm


class _SubmititHandle:
    def __init__(self, job: Any):
        self.job = job

    def done(self) -> bool:
        return self.job.done()

    def result(self) -> dict[str, Any]:
        return self.job.result()


class SlurmExecutor:
    """One Slurm job per run through submitit; `local=True` uses submitit's LocalExecutor (no cluster)."""

    def __init__(
        self,
        folder: str | Path,
        params: dict[str, Any] | None = None,
        local: bool = False,
        threads_per_run: int = 1,
        workers: int = 0,
    ):
        import submitit

        folder = Path(folder)
        if local:
            self.ex = submitit.LocalExecutor(folder=str(folder))
            self.ex.update_parameters(timeout_min=int((params or {}).get("timeout_min", 60)))
        else:
            try:
                self.ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
            except RuntimeError as e:  # no srun: not on a Slurm cluster
                raise ConfigError(f"executor slurm: {e} (slurm_local = true runs the jobs here)") from None
            p = {"cpus_per_task": max(1, threads_per_run), "timeout_min": 60 * 24}
            p.update(params or {})
            try:
                self.ex.update_parameters(**p)
            except (NameError, TypeError, ValueError) as e:  # submitit names the unknown parameter
                msg = str(e).splitlines()[0][:300]
                raise ConfigError(f"[executor.slurm] parameters refused by submitit: {msg}") from None
        self.threads = threads_per_run
        self.capacity = workers or 10**9

    def submit(self, study_dir: str | Path, run_id: str) -> Handle:
        return _SubmititHandle(self.ex.submit(run_one, str(study_dir), run_id))

    def shutdown(self) -> None:
        pass


def threads_per_run(cfg: Any, cores: int | None = None) -> int:
    """Torch threads per run: the plan's `threads_per_run`, else $SCALINGLAB_THREADS for in-process runs, else
    the machine's cores shared among the workers."""
    if cfg.threads_per_run:
        return int(cfg.threads_per_run)
    env = os.environ.get("SCALINGLAB_THREADS", "")
    if cfg.kind == "local" and cfg.workers == 0 and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (cores or os.cpu_count() or 1) // max(1, cfg.workers))


@dataclass(frozen=True)
class ExecutorKind:
    """An ``[executor] kind``: how to build it from the plan's table, the study folder and the threads per
    run, and whether ``workers = 0`` means no limit on runs at once (a cluster queues them), not one."""

    make: Callable[[Any, Path, int], Executor]
    unbounded: bool


EXECUTORS: dict[str, ExecutorKind] = {  # the plan's executor.kind names one of these
    "local": ExecutorKind(lambda cfg, d, threads: LocalExecutor(cfg.workers, threads), unbounded=False),
    "ray": ExecutorKind(lambda cfg, d, threads: RayExecutor(cfg.ray_address, threads, cfg.workers),
                        unbounded=True),
    "slurm": ExecutorKind(
        lambda cfg, d, threads: SlurmExecutor(d / "slurm", cfg.slurm, cfg.slurm_local, threads, cfg.workers),
        unbounded=True,
    ),
}


def _kind(cfg: Any) -> ExecutorKind:
    if cfg.kind not in EXECUTORS:
        allowed = ", ".join(repr(k) for k in EXECUTORS)
        raise ConfigError(f"executor.kind = {cfg.kind!r}: allowed {allowed}")
    return EXECUTORS[cfg.kind]


def capacity(cfg: Any) -> int:
    """Runs a plan's executor trains at once: its workers; with 0, no limit for a cluster back-end and one
    (in-process) for local."""
    return cfg.workers or (10**9 if _kind(cfg).unbounded else 1)


def make_executor(cfg: Any, study_dir: str | Path, cores: int | None = None) -> Executor:
    """Build the executor a plan's `[executor]` table asks for."""
    return _kind(cfg).make(cfg, Path(study_dir), threads_per_run(cfg, cores))
