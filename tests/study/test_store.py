"""The study store: schema, idempotent inserts, resume semantics, two writers at once, export."""

from __future__ import annotations

import multiprocessing as mp
import os

import pandas as pd
import pytest

from scalinglab.errors import InputError
from scalinglab.study.store import Store


def _cfg(i: int) -> dict:
    return {"n_layer": 1, "d_model": 16 + i, "tokens": 1000 * (i + 1), "seed": 0, "batch_size": 4}


def _counts(i: int) -> dict:
    n = 12 * (16 + i) ** 2
    return {"params": {"kaplan": n, "total": n + 256 * (16 + i)}, "flops_per_token": {"6n": 6.0 * n}}


def _writer(path: str, tag: int, n: int) -> None:
    s = Store(path)
    for i in range(n):
        s.add_runs([(f"r{tag}-{i}", _cfg(i), ["grid"], _counts(i))])
        s.add_metrics(
            f"r{tag}-{i}", [{"step": k, "tokens": 10 * k, "train_loss": 5.0 - 0.01 * k} for k in range(5)]
        )
        s.add_eval(f"r{tag}-{i}", {"task": "t", "shots": 0, "value": 0.1 * i})
    s.close()


def test_runs_are_idempotent_and_roles_merge(tmp_path):
    s = Store(tmp_path)
    assert s.add_runs([("a", _cfg(0), ["grid"], _counts(0))]) == 1
    assert s.add_runs([("a", _cfg(0), ["L(N)"], _counts(0))]) == 0
    run = s.run("a")
    assert run["roles"] == ["L(N)", "grid"] and run["status"] == "pending"
    assert run["n_kaplan"] == 12 * 16**2 and run["flops_6n"] == pytest.approx(6 * 12 * 16**2 * 1000)
    with pytest.raises(InputError, match="not in the store"):
        s.run("nope")


def test_metrics_reingest_replaces_not_duplicates(tmp_path):
    s = Store(tmp_path)
    s.add_runs([("a", _cfg(0), ["grid"], _counts(0))])
    s.add_metrics("a", [{"step": k, "train_loss": 3.0, "gns_b_simple_tokens": 100.0} for k in range(10)])
    s.add_metrics("a", [{"step": k, "train_loss": 2.0, "val_loss": 2.5, "custom": 7} for k in range(5, 15)])
    m = s.metrics_frame("a")
    assert list(m["step"]) == list(range(15))
    assert (m.loc[m.step >= 5, "train_loss"] == 2.0).all() and (m.loc[m.step < 5, "train_loss"] == 3.0).all()
    assert '"custom": 7' in m.loc[m.step == 5, "extra"].iloc[0]
    assert list(s.noise_frame()["step"]) == list(range(5))  # replaced rows without gns drop their noise row


def test_interrupted_running_run_goes_back_to_pending(tmp_path):
    s = Store(tmp_path)
    s.add_runs([("a", _cfg(0), ["grid"], _counts(0)), ("b", _cfg(1), ["grid"], _counts(1))])
    p = mp.get_context("fork").Process(target=lambda: None)
    p.start()
    p.join()  # a pid that no longer exists
    assert s.claim("a", pid=p.pid)
    assert s.claim("b")  # this process: alive
    assert not s.claim("b") and s.run("b")["attempts"] == 1  # a claimed run is not claimed again
    assert s.counts()["running"] == 1 and s.counts()["pending"] == 1
    # what `study status` reads: pandas turns the NULL owner_pid of a pending run (c) into NaN, so the
    # column, the live run's pid included, is float
    s.add_runs([("c", _cfg(2), ["grid"], _counts(2))])
    frame = s.runs_frame().set_index("run_id")
    assert frame["owner_pid"].dtype.kind == "f"
    assert [s.is_live(frame.loc[r].to_dict()) for r in "abc"] == [False, True, False]
    assert s.reset_interrupted() == ["a"]
    assert s.run("a")["status"] == "pending" and s.run("a")["attempts"] == 1
    s.finish_run("b", "done", {"final_val_loss": 2.5, "steps": 10})
    assert s.run("b")["final_val_loss"] == 2.5 and s.counts()["done"] == 1


def test_two_processes_write_at_once_and_lose_nothing(tmp_path):
    Store(tmp_path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), t, 30)) for t in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = Store(tmp_path)
    assert len(s.runs_frame()) == 60
    assert len(s.metrics_frame()) == 300
    assert len(s.evals_frame()) == 60
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_fits_evals_and_export(tmp_path):
    s = Store(tmp_path / "study")
    s.add_runs([("a", _cfg(0), ["grid"], _counts(0))])
    s.put_fit("L(N)", "h1", {"params": {"a": 1.0}, "converged": True}, {"rel_error": 0.01, "covered": True})
    s.put_fit("L(N)", "h2", {"params": {"a": 2.0}, "converged": True}, None)
    assert [f["result"]["params"]["a"] for f in s.fits()] == [2.0] and s.fit_hash("L(N)") == "h2"
    rid = s.add_eval("a", {"task": "arith", "shots": 1, "metric": "acc", "value": 0.5, "n": 10, "bits": 3})
    ev = s.evals_frame()
    assert rid == 1 and ev.loc[0, "bits"] == 3 and ev.loc[0, "task"] == "arith"
    with pytest.raises(InputError):
        s.add_eval("a", ["not", "a", "dict"])  # type: ignore[arg-type]
    for fmt in ("csv", "parquet"):
        paths = s.export(tmp_path / fmt, fmt)
        assert {p.name for p in paths} == {
            f"{t}.{fmt}"
            for t in ("runs", "metrics", "noise_scale", "fits", "evals", "eval_sets", "position_loss")
        }
        runs = pd.read_csv(paths[0]) if fmt == "csv" else pd.read_parquet(paths[0])
        assert list(runs["run_id"]) == ["a"]
    assert not [p for p in os.listdir(tmp_path / "csv") if p.endswith(".tmp")]
    with pytest.raises(InputError, match="allowed"):
        s.export(tmp_path / "x", "xlsx")


def test_export_cli(tmp_path):
    from typer.testing import CliRunner

    from scalinglab.cli import app

    s = Store(tmp_path / "study")
    s.add_runs([("a", _cfg(0), ["grid"], _counts(0))])
    s.add_metrics("a", [{"step": 1, "train_loss": 3.0}])
    s.close()
    res = CliRunner().invoke(
        app, ["study", "export", str(tmp_path / "study"), str(tmp_path / "out"), "--format", "csv"]
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "out" / "metrics.csv")["train_loss"].tolist() == [3.0]
    res = CliRunner().invoke(app, ["study", "export", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert res.exit_code != 0


def test_reset_does_not_undo_a_claim_made_meanwhile(tmp_path, monkeypatch):
    """Process A finds run a orphaned (dead owner); before A resets it, process B resets and claims it. A's
    reset must then leave B's claim alone, or both would train the run."""
    import scalinglab.study.store as store_mod

    s = Store(tmp_path)
    s.add_runs([("a", _cfg(0), ["grid"], _counts(0))])
    assert s.claim("a", pid=2**22 + 12345)  # an owner that does not exist
    other = Store(tmp_path)
    real = store_mod.pid_alive

    def racing(pid):
        if pid == 2**22 + 12345 and s.run("a")["owner_pid"] == pid:
            monkeypatch.setattr(store_mod, "pid_alive", real)
            assert other.reset_interrupted() == ["a"] and other.claim("a")  # B gets there first
        return False

    monkeypatch.setattr(store_mod, "pid_alive", racing)
    assert s.reset_interrupted() == []
    r = s.run("a")
    assert r["status"] == "running" and r["owner_pid"] == os.getpid() and r["attempts"] == 2


def test_job_columns_recorded_and_added_to_an_older_store(tmp_path):
    """The engine's job of a run (engine, id, state); a study folder made before these columns existed gets
    them when opened, its rows intact."""
    s = Store(tmp_path)
    s.add_runs([("r0", _cfg(0), ["grid"], _counts(0))])
    s.set_job("r0", "PENDING", "slurm", "42")
    s.set_job("r0", "RUNNING")
    r = s.run("r0")
    assert (r["job_engine"], r["job_id"], r["job_state"]) == ("slurm", "42", "RUNNING")
    for col in ("job_engine", "job_id", "job_state"):
        s.conn.execute(f"ALTER TABLE runs DROP COLUMN {col}")
    s.close()
    s = Store(tmp_path)
    r = s.run("r0")
    assert r["job_id"] is None and r["n_layer"] == 1 and r["status"] == "pending"
    s.set_job("r0", "COMPLETED", "ray", "ab12")
    assert s.run("r0")["job_state"] == "COMPLETED"
