"""Two `study run` on one folder at once, and a third process polling `study status`: every run is trained
once (none lost, none twice), both finish with the complete fits and report, and no "database is locked"
(nor any other error) ever reaches the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.study.store import Store

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from soak_study import PLAN  # noqa: E402  (the soak's tiny plan: 6 runs)

CODE = "import sys; from scalinglab.cli import main; main()"


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCALINGLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_two_study_runs_and_a_status_poller_on_one_folder(tmp_path: Path) -> None:
    plan = tmp_path / "soak.toml"
    plan.write_text(PLAN.replace("LAWS", '["L(N)", "L(N,D)"]'))
    study = tmp_path / "study"
    a = _cli("study", "run", str(plan), "--out", str(study))
    b = _cli("study", "run", str(plan), "--out", str(study))
    polls = []
    while a.poll() is None or b.poll() is None:
        if (study / "scalinglab.db").is_file():
            p = _cli("study", "status", str(study), "--json")
            out, err = p.communicate(timeout=60)
            polls.append((p.returncode, out, err))
            time.sleep(0.5)  # a poller, not a third load on 2 cores
        else:
            time.sleep(0.05)
    outs = [p.communicate() + (p.returncode,) for p in (a, b)]
    for out, err, rc in outs:
        assert rc == 0, out + err
        assert "locked" not in out + err and "Traceback" not in err, out + err
        assert "study finished" in out
    assert len(polls) >= 3
    for rc, out, err in polls:
        assert rc == 0 and "locked" not in out + err, (rc, out, err)
        assert json.loads(out)["total"] in (0, 6)  # 0: before the first runs were registered
    trained = [line.split()[1] for out, _, _ in outs for line in out.splitlines() if line.startswith("[")]
    s = Store(study)
    try:
        runs = s.runs_frame().set_index("run_id")
        assert len(runs) == 6 and sorted(trained) == sorted(runs.index)  # each trained once, by one process
        assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {1}
        for rid, row in runs.iterrows():
            log = (study / "runs" / rid / "metrics.jsonl").read_text().splitlines()
            steps = [json.loads(x)["step"] for x in log]
            assert steps == sorted(set(steps)) and steps[-1] == row["steps"]
            assert list(s.metrics_frame(rid)["step"]) == steps
        fits = {f["law"]: f["result"] for f in s.fits()}
        assert fits["L(N)"]["n_points"] == 3 and fits["L(N,D)"]["n_points"] == 6  # fitted on all 6 runs
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        s.close()
    assert (study / "report" / "index.html").is_file()
    assert not [p.name for p in study.iterdir() if p.name.startswith(".") and "tmp" in p.name]
