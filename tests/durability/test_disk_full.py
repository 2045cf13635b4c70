"""A study on a small file system that fills up: it stops with one error line naming the path it could not
write, whichever write it was (the store, a checkpoint, the report); once space is freed the same command
resumes and ends as an uninterrupted study on a roomy disk does, its store passing PRAGMA integrity_check.

Needs a tmpfs mount (root, as in CI); skipped with the reason where mounting is not permitted."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from soak_study import PLAN  # noqa: E402  (the soak's tiny plan: 6 runs, ~2 MB of checkpoints)

CODE = "import sys; from scalinglab.cli import main; main()"


@pytest.fixture()
def small_fs(tmp_path: Path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a small tmpfs here: {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCALINGLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SCALINGLAB_FAULT", None)
    return subprocess.Popen([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(*args: str) -> tuple[int, str, str]:
    p = _cli(*args)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def _fill(mnt: Path, leave_kib: int) -> Path:
    """A ballast file leaving about ``leave_kib`` KiB free."""
    free = shutil.disk_usage(mnt).free
    ballast = mnt / f"ballast-{leave_kib}"
    with open(ballast, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return ballast


def _one_error_line(err: str, mnt: Path) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: no space left on the device writing {mnt}/study"), lines[0]
    return lines[0]


def _final_losses(study: Path) -> dict:
    c = sqlite3.connect(str(study / "scalinglab.db"))
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {r[0]: r[1:] for r in c.execute(
            "SELECT run_id, status, final_train_loss, final_val_loss FROM runs ORDER BY run_id")}
    finally:
        c.close()


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_the_rerun_resumes(small_fs: Path, tmp_path: Path) -> None:
    plan = tmp_path / "soak.toml"
    plan.write_text(PLAN.replace("LAWS", '["L(N)"]'))
    ref = _cli("study", "run", str(plan), "--out", str(tmp_path / "reference"), "--no-report")  # alongside
    study = small_fs / "study"
    run = ("study", "run", str(plan), "--out", str(study))

    b = _fill(small_fs, 12)  # not even room for the store
    rc, _, err = _run(*run)
    assert rc == 2 and "scalinglab.db" in _one_error_line(err, small_fs)
    b.unlink()

    b = _fill(small_fs, 700)  # room for a few runs' checkpoints
    rc, out, err = _run(*run)
    assert rc == 2 and "done: val loss" in out, out
    _one_error_line(err, small_fs)
    done_before = sum(s == "done" for s, *_ in _final_losses(study).values())
    assert 0 < done_before < 6
    b.unlink()

    rc, out, err = _run(*run, "--no-report")  # space freed: the same command resumes
    assert rc == 0, out + err

    b = _fill(small_fs, 300)  # the report (~1 MB of figures) does not fit
    rc, _, err = _run(*run)
    assert rc == 2 and "report" in _one_error_line(err, small_fs)
    assert not [p for p in study.iterdir() if p.name.startswith(".report")]  # its temporary folder removed
    b.unlink()

    rc, out, err = _run(*run)
    assert rc == 0 and (study / "report" / "index.html").is_file(), out + err
    ref_out, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_out + ref_err
    got, want = _final_losses(study), _final_losses(tmp_path / "reference")
    assert got == want and {s for s, *_ in got.values()} == {"done"}  # bit-identical to the roomy study
