"""A folder switched in by ``replace_dir`` is never missing, whatever moment its writer is killed at, and
``sweep_temps`` removes what killed writers left without ever touching a live writer's temporaries.

Kills are real: a child process (no torch, no threads) SIGKILLs itself at a fault point
(``SCALINGLAB_FAULT``) or is SIGKILLed by the test at random instants."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab import io as sio

REPO = Path(__file__).resolve().parents[2]

# the child: build `report` (a folder holding its version number twice) with temp_dir + replace_dir
CHILD = r"""
import sys, time
from pathlib import Path
from scalinglab import io as sio
dest, first, loop, fallback = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "loop", sys.argv[4] == "1"
if fallback:  # a file system without RENAME_EXCHANGE (NFS, old kernels)
    sio._RENAMEAT2 = None
v = first
while True:
    sio.sweep_temps(dest.parent)
    with sio.temp_dir(dest) as tmp:
        (tmp / "figures").mkdir()
        (tmp / "figures" / "a.png").write_text(str(v))
        (tmp / "index.html").write_text(str(v))
        if sys.argv[5:]:
            print("ready", flush=True)
            time.sleep(60)  # a live writer, holding its temporary folder
        sio.replace_dir(tmp, dest)
    if not loop:
        break
    v += 1
"""


def _child(dest: Path, version: int, *, loop: bool = False, fallback: bool = False, fault: str | None = None,
           hold: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SCALINGLAB_FAULT", None)
    if fault:
        env["SCALINGLAB_FAULT"] = fault
    args = [sys.executable, "-c", CHILD, str(dest), str(version), "loop" if loop else "once",
            "1" if fallback else "0"] + (["hold"] if hold else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def _version(dest: Path) -> int:
    """The version of a complete folder at ``dest`` (its two files agree), or raise."""
    a = (dest / "index.html").read_text()
    b = (dest / "figures" / "a.png").read_text()
    assert a == b, f"a mix of two versions: {a} / {b}"
    return int(a)


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "symlink-fallback"])
def test_kill_at_the_switch_never_loses_the_folder(tmp_path: Path, fallback: bool) -> None:
    dest = tmp_path / "report"
    assert _child(dest, 1, fallback=fallback).wait(30) == 0  # the first version: no old one to replace
    assert _version(dest) == 1 and os.path.islink(dest) == fallback
    for v in (2, 3):  # killed at the switch (exchange done, old folder not yet deleted / link switched)
        p = _child(dest, v, fallback=fallback, fault="swap")
        assert p.wait(30) == -signal.SIGKILL
        assert _version(dest) == v  # the new folder is in place: there is no moment without one
        assert _debris(tmp_path)  # the killed writer's temporaries (lock, old folder) are left ...
        sio.sweep_temps(tmp_path)  # ... and swept by the next writer (in the fallback: all but the target)
        assert _version(dest) == v and _debris(tmp_path) == ([os.readlink(dest)] if fallback else [])


def test_fallback_turns_a_real_folder_into_a_link_and_rolls_a_kill_forward(tmp_path: Path) -> None:
    """A real folder on a file system that cannot exchange (one made by an earlier version): the one switch
    that needs two renames. Killed between them, the next sweep finishes the switch."""
    dest = tmp_path / "report"
    assert _child(dest, 1).wait(30) == 0 and not os.path.islink(dest)
    assert _child(dest, 2, fallback=True, fault="swap").wait(30) == -signal.SIGKILL
    assert not dest.exists()  # the window this layout has once per folder (the sweep below closes it)
    sio.sweep_temps(tmp_path)
    assert _version(dest) == 2 and os.path.islink(dest) and len(_debris(tmp_path)) == 1  # the link's target
    assert _child(dest, 3, fallback=True).wait(30) == 0
    assert _version(dest) == 3 and len(_debris(tmp_path)) == 1  # the old target deleted


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "symlink-fallback"])
def test_sigkill_at_random_instants(tmp_path: Path, fallback: bool) -> None:
    """A writer replacing the folder in a loop, SIGKILLed 10 times at seeded random instants: every time the
    folder is there and whole; the sweep then leaves nothing else behind."""
    dest = tmp_path / "report"
    assert _child(dest, 0, fallback=fallback).wait(30) == 0
    rng = random.Random(16)
    seen = 0
    for k in range(10):
        p = _child(dest, 1000 * (k + 1), loop=True, fallback=fallback)
        time.sleep(0.12 + rng.random() * 0.2)  # ~0.15 s to start python, then switches every ~ms
        p.kill()
        p.wait(10)
        seen = max(seen, _version(dest))
    assert seen > 1000  # the loop did switch the folder before it was killed
    sio.sweep_temps(tmp_path)
    assert _debris(tmp_path) == ([] if not fallback else [os.readlink(dest)])


def test_sweep_leaves_a_live_writers_temporaries(tmp_path: Path) -> None:
    dest = tmp_path / "report"
    assert _child(dest, 1).wait(30) == 0
    live = _child(dest, 2, hold=True)  # has built its folder and holds it (sleeping)
    try:
        assert live.stdout.readline().strip() == "ready"
        held = _debris(tmp_path)
        assert len(held) == 2  # its folder and its lock
        dead = _child(dest, 3, fault="swap")
        assert dead.wait(30) == -signal.SIGKILL
        removed = sio.sweep_temps(tmp_path)
        assert _debris(tmp_path) == held  # the dead writer's gone, the live one's untouched
        assert removed and all(p.name not in held for p in removed)
        assert _version(dest) == 3
    finally:
        live.kill()
        live.wait(10)
    sio.sweep_temps(tmp_path)  # now its owner is dead too
    assert _debris(tmp_path) == [] and _version(dest) == 3


def test_atomic_write_temp_files_are_swept_only_when_their_writer_is_dead(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCALINGLAB_FAULT": "write:ckpt.pt"}
    code = "import sys; from scalinglab.io import atomic_write_bytes as w; w(sys.argv[1], b'x' * 1000)"
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ckpt.pt")], env=env)
    assert p.returncode == -signal.SIGKILL
    left = _debris(tmp_path)
    assert len(left) == 1 and left[0].startswith(".ckpt.pt.") and not (tmp_path / "ckpt.pt").exists()
    # a live writer's temporary file (this process, its lock held) beside it
    import fcntl

    mine = tmp_path / f".summary.json.{os.getpid()}.{'a' * 12}.tmp"
    fd = os.open(mine, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert [p.name for p in sio.sweep_temps(tmp_path)] == left
        assert _debris(tmp_path) == [mine.name]
    finally:
        os.close(fd)


def test_sweep_restores_the_folder_an_earlier_version_lost(tmp_path: Path) -> None:
    """The two-rename switch this replaced, killed between its renames: no `report/`, the previous one
    set aside as `.report.old-<pid>-<ns>`. The sweep puts it back."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that is certainly dead
    aside = tmp_path / f".report.old-{p.pid}-123"
    (aside / "figures").mkdir(parents=True)
    (aside / "index.html").write_text("7")
    (aside / "figures" / "a.png").write_text("7")
    sio.sweep_temps(tmp_path)
    assert _version(tmp_path / "report") == 7 and _debris(tmp_path) == []
