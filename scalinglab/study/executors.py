"""Executors: where a study's runs train. One interface, three back-ends, no scheduler of our own.

    ex = make_executor(plan.executor, study_dir, cores=os.cpu_count())
    handle = ex.submit(study_dir, run_id)   # .done(), .result() (a dict, or raises), .job_id, .state()
    ex.shutdown()

- `local`, workers = 0: runs one after another in a thread of this process (killing the study kills them).
- `local`, workers = k: a process pool of k (spawned; each worker dies with its parent via PR_SET_PDEATHSIG).
- `ray`: one Ray task per run, named after the run, its output in `runs/<run_id>/ray.log`. `address`
  None: a private Ray instance bound to 127.0.0.1; "auto": the cluster `ray start` began on this machine
  (or $RAY_ADDRESS); "host:port" or "ray://host:port": that cluster. A task whose worker process dies is
  re-run (`retries` times) and resumes from the run's checkpoint. Needs `pip install "scalinglab[ray]"`.
- `slurm`: one sbatch job per run through submitit, named `<study>.<run_id>.L<n_layer>d<d_model>`, its
  script, logs and result in `runs/<run_id>/slurm/`. At the warning signal before the time limit
  (submitit's USR2) the run checkpoints at its next step and the job requeues itself (`retries` times);
  past that the run is reported as stopped at its time limit. `tasks_per_node = k` trains the run with DDP
  over k tasks (gloo on CPU, NCCL on GPUs). A job an earlier, dead driver left queued or running is waited
  for (`attach`), not submitted twice. `slurm_local`: submitit's LocalExecutor (no cluster).

Every back-end calls the same worker, `run_one(study_dir, run_id)`: it reads `runs/<run_id>/spec.json`
(written by the runner), takes an exclusive lock on the run folder (so two workers never train one run at
once), records who runs it in `runs/<run_id>/worker.json` (pid, host, the engine's job id) and calls the
trainer with `resume=True`: an interrupted run continues from its checkpoint. Workers never write the
SQLite store (it may live on a network file system); the runner ingests `metrics.jsonl` and the summary.
Test hook: `SCALINGLAB_RUN_STEP_SLEEP=<s>` sleeps after every training step (a slow run without CPU load).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import getpass
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scalinglab.errors import ConfigError, DivergedError
from scalinglab.io import atomic_write_json

_STOP = threading.Event()  # shutdown (Ctrl-C) or the engine's stop signal: checkpoint at the next step
WORKER_FILE = "worker.json"


class Handle(Protocol):
    job_id: str | None  # the engine's id of the job or task (None for local runs)

    def done(self) -> bool: ...

    def result(self) -> dict[str, Any]: ...

    def state(self) -> str | None: ...


class TimeLimitError(RuntimeError):
    """A Slurm job was told to stop (time limit near, or preemption) and had no requeue left."""


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


def _should_stop(step: int) -> bool:
    sleep = os.environ.get("SCALINGLAB_RUN_STEP_SLEEP", "")
    if sleep:  # test hook: a run that takes wall time without taking CPU
        time.sleep(float(sleep))
    return _STOP.is_set()


def run_one(study_dir: str, run_id: str, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one run of a study (picklable; runs in any executor). ``job``: the engine's facts about this
    attempt (engine, job_id, rank, ...), recorded in `worker.json`. Returns {"run_id", "summary": the
    trainer's summary dict, "resumed_from_step": int | None}. In a DDP job only rank 0 takes the lock."""
    job = job or {}
    path = run_dir(study_dir, run_id)
    spec = json.loads((path / "spec.json").read_text())
    threads = spec.get("threads")
    if threads:
        os.environ["SCALINGLAB_THREADS"] = str(threads)
    rank = int(job.get("rank", 0))
    with _run_lock(path) if rank == 0 else contextlib.nullcontext():
        summary_file = path / "summary.json"
        if summary_file.is_file():  # finished (perhaps by an orphaned worker) while we waited for the lock
            return {
                "run_id": run_id,
                "summary": json.loads(summary_file.read_text()),
                "resumed_from_step": None,
            }
        resumed = checkpoint_step(path)
        if rank == 0:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            atomic_write_json(path / WORKER_FILE, {**info, "resumed_from_step": resumed, **job})
        from scalinglab.train.config import TrainConfig
        from scalinglab.train.trainer import train

        cfg = TrainConfig.make(**spec["config"])
        try:
            summary = train(cfg, path, resume=True, should_stop=_should_stop)
        except DivergedError as e:
            summary = {"status": "diverged", "error": str(e)}
    return {"run_id": run_id, "summary": summary, "resumed_from_step": resumed}


def job_name(study_dir: str | Path, run_id: str) -> str:
    """The engine's name for a run's job: `<study folder>.<run_id>.L<n_layer>d<d_model>`."""
    name = f"{Path(study_dir).resolve().name}.{run_id}"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        c = json.loads((run_dir(study_dir, run_id) / "spec.json").read_text())["config"]
        name += f".L{int(c['n_layer'])}d{int(c['d_model'])}"
    return name


# ------------------------------------------------------------------------------------------ local


def _die_with_parent(threads: int) -> None:
    """Process-pool initializer: SIGKILL this worker when its parent dies (Linux), set torch threads."""
    if threads:
        os.environ["SCALINGLAB_THREADS"] = str(threads)
    if sys.platform.startswith("linux"):
        import ctypes

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


def _ray_task(study_dir: str, run_id: str) -> dict[str, Any]:
    """The body of a run's Ray task: `run_one` with the task's id recorded, its Python output (prints,
    warnings) appended to `runs/<run_id>/ray.log`."""
    import ray

    ctx = ray.get_runtime_context()
    job = {"engine": "ray", "job_id": ctx.get_task_id(), "node": ctx.get_node_id()}
    path = run_dir(study_dir, run_id)
    with open(path / "ray.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"ray task {job['job_id']} on {socket.gethostname()} (pid {os.getpid()}) at {time.ctime()}")
        return run_one(study_dir, run_id, job)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def _host_port(address: str) -> tuple[str, int] | None:
    a = address.split("://", 1)[-1].rstrip("/")
    host, _, port = a.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def _ray_target(address: str | None) -> tuple[str, bool]:
    """(the address for ray.init, whether the cluster is this machine's loopback); a clear ConfigError when
    no Ray cluster answers there. None becomes "local": a new private instance."""
    if address is None or address == "local":
        return "local", True
    if address == "auto":
        try:  # the lookup ray.init("auto") does: $RAY_ADDRESS, then the cluster `ray start` began
            from ray._private.services import get_ray_address_from_environment
        except ImportError:  # a Ray without this (private) helper: let ray.init look
            return "auto", False
        try:
            address = str(get_ray_address_from_environment("auto", None))
        except ConnectionError:
            raise ConfigError(
                "executor.address = 'auto': no running Ray cluster found on this machine; start one with "
                "`ray start --head` (see docs/cluster.md) or give its address"
            ) from None
    hp = _host_port(address)
    if hp is None:
        raise ConfigError(f"executor.address = {address!r}: expected 'auto', 'host:port' or 'ray://host:port'")
    try:
        socket.create_connection(hp, timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"executor.address = {address!r}: no Ray cluster answers there ({e.strerror or e}); start one "
            "with `ray start --head` or fix the address"
        ) from None
    return address, _is_loopback(hp[0])


@contextlib.contextmanager
def _ray_loopback_mode(on: bool):
    """Keep Ray on 127.0.0.1: by default it swaps a loopback address for the machine's network address (and
    binds its servers there). Ray's switch for that is read from the environment by the Ray processes that
    ray.init starts (set while it runs) and from a constant in this one (set for good)."""
    if not on:
        yield
        return
    key, old = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ[key] = "0"
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class _RayHandle:
    def __init__(self, ray: Any, ref: Any, path: Path, retries: int):
        self.ray, self.ref, self.path, self.retries = ray, ref, path, retries
        self.job_id = ref.task_id().hex()
        self.t0 = time.time()

    def done(self) -> bool:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        return bool(ready)

    def state(self) -> str:
        if self.done():
            return "FINISHED"
        from scalinglab.study.store import pid_alive

        with contextlib.suppress(OSError, ValueError):
            w = json.loads((self.path / WORKER_FILE).read_text())
            if w.get("job_id") == self.job_id and w["started"] >= self.t0 - 1:
                alive = w.get("host") != socket.gethostname() or pid_alive(w.get("pid"))
                return f"RUNNING (pid {w['pid']} on {w['host']})" if alive else "RETRYING"
        return "PENDING"

    def result(self) -> dict[str, Any]:
        exc = self.ray.exceptions
        try:
            return self.ray.get(self.ref)
        except exc.RayTaskError as e:  # the run raised: that exception, not Ray's wrapper
            cause = getattr(e, "cause", None)
            if not isinstance(cause, BaseException):
                cause = RuntimeError(str(e).strip().splitlines()[-1])
            raise cause from None
        except exc.RayError as e:  # the worker died more often than `retries` allows, the node went away, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(f"ray task {self.job_id} (retried {self.retries} time(s)): {first}") from None


class RayExecutor:
    """One Ray task per run, each asking for `threads_per_run` CPUs (and `gpus_per_run` GPUs); a task whose
    worker dies is retried `retries` times."""

    def __init__(
        self,
        address: str | None = None,
        threads_per_run: int = 1,
        workers: int = 0,
        retries: int = 2,
        cores: int | None = None,
        gpus_per_run: float = 0,
    ):
        try:
            import ray
        except ImportError:
            raise ConfigError('executor.kind = "ray" needs Ray: pip install "scalinglab[ray]"') from None
        self.ray, self.retries, self.owns = ray, retries, False
        if not ray.is_initialized():
            target, loopback = _ray_target(address)
            kw: dict[str, Any] = {"address": target}
            if target == "local":
                kw["num_cpus"] = cores or os.cpu_count()
            try:
                with _ray_loopback_mode(loopback):
                    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"executor.address = {address!r}: Ray could not connect: {msg}") from None
            self.owns = True
        opts = {"num_cpus": max(1, threads_per_run), "max_retries": retries, "retry_exceptions": False}
        if gpus_per_run:
            opts["num_gpus"] = gpus_per_run
        self.remote = ray.remote(**opts)(_ray_task)
        self.capacity = workers or 10**9

    def submit(self, study_dir: str | Path, run_id: str) -> Handle:
        name = job_name(study_dir, run_id)
        ref = self.remote.options(name=name).remote(str(study_dir), run_id)
        return _RayHandle(self.ray, ref, run_dir(study_dir, run_id), self.retries)

    def shutdown(self) -> None:
        if self.owns and self.ray.is_initialized():  # our private instance stops; a cluster is only left
            self.ray.shutdown()


# ------------------------------------------------------------------------------------------ slurm

# Slurm job states after which a job will not run again (a requeued job passes REQUEUED -> PENDING)
SLURM_FINAL = {
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
    "PREEMPTED", "REVOKED", "GONE",
}


def slurm_states(job_ids: list[str], timeout_s: float = 30.0) -> dict[str, str] | None:
    """The state of each Slurm job: squeue (jobs the controller still holds), then sacct for those it has
    forgotten (where accounting runs); "GONE" when neither knows it. None when squeue does not answer."""
    user = getpass.getuser()
    try:
        p = subprocess.run(
            ["squeue", "-h", "-t", "all", "-u", user, "-o", "%i|%T"],
            capture_output=True, text=True, timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    seen = dict(line.split("|", 1) for line in p.stdout.split() if "|" in line)
    out = {j: seen[j] for j in job_ids if j in seen}
    missing = [j for j in job_ids if j not in out]
    if missing:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            q = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)],
                capture_output=True, text=True, timeout=timeout_s,
            )
            if q.returncode == 0:
                for line in q.stdout.splitlines():
                    jid, _, st = line.partition("|")
                    if jid in missing and st:
                        out[jid] = st.split()[0]  # "CANCELLED by 0" -> CANCELLED
        out.update({j: "GONE" for j in missing if j not in out})
    return out


class _SlurmQueue:
    """The states of the jobs a driver watches, from one squeue call per `every_s`. A job the controller has
    never listed is "GONE" only after `grace_s` (a queue that lags must not fail a job just submitted)."""

    def __init__(self, every_s: float = 2.0, grace_s: float = 60.0):
        self.every_s, self.grace_s, self.t = every_s, grace_s, 0.0
        self.ids: set[str] = set()
        self.states: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.seen: set[str] = set()

    def state(self, job_id: str) -> str | None:
        self.ids.add(job_id)
        self.since.setdefault(job_id, time.time())
        if time.time() - self.t > self.every_s:
            got = slurm_states(sorted(self.ids))
            if got is not None:  # None: the controller did not answer; keep what we knew
                self.states.update(got)
                self.seen |= {j for j, s in got.items() if s != "GONE"}
                self.ids -= {j for j, s in got.items() if s in SLURM_FINAL and s != "GONE"}
            self.t = time.time()
        st = self.states.get(job_id)
        if st == "GONE" and job_id not in self.seen and time.time() - self.since[job_id] < self.grace_s:
            return None
        return st


class _SlurmHandle:
    """A submitit job (rank 0's result stands for the job) with Slurm's view of it."""

    def __init__(self, job: Any, queue: _SlurmQueue | None, retries: int):
        self.job, self.queue, self.retries = job, queue, retries
        self.main = job.task(0)
        self.job_id = str(job.job_id)

    def _result_file(self) -> Path:
        return Path(self.main.paths.result_pickle)

    def state(self) -> str | None:
        if self._result_file().exists():  # the job's function returned or raised: that is its end
            from submitit.core.utils import pickle_load

            with contextlib.suppress(Exception):
                return "COMPLETED" if pickle_load(self._result_file())[0] == "success" else "FAILED"
        if self.queue is None:  # submitit's LocalExecutor
            return self.job.state
        return self.queue.state(self.job_id) or "PENDING"

    def done(self) -> bool:
        if self._result_file().exists():
            return True
        if self.queue is None:
            return self.job.done()
        return self.state() in SLURM_FINAL

    def result(self) -> dict[str, Any]:
        from submitit.core.utils import pickle_load

        f = self._result_file()
        for _ in range(30):  # the job finished: its result may still be on its way through the file system
            if f.exists():
                break
            time.sleep(0.5)
        log = Path(self.main.paths.stderr)
        if not f.exists():
            st = self.state()
            why = {
                "TIMEOUT": "killed at its time limit (timeout_min) before it could checkpoint and requeue",
                "CANCELLED": "cancelled (scancel)",
                "OUT_OF_MEMORY": "killed for memory (raise mem_gb)",
                "NODE_FAIL": "its node failed",
                "GONE": "left the queue without a result",
            }.get(st or "", "ended without a result")
            raise RuntimeError(
                f"slurm job {self.job_id} {st}: {why}; `study run` again resumes it from its checkpoint "
                f"(log: {log})"
            )
        outcome, payload = pickle_load(f)
        if outcome == "success":
            return payload
        last = [x for x in str(payload).strip().splitlines() if x.strip()]  # "pkg.mod.SomeError: message"
        name, _, msg = (last[-1] if last else "").partition(": ")
        name = name.rsplit(".", 1)[-1]
        if not (msg and name.isidentifier()):
            name, msg = "RuntimeError", f"slurm job {self.job_id} failed: {last[-1] if last else '?'}"
        raise type(name, (RuntimeError,), {})(f"{msg} (log: {log})")  # the job's error, by its own name


def _init_distributed(path: Path, job_id: str | None, restarts: int) -> bool:
    """In a Slurm job of several tasks: the variables torch.distributed reads (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT: submitit's helper). On one node the process group is formed here, through a file in the
    run folder rather than a TCP store (which would listen on every interface), with gloo on loopback; on
    several nodes the trainer forms it from those variables. True when this call formed it."""
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if os.environ.get("SLURM_JOB_NUM_NODES", "1") != "1":
        return False
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch
    import torch.distributed as dist

    store = path / f".ddp-{job_id}-{restarts}"  # one per attempt: a FileStore file is never reused
    dist.init_process_group(
        "nccl" if torch.cuda.is_available() else "gloo",
        init_method=store.resolve().as_uri(),
        rank=env.rank,
        world_size=env.world_size,
    )
    return True


def slurm_job(study_dir: str, run_id: str, retries: int = 2) -> dict[str, Any]:
    """The Slurm job of one run (submitit runs it in every task of the job). On USR2 (the warning before the
    time limit, or preemption) the run checkpoints at its next step; rank 0 then requeues the job while
    `retries` allows (the next attempt resumes from that checkpoint), else the job fails with a
    TimeLimitError saying so (the run resumes on the next `study run`)."""
    env = os.environ
    tasks = int(env.get("SLURM_NTASKS", "1") or 1)
    rank = int(env.get("SLURM_PROCID", "0") or 0)
    job_id = env.get("SLURM_JOB_ID")
    restarts = int(env.get("SLURM_RESTART_COUNT", "0") or 0)
    formed = tasks > 1 and _init_distributed(run_dir(study_dir, run_id), job_id, restarts)
    signalled = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        signalled.set()
        _STOP.set()

    previous = signal.signal(signal.SIGUSR2, on_signal)
    try:
        job = {"engine": "slurm", "job_id": job_id, "restarts": restarts, "rank": rank, "tasks": tasks}
        res = run_one(study_dir, run_id, job)
    finally:
        signal.signal(signal.SIGUSR2, previous)
        _STOP.clear()
        if formed:
            import torch.distributed as dist

            dist.destroy_process_group()
            if rank == 0:  # the trainer's last barrier is behind every rank: the file has served
                with contextlib.suppress(OSError):
                    (run_dir(study_dir, run_id) / f".ddp-{job_id}-{restarts}").unlink()
    summary = res.get("summary") or {}
    if not (signalled.is_set() and summary.get("status") == "stopped"):
        return res
    step = summary.get("steps")
    why = f"after {restarts} requeue(s), as many as retries = {retries} allows"
    if job_id and restarts < retries:
        if rank != 0:
            sys.exit(-1)  # rank 0 requeues the whole job
        p = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            sys.exit(-1)  # no result: the requeued job runs this again and resumes from the checkpoint
        why = f"and could not requeue ({(p.stderr or p.stdout).strip()[:200]})"
    raise TimeLimitError(
        f"slurm job {job_id} was told to stop (time limit or preemption) at step {step} {why}; its "
        "checkpoint is kept: `study run` again resumes it"
    )


class SlurmExecutor:
    """One Slurm job per run through submitit; `local=True` uses submitit's LocalExecutor (no cluster)."""

    def __init__(
        self,
        study_dir: str | Path,
        params: dict[str, Any] | None = None,
        local: bool = False,
        threads_per_run: int = 1,
        workers: int = 0,
        retries: int = 2,
    ):
        self.local, self.retries = local, retries
        if local:
            self.params: dict[str, Any] = {"timeout_min": int((params or {}).get("timeout_min", 60))}
        else:
            p: dict[str, Any] = {"cpus_per_task": max(1, threads_per_run), "timeout_min": 60 * 24}
            p.update(params or {})
            extra = p.get("slurm_additional_parameters", p.pop("additional_parameters", None)) or {}
            p["slurm_additional_parameters"] = {"requeue": True, **extra}  # requeue-able, also by the job
            self.params = p
        self._executor(run_dir(study_dir, "check"), "check")  # bad parameters: refused now (nothing written)
        self.queue = None if local else _SlurmQueue()
        self.threads = threads_per_run
        self.capacity = workers or 10**9

    def _executor(self, folder: Path, name: str) -> Any:
        import submitit

        if self.local:
            ex = submitit.LocalExecutor(folder=str(folder))
            ex.update_parameters(**self.params)
            return ex
        try:
            ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        except RuntimeError as e:  # no srun: not on a Slurm cluster
            raise ConfigError(f"executor slurm: {e} (slurm_local = true runs the jobs here)") from None
        try:
            ex.update_parameters(**self.params, name=name)
        except (NameError, TypeError, ValueError) as e:  # submitit names the unknown parameter
            msg = str(e).splitlines()[0][:300]
            raise ConfigError(f"[executor.slurm] parameters refused by submitit: {msg}") from None
        return ex

    def attach(self, study_dir: str | Path, run_id: str, job_id: str) -> Handle | None:
        """The run's job an earlier driver submitted, while Slurm still queues or runs it (None: it ended).
        A driver that died leaves its jobs running: the next `study run` waits for them, not for new ones."""
        if self.queue is None or self.queue.state(job_id) in (None, *SLURM_FINAL):
            return None
        import submitit

        job = submitit.SlurmJob(folder=run_dir(study_dir, run_id) / "slurm", job_id=job_id)
        return _SlurmHandle(job, self.queue, self.retries)

    def submit(self, study_dir: str | Path, run_id: str) -> Handle:
        ex = self._executor(run_dir(study_dir, run_id) / "slurm", job_name(study_dir, run_id))
        job = ex.submit(slurm_job, str(study_dir), run_id, self.retries)
        return _SlurmHandle(job, self.queue, self.retries)

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
    """An ``[executor] kind``: how to build it from the plan's table, the study folder, the threads per run
    and the machine's cores, and whether ``workers = 0`` means no limit on runs at once (a cluster queues
    them), not one."""

    make: Callable[[Any, Path, int, int | None], Executor]
    unbounded: bool


EXECUTORS: dict[str, ExecutorKind] = {  # the plan's executor.kind names one of these
    "local": ExecutorKind(lambda cfg, d, threads, cores: LocalExecutor(cfg.workers, threads),
                          unbounded=False),
    "ray": ExecutorKind(
        lambda cfg, d, threads, cores: RayExecutor(
            cfg.ray_address, threads, cfg.workers, cfg.retries, cores, cfg.gpus_per_run
        ),
        unbounded=True,
    ),
    "slurm": ExecutorKind(
        lambda cfg, d, threads, cores: SlurmExecutor(
            d, cfg.slurm, cfg.slurm_local, threads, cfg.workers, cfg.retries
        ),
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
    return _kind(cfg).make(cfg, Path(study_dir), threads_per_run(cfg, cores), cores)
