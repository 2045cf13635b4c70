"""The Ray executor on real Ray: a private instance of the driver (no address) and a cluster begun by
`ray start --head` on 127.0.0.1 (once per session: conftest.py).

A 3-run study through Ray gives the local executor's runs and fits; a Ray worker killed (by its pid) while it
trains is retried by Ray and resumes from its checkpoint, nothing lost or trained twice; `address = "auto"`
finds the cluster `ray start` began; a wrong address is one clear error; nothing listens beyond loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from scalinglab.study.store import Store

from .conftest import (
    CLI,
    assert_loopback_only,
    assert_same_study,
    free_port,
    listening,
    process_tree,
    start_cli,
    study,
    wait_cli,
    write_plan,
)

pytest.importorskip("torch")


def test_ray_study_matches_local_executor(ray_installed, local_baseline, tmp_path):
    """No address: a private Ray instance of the driver, bound to 127.0.0.1, stopped when the study ends."""
    import ray

    socks = []

    def echo(line: str) -> None:  # while the instance is up: what this process and its children listen on
        if " ray job " in line and not socks:
            socks.extend(listening(process_tree(os.getpid())))

    ex = {"kind": "ray", "threads_per_run": 1}
    res = study(write_plan(tmp_path / "study.toml", ex), tmp_path / "s", echo=echo)
    assert res["runs"]["done"] == 3, res["lines"]
    assert not ray.is_initialized()  # the private instance is gone with the executor
    store = Store(tmp_path / "s")
    assert_same_study(store, local_baseline)
    runs = store.runs_frame().set_index("run_id")
    assert set(runs["job_engine"]) == {"ray"} and set(runs["job_state"]) == {"FINISHED"}
    for rid, r in runs.iterrows():
        w = json.loads((tmp_path / "s" / "runs" / rid / "worker.json").read_text())
        assert w["engine"] == "ray" and w["job_id"] == r["job_id"] and w["pid"] != os.getpid()
        assert f"ray job {r['job_id']} (s.{rid}.L{r['n_layer']}d{r['d_model']})" in " ".join(res["lines"])
    assert len(socks) >= 3  # GCS, raylet, this driver's core worker: there is something to check
    assert_loopback_only(socks)


def _last_step(run: os.PathLike) -> int:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def test_ray_worker_killed_mid_run_is_retried_from_its_checkpoint(ray_cluster, local_baseline, tmp_path):
    """The driver is `scalinglab study run` with address = "auto" (it finds the cluster itself); a worker is
    SIGKILLed once its run has a checkpoint; Ray re-runs the task, which resumes from that checkpoint."""
    out = tmp_path / "s"
    plan = write_plan(tmp_path / "study.toml", {"kind": "ray", "address": "auto", "threads_per_run": 1})
    env = dict(os.environ)
    for k in (
        "RAY_ADDRESS",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    ):  # the executor must find and reach it alone
        env.pop(k, None)
    p = start_cli(plan, out, env=env)
    victim, socks, t0 = None, [], time.time()
    while victim is None:
        assert p.poll() is None, p.log_path.read_text()
        assert time.time() - t0 < 120, "no run reached a checkpoint"
        for run in sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []:
            w = run / "worker.json"
            if w.is_file() and (run / "ckpt.pt").is_file() and not (run / "summary.json").is_file():
                if 8 <= _last_step(run) <= 40:  # of 64 steps: well inside the run
                    victim = (run.name, json.loads(w.read_text())["pid"])
                    socks = listening(ray_cluster.pids() | process_tree(p.pid))
                    os.kill(victim[1], signal.SIGKILL)
                    break
        time.sleep(0.02)
    log = wait_cli(p)
    assert p.returncode == 0, log
    store = Store(out)
    assert_same_study(store, local_baseline)  # nothing lost, nothing twice, the same losses and fits
    run = store.run(victim[0])
    assert run["resumed_from_step"] and run["resumed_from_step"] >= 8, log
    assert run["attempts"] == 1  # Ray retried it; the driver never had to resubmit
    assert json.loads((out / "runs" / victim[0] / "worker.json").read_text())["pid"] != victim[1]
    assert "will be retried" in log  # Ray's own word on it
    assert_loopback_only(socks)


def test_ray_wrong_address_is_one_clear_error(ray_installed, tmp_path):
    port = free_port()  # nothing listens there
    plan = write_plan(tmp_path / "study.toml", {"kind": "ray", "address": f"127.0.0.1:{port}"})
    t0 = time.time()
    p = subprocess.run(
        [CLI, "study", "run", str(plan), "--out", str(tmp_path / "s"), "--no-report"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert (
        len(err) == 1 and f"executor.address = '127.0.0.1:{port}': no Ray cluster answers there" in err[0]
    ), err
    assert time.time() - t0 < 60  # not Ray's minute of retries


def test_ray_malformed_address_is_refused():
    from scalinglab.errors import ConfigError
    from scalinglab.study.executors import _ray_target

    with pytest.raises(ConfigError, match="expected 'auto', 'host:port' or 'ray://host:port'"):
        _ray_target("nonsense")
    assert _ray_target(None) == ("local", True)
