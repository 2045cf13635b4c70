"""The Slurm executor on a real single-node Slurm (munged, slurmctld, slurmd from Debian's packages, started
once by scripts/slurm_local.sh: conftest.py). Jobs go through sbatch; the study folder is the shared disk.

- a 3-run study gives the local executor's runs and fits; jobs are named after their runs, their logs are in
  the run folders, `study status` shows the job ids and Slurm's states;
- `scancel` of a job mid-run: that run is reported cancelled; `study run` again resubmits it and it resumes
  from its checkpoint, nothing lost or trained twice;
- a job that reaches its time limit (`timeout_min = 1`) checkpoints and requeues itself and the run finishes
  with the curve of an uninterrupted run; with `retries = 0` it is reported as stopped at its time limit;
- one run over 2 tasks (`tasks_per_node = 2`) trains with DDP (gloo) and gives one process's loss curve;
- nothing listens beyond loopback.

The two time-limit studies take a minute or two of (sleeping) wall time: they start with the first test of
this module and are checked by its last tests, so they overlap the others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from scalinglab.study.store import Store

from .conftest import (
    CLI,
    assert_loopback_only,
    assert_same_study,
    listening,
    start_cli,
    study,
    wait_cli,
    write_plan,
)

pytest.importorskip("torch")
pytest.importorskip("submitit")

SLURM = {"kind": "slurm", "threads_per_run": 1}
ONE = [{"n_layer": 1, "d_model": 16}]


def _status(out: Path) -> dict:
    p = subprocess.run(
        [CLI, "study", "status", str(out), "--json"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _worker(out: Path, rid: str) -> dict:
    return json.loads((out / "runs" / rid / "worker.json").read_text())


# ------------------------------------------------------------------------------------ time limits


def _replace_driver(entry: dict) -> None:
    """Once the requeue study's job runs: SIGKILL its driver (the job lives on in Slurm) and start another,
    which must wait for that job rather than submit a second one."""
    out, t0 = entry["out"], time.time()
    while (
        not list(out.glob("runs/*/worker.json")) and time.time() - t0 < 120 and entry["proc"].poll() is None
    ):
        time.sleep(0.2)
    first = entry["proc"]
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    entry["first"] = first
    entry["proc"] = start_cli(entry["plan"], out, log="cli2.log", SCALINGLAB_RUN_STEP_SLEEP="0.5")


@pytest.fixture(scope="session")
def time_limited(slurm_cluster, tmp_path_factory):
    """Two one-run studies whose jobs hit a 1-minute time limit. Slurm warns with USR2 5 s before it, give or
    take the 30 s of its time-limit checks: 25 to 55 s into the job. Each step sleeps 0.5 s, so the run needs
    55 s (requeue: retries = 3) or 75 s (report: retries = 0) of training: more than the first warning
    leaves. The requeue study's driver is killed once its job runs, and started again. Begun by the first
    test here; the tests that check them run last in the session (conftest.py), so that everything else
    runs meanwhile."""
    d = tmp_path_factory.mktemp("timelimit")
    out = {}
    for name, steps, retries in (("requeue", 110, 3), ("report", 150, 0)):
        ex = {**SLURM, "retries": retries, "slurm": {"timeout_min": 1, "slurm_signal_delay_s": 5}}
        plan = write_plan(d / f"{name}.toml", ex, shapes=ONE, tokens=steps * 8 * 16, laws=())
        p = start_cli(plan, d / name, SCALINGLAB_RUN_STEP_SLEEP="0.5")
        out[name] = {"plan": plan, "out": d / name, "proc": p}
    swap = threading.Thread(target=_replace_driver, args=(out["requeue"],), daemon=True)
    swap.start()
    out["requeue"]["swap"] = swap
    yield out
    swap.join(150)
    for e in out.values():  # not waited for (only some tests ran): stopped
        if e["proc"].poll() is None:
            os.killpg(e["proc"].pid, signal.SIGKILL)
            e["proc"].wait(10)


# ------------------------------------------------------------------------------------------ tests


def test_slurm_study_scancel_mid_run_then_rerun_matches_local(
    slurm_cluster, time_limited, local_baseline, tmp_path
):
    """A 3-run study through sbatch; one job is cancelled mid-run: reported so; `study run` again resubmits
    it, it resumes from its checkpoint, and the study ends with the local executor's runs and fits."""
    out = tmp_path / "s"
    plan = write_plan(tmp_path / "study.toml", {**SLURM, "slurm": {"timeout_min": 10}})
    # ~10 s a run, and the victim cancelled by step 16 of 64: >= 7 s left, more than Slurm's kill window
    # (submitit ignores SIGTERM; SIGKILL follows after KillWait): otherwise the run could finish first
    p = start_cli(plan, out, SCALINGLAB_RUN_STEP_SLEEP="0.15")
    victim, socks, t0 = None, set(), time.time()
    while victim is None:
        assert p.poll() is None, p.log_path.read_text()
        assert time.time() - t0 < 120, "no run reached a checkpoint"
        socks |= set(listening(slurm_cluster.pids()))
        for run in sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []:
            lines = (
                (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
            )
            step = json.loads(lines[-1])["step"] if lines else 0
            if (run / "worker.json").is_file() and (run / "ckpt.pt").is_file() and 8 <= step <= 16:
                victim = (run.name, _worker(out, run.name)["job_id"])
                slurm_cluster.run("scancel", victim[1])
                break
        time.sleep(0.05)
    log = wait_cli(p)
    store = Store(out)
    assert store.counts()["done"] == 2 and store.run(victim[0])["status"] == "failed", log
    err = store.run(victim[0])["error"]
    assert f"slurm job {victim[1]} CANCELLED" in err and "resumes it from its checkpoint" in err, err
    first = store.runs_frame().set_index("run_id")
    st = {j["run_id"]: j for j in _status(out)["jobs"]}  # the engine's ids and states, asked of Slurm
    assert {r: (j["engine"], j["job_id"]) for r, j in st.items()} == {
        r: ("slurm", x["job_id"]) for r, x in first.iterrows()
    }
    assert st[victim[0]]["state"] == "CANCELLED" and st[victim[0]]["status"] == "failed"
    names = dict(
        line.split(" ", 1)
        for line in slurm_cluster.run("squeue", "-h", "-t", "all", "-o", "%i %j").splitlines()
    )
    for rid, r in first.iterrows():  # each job says which run it is
        assert names[r["job_id"]] == f"s.{rid}.L{r['n_layer']}d{r['d_model']}"

    p = start_cli(plan, out)  # again: the cancelled run is resubmitted and continues from its checkpoint
    log = wait_cli(p)
    assert p.returncode == 0, log
    store = Store(out)
    assert_same_study(
        store, local_baseline
    )  # nothing lost, nothing twice, the local executor's losses and fits
    run = store.run(victim[0])
    assert run["attempts"] == 2 and run["resumed_from_step"] >= 8, log
    assert (
        run["job_id"] != victim[1]
        and _worker(out, victim[0])["resumed_from_step"] == run["resumed_from_step"]
    )
    for rid, r in store.runs_frame().set_index("run_id").iterrows():
        assert r["job_engine"] == "slurm" and r["job_state"] == "COMPLETED"
        w = _worker(out, rid)
        assert w["engine"] == "slurm" and w["job_id"] == r["job_id"] and w["pid"] != os.getpid()
        log = out / "runs" / rid / "slurm" / f"{r['job_id']}_0_log.out"  # submitit's logs, in the run folder
        assert "Job completed successfully" in log.read_text()
    assert (
        out / "runs" / victim[0] / "slurm" / f"{victim[1]}_0_log.out"
    ).is_file()  # the cancelled job's too
    assert {p for _, _, p in socks} & slurm_cluster.daemon_pids()  # slurmctld, slurmd (munged: unix socket)
    assert_loopback_only(sorted(socks))


def test_slurm_ddp_two_tasks_match_one_process(slurm_cluster, tmp_path):
    """One run, one job, 2 tasks (gloo over loopback): rank r takes rows 4r..4r+3 of every global batch of
    8; the reference is the same run in one process with two micro-batches of 4."""
    kw = dict(
        shapes=[{"n_layer": 2, "d_model": 32}],
        tokens=8 * 32 * 6,
        n_ctx=32,
        batch={"size": 8, "micro_size": 4},
        train={"log_every": 1, "eval_every": 3, "ckpt_every": 4, "noise_scale_every": 1},
        laws=(),
    )
    ref = study(
        write_plan(tmp_path / "one.toml", {"kind": "local", "threads_per_run": 1}, **kw), tmp_path / "one"
    )
    assert ref["runs"]["done"] == 1, ref["lines"]
    ex = {**SLURM, "slurm": {"tasks_per_node": 2, "timeout_min": 10}}
    out = tmp_path / "ddp"
    p = start_cli(write_plan(tmp_path / "ddp.toml", ex, **kw), out)
    socks = set()
    while p.poll() is None:  # what the job's processes listen on while it trains (TCPStore, gloo)
        socks |= set(listening(slurm_cluster.pids()))
        time.sleep(0.05)
    log = wait_cli(p)
    assert p.returncode == 0, log
    (rid,) = Store(out).run_ids()
    run = Store(out).run(rid)
    assert run["status"] == "done" and run["summary"]["world_size"] == 2, log
    assert _worker(out, rid)["tasks"] == 2

    def rows(d):
        return [json.loads(x) for x in (d / "runs" / rid / "metrics.jsonl").read_text().splitlines()]

    a, b = rows(tmp_path / "one"), rows(out)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b, strict=True):
        assert rb["tokens"] == ra["tokens"]
        for k in ("train_loss", "grad_norm"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (k, ra["step"])
        if ra["val_loss"] is not None:
            assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-5)
    python = [s for s in socks if s[2] not in slurm_cluster.daemon_pids()]
    assert python, "no socket of the DDP job was seen"
    assert_loopback_only(sorted(socks))


def test_slurm_time_limit_requeues_and_resumes(time_limited, tmp_path):
    """The job checkpoints at Slurm's warning and requeues itself; the run resumes and ends with the curve of
    an uninterrupted run. Its first driver died meanwhile: the second waited for the same job."""
    e = time_limited["requeue"]
    e["swap"].join(150)
    out, p = e["out"], e["proc"]
    log = wait_cli(p, timeout=400)
    assert p.returncode == 0 and e["first"].returncode != 0, log
    store = Store(out)
    (rid,) = store.run_ids()
    run = store.run(rid)
    assert run["status"] == "done" and run["attempts"] == 2, log  # two drivers claimed it ...
    assert f"{rid}: back to slurm job {run['job_id']}" in log  # ... and Slurm ran one job, requeued
    w = _worker(out, rid)
    assert w["restarts"] >= 1 and w["job_id"] == run["job_id"] and run["resumed_from_step"] > 0, w
    jobs = (out / "runs" / rid / "slurm" / f"{run['job_id']}_0_log.out").read_text()
    assert jobs.count("Starting with JobEnvironment") == w["restarts"] + 1  # every attempt's log, appended
    assert len(list((out / "runs" / rid / "slurm").glob("*_submitted.pkl"))) == 1
    # the curve of the same run trained without interruption (and without sleeping)
    ref_plan = write_plan(
        tmp_path / "ref.toml",
        {"kind": "local", "threads_per_run": 1},
        shapes=ONE,
        tokens=110 * 8 * 16,
        laws=(),
    )
    assert study(ref_plan, tmp_path / "ref")["runs"]["done"] == 1
    a = Store(tmp_path / "ref").metrics_frame()
    b = store.metrics_frame()
    assert list(a["step"]) == list(b["step"])  # every step once
    assert b["train_loss"].to_numpy() == pytest.approx(a["train_loss"].to_numpy(), rel=1e-6)


def test_slurm_time_limit_without_retries_is_reported(time_limited):
    """retries = 0: at the warning the run checkpoints and the job fails saying why; nothing is lost."""
    e = time_limited["report"]
    log = wait_cli(e["proc"], timeout=400)
    store = Store(e["out"])
    (rid,) = store.run_ids()
    run = store.run(rid)
    assert run["status"] == "failed" and run["job_state"] == "FAILED", log
    assert "TimeLimitError: slurm job" in run["error"] and "time limit" in run["error"], run["error"]
    assert "retries = 0" in run["error"] and "`study run` again resumes it" in run["error"]
    from scalinglab.study.executors import checkpoint_step

    step = checkpoint_step(e["out"] / "runs" / rid)  # checkpointed at the stop: no step after it is lost
    assert step is not None and f"at step {step} " in run["error"]
