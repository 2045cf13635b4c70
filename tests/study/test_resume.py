"""kill -9 during training and again during fitting, re-run: the same fits as an uninterrupted study, no run
lost or duplicated, the interrupted run resumed from its checkpoint; a diverged run is marked and left out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.study.store import Store

CLI = str(Path(sys.executable).parent / "scalinglab")

PLAN = """
name = "resume"
[data]
spec = "text:default"
n_ctx = 32
[model]
shapes = [{n_layer = 1, d_model = 16}, {n_layer = 1, d_model = 32}, {n_layer = 2, d_model = 32}]
head_dim = 16
[kaplan]
long_tokens = 40000
[batch]
size = 16
[lr]
value = 3e-3
[fit]
check = "warn"
laws = ["L(N)", "L(N,S)"]
[train]
eval_batches = 4
eval_every = 10
log_every = 5
ckpt_every = 10
# a learning rate that diverges within a few steps: marked, and left out of L(N)
[[runs]]
n_layer = 1
d_model = 16
tokens = 8000
lr = 1e4
role = "L(N)"
train = {grad_clip = 0}
"""


def _start(plan: Path, out: Path, **env: str) -> subprocess.Popen:
    e = {**os.environ, "SCALINGLAB_THREADS": "1", **env}
    return subprocess.Popen(
        [CLI, "study", "run", str(plan), "--out", str(out), "--no-report"],
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _kill(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)


def _wait(p: subprocess.Popen, cond, what: str, timeout: float = 120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = cond()
        if got:
            return got
        if p.poll() is not None:
            raise AssertionError(f"study exited before {what}:\n{p.stdout.read()}")
        time.sleep(0.05)
    _kill(p)
    raise AssertionError(f"timed out waiting for {what}")


def _training_with_checkpoint(study: Path):
    """A run folder mid-training: a checkpoint, no summary, at least 20 steps logged."""
    for d in sorted((study / "runs").glob("*")) if (study / "runs").is_dir() else []:
        if (
            (d / "ckpt.pt").is_file()
            and not (d / "summary.json").is_file()
            and (d / "metrics.jsonl").is_file()
        ):
            lines = (d / "metrics.jsonl").read_text().splitlines()
            if lines and json.loads(lines[-1])["step"] >= 20:
                return d.name
    return None


def _fitting_with_one_fit(study: Path):
    if not (study / "scalinglab.db").is_file():
        return None
    s = Store(study)
    try:
        return s.get_meta("phase") == "fitting" and len(s.fits()) == 1
    finally:
        s.close()


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return out


def _metrics(store: Store, rid: str) -> list[tuple]:
    m = store.metrics_frame(rid)
    return list(zip(m["step"], m["train_loss"].round(6), m["val_loss"].fillna(-1).round(6), strict=True))


@pytest.mark.slow
def test_kill9_during_training_and_fitting_then_resume(tmp_path):
    plan = tmp_path / "resume.toml"
    plan.write_text(PLAN)
    a, b = tmp_path / "interrupted", tmp_path / "reference"
    ref = _start(plan, b)  # the uninterrupted study, alongside (1 thread each on 2 cores)

    p = _start(plan, a)
    victim = _wait(p, lambda: _training_with_checkpoint(a), "a run mid-training with a checkpoint")
    _kill(p)
    s = Store(a)
    assert s.run(victim)["status"] == "running" and s.counts()["running"] == 0  # its owner is dead
    s.close()

    p = _start(plan, a, SCALINGLAB_STUDY_FIT_SLEEP="3")
    _wait(p, lambda: _fitting_with_one_fit(a), "the fitting phase with one fit stored")
    _kill(p)
    s = Store(a)
    first_fit = s.fits()[0]
    s.close()

    out = _finish(_start(plan, a))
    assert "study finished" in out and "resuming" not in out  # nothing left to train
    ref_out = _finish(ref)
    assert "diverged" in ref_out

    sa, sb = Store(a), Store(b)
    ra, rb = sa.runs_frame().set_index("run_id"), sb.runs_frame().set_index("run_id")
    assert sorted(ra.index) == sorted(rb.index) and len(ra) == 4  # none lost, none duplicated
    assert sorted(ra["status"]) == ["diverged", "done", "done", "done"]
    assert (
        ra.loc[victim, "attempts"] == 2 and ra.loc[victim, "resumed_from_step"] >= 10
    )  # from its checkpoint
    for rid in ra.index:  # exact resume: the interrupted study logged the same steps and losses
        assert _metrics(sa, rid) == _metrics(sb, rid), rid
    fa, fb = {f["law"]: f for f in sa.fits()}, {f["law"]: f for f in sb.fits()}
    assert set(fa) == set(fb) == {"L(N)", "L(N,S)"}
    for law in fa:
        assert fa[law]["data_hash"] == fb[law]["data_hash"]
        for k, v in fb[law]["result"]["params"].items():
            assert fa[law]["result"]["params"][k] == pytest.approx(v, rel=1e-6), (law, k)
    kept = fa[first_fit["law"]]
    assert kept["created_at"] == first_fit["created_at"]  # fitted before the kill: not redone
    assert fa["L(N)"]["result"]["n_points"] == 3  # the diverged run is left out

    st = json.loads(
        subprocess.run(
            [CLI, "study", "status", str(a), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert st["runs"] == {"done": 3, "failed": 0, "pending": 0, "running": 0, "diverged": 1}
    fit_json = json.loads(
        subprocess.run(
            [CLI, "study", "fit", str(a), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    row = next(r for r in fit_json["fits"] if r["law"] == "L(N)")
    assert set(row) >= {"law", "params", "converged", "r2_log", "backtest"}
    assert set(row["backtest"]) >= {"rel_error", "covered"}
