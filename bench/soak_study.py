"""Fault soak: a tiny study SIGKILLed at seeded random moments, restarted after each, vs an uninterrupted one.

    python bench/soak_study.py [--kills 20] [--seed 0] [--out DIR]

A campaign is one study folder: the plan's 6 runs are started, the process is SIGKILLed (the moment drawn from
the seed), started again with the same command, killed again, ... until a start finishes; then the finished
study is re-run and killed while it rebuilds its report (at the folder switch, and mid-figures). The kill
moments are fault points (``scalinglab.faults``: ``SCALINGLAB_FAULT=NAME:N`` makes the process kill itself the
N-th time it passes NAME) or a plain timer:

    train.step:N      after the N-th optimizer step of this start
    write:ckpt.pt:N   the N-th checkpoint written to its temporary file, not yet renamed
    store.commit:N    inside the N-th store transaction, before COMMIT
    fit.law:1         a law fitted, not yet stored
    report.figure:N   before the N-th figure of the report
    swap:1            a report folder switch (the old folder already exchanged, not yet deleted)
    time:S            SIGKILL from outside S seconds after the start (any moment: start-up, data, training...)

After every kill the store must pass ``PRAGMA quick_check`` and a report that existed must still be there.
At the end of a campaign its store is compared with the uninterrupted study's (run alongside): the same
finished runs, none lost, none duplicated (each run's metrics are one row per step, with the reference's
steps), bit-identical per-run final losses and metrics rows (fp32 on CPU), identical fits (parameters and
the hash of the table fitted), ``PRAGMA integrity_check`` ok, no temporary file left. Campaigns follow one
another until ``--kills`` kills are done. Prints one line per kill, then

    kills survived: k/k, runs lost: 0, fits equal: yes

and exits 1 when anything differs. tests/durability/test_soak.py runs a 5-kill version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAN = """
name = "soak"
[data]
spec = "text:default"
n_ctx = 16
[model]
shapes = [{n_layer = 1, d_model = 16}, {n_layer = 1, d_model = 32}, {n_layer = 2, d_model = 32}]
head_dim = 16
[tokens]
absolute = [2048, 4096]
[batch]
size = 8
[lr]
rule = "fixed"
value = 3e-3
[fit]
laws = LAWS
check = "warn"  # 3 sizes x 2 budgets: too few to identify the laws, enough to exercise the machinery
[train]
eval_batches = 2
ckpt_every = 4
log_every = 2
eval_every = 8
"""
# moments of the training phase (drawn at random), then those of the later phases (in order)
EARLY = ("train.step", "write:ckpt.pt", "store.commit", "time")
# metrics columns that must match bit for bit (the others are timings)
TIMING = {"wall_s", "tokens_per_s", "mfu"}
DEBRIS = re.compile(r"^\..*(\.tmp$|\.tmp-|\.old-|\.probe-)")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    code = "import sys; from scalinglab.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _env(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCALINGLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SCALINGLAB_FAULT", None)
    if fault:
        env["SCALINGLAB_FAULT"] = fault
    return env


def draw(rng: random.Random, kind: str) -> str:
    """A kill moment of ``kind`` with its seeded count (or delay); ``kind:N`` is taken as it is."""
    if kind.rsplit(":", 1)[-1].replace(".", "").isdigit():
        return kind
    n = {"train.step": (1, 14), "write:ckpt.pt": (1, 4), "store.commit": (1, 20), "fit.law": (1, 1),
         "report.figure": (1, 11), "swap": (1, 1)}
    if kind == "time":
        return f"time:{rng.uniform(0.5, 6.0):.2f}"
    lo, hi = n[kind]
    return f"{kind}:{rng.randint(lo, hi)}"


@dataclass
class Start:
    moment: str | None
    rc: int
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


def start(plan: Path, out: Path, moment: str | None, report: bool = True, timeout: float = 600) -> Start:
    """One `study run` of ``plan`` into ``out``, killed at ``moment`` (None: left to finish)."""
    args = ["study", "run", str(plan), "--out", str(out)] + ([] if report else ["--no-report"])
    timer = moment is not None and moment.startswith("time:")
    t0 = time.perf_counter()
    p = _cli(args, _env(None if timer or moment is None else moment))
    try:
        out_text, _ = p.communicate(timeout=float(moment.split(":")[1]) if timer else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out_text, _ = p.communicate()
    return Start(moment, p.returncode, time.perf_counter() - t0, out_text)


def quick_check(db: Path, full: bool = False) -> str:
    if not db.is_file():
        return "ok"  # killed before the store was made
    c = sqlite3.connect(str(db), timeout=60)
    try:
        return str(c.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchone()[0])
    finally:
        c.close()


def snapshot(study: Path) -> dict:
    """What a finished study holds: runs (status, final losses), metrics rows, fits, file-level checks."""
    c = sqlite3.connect(str(study / "scalinglab.db"))
    c.row_factory = sqlite3.Row
    try:
        runs = {r["run_id"]: dict(r) for r in c.execute("SELECT * FROM runs")}
        metrics: dict[str, list[tuple]] = {}
        for r in c.execute("SELECT * FROM metrics ORDER BY run_id, step"):
            row = dict(r)
            extra = json.loads(row.pop("extra") or "{}")
            row.update({k: v for k, v in extra.items() if k not in TIMING})
            metrics.setdefault(row["run_id"], []).append(
                tuple(sorted((k, v) for k, v in row.items() if k not in TIMING)))
        fits = {r["law"]: (r["data_hash"], json.loads(r["result"]).get("params")) for r in c.execute(
            "SELECT law, data_hash, result FROM fits")}
    finally:
        c.close()
    steps = {}
    for rid in runs:  # each run's own log: one line per step, none twice
        f = study / "runs" / rid / "metrics.jsonl"
        steps[rid] = [json.loads(line)["step"] for line in f.read_text().splitlines()] if f.is_file() else []
    debris = sorted(str(p.relative_to(study)) for p in study.rglob(".*") if DEBRIS.match(p.name))
    folders = sorted(p.name for p in (study / "runs").iterdir()) if (study / "runs").is_dir() else []
    return {"runs": runs, "metrics": metrics, "fits": fits, "steps": steps, "debris": debris,
            "folders": folders}


@dataclass
class Verdict:
    lost: int = 0
    problems: list[str] = field(default_factory=list)
    fits_equal: bool = True


def compare(got: dict, ref: dict, study: Path) -> Verdict:
    v = Verdict()
    fin = ("done", "diverged")
    want = {r for r, row in ref["runs"].items() if row["status"] in fin}
    have = {r for r, row in got["runs"].items() if row["status"] in fin}
    v.lost = len(want - have)
    if want - have:
        v.problems.append(f"runs not finished: {sorted(want - have)}")
    if set(got["runs"]) != set(ref["runs"]) or got["folders"] != ref["folders"]:
        v.problems.append(f"other runs: {sorted(got['runs'])} / folders {got['folders']}")
    for rid in sorted(want & have):
        a, b = got["runs"][rid], ref["runs"][rid]
        for k in ("status", "final_train_loss", "final_val_loss", "final_val_bpb", "steps"):
            if a[k] != b[k]:
                v.problems.append(f"{rid} {k}: {a[k]!r} != {b[k]!r}")
        s = got["steps"][rid]
        if len(s) != len(set(s)) or s != ref["steps"][rid]:
            v.problems.append(f"{rid}: metrics.jsonl steps {s} (reference {ref['steps'][rid]})")
        if got["metrics"].get(rid) != ref["metrics"].get(rid):
            v.problems.append(f"{rid}: metrics rows differ from the uninterrupted run's")
    if got["fits"] != ref["fits"]:
        v.fits_equal = False
        v.problems.append(f"fits differ: {got['fits']} != {ref['fits']}")
    if got["debris"]:
        v.problems.append(f"temporaries left: {got['debris']}")
    check = quick_check(study / "scalinglab.db", full=True)
    if check != "ok":
        v.problems.append(f"integrity_check: {check}")
    if not (study / "report" / "index.html").is_file():
        v.problems.append("no report/index.html")
    return v


def campaign(plan: Path, study: Path, moments: list[str], after: list[str], log) -> tuple[list[Start], bool]:
    """Kill a fresh study at each of ``moments`` until a start finishes, then the finished study at each of
    ``after`` (report rebuilds). Returns the starts and whether every kill left the store and report
    intact."""
    starts: list[Start] = []
    intact = True

    def one(moment: str | None) -> Start:
        nonlocal intact
        had_report = (study / "report" / "index.html").is_file()
        s = start(plan, study, moment)
        starts.append(s)
        ok = quick_check(study / "scalinglab.db") == "ok"
        kept = not had_report or (study / "report" / "index.html").is_file()
        intact &= ok and kept and s.rc in (0, -signal.SIGKILL)
        if s.rc not in (0, -signal.SIGKILL):
            raise SystemExit(f"a start failed (rc {s.rc}, killed at {moment}):\n{s.output[-3000:]}")
        log(f"  {moment or 'no kill':<22} {'killed' if s.killed else f'finished (rc {s.rc})':<14} "
            f"after {s.seconds:5.1f} s; store {'ok' if ok else 'CORRUPT'}"
            + ("" if kept else "; REPORT LOST"))
        return s

    for m in moments:
        if not one(m).killed:
            break  # the study finished before this moment came: the campaign's training is over
    else:
        one(None)
    for m in after:
        one(m)
    if after:
        one(None)
    return starts, intact


def schedule(rng: random.Random, left: int) -> tuple[list[str], list[str]]:
    """A campaign's kill moments: training-phase ones drawn at random, then one while fitting and one
    mid-report; and the finished study's (a report folder switch)."""
    late = ["fit.law", "report.figure"][: max(0, left - 1)]
    after = ["swap"][: max(0, left - 1 - len(late))]
    early = [rng.choice(EARLY) for _ in range(left - len(late) - len(after))]
    return [draw(rng, k) for k in early + late], [draw(rng, k) for k in after]


def soak(kills: int, seed: int, root: Path, laws: list[str], kinds: list[str] | None = None,
         log=print) -> dict:
    """Campaigns until ``kills`` kills are done (``kinds``: the first campaign's kill kinds, in order)."""
    rng = random.Random(seed)
    plan = root / "soak.toml"
    plan.write_text(PLAN.replace("LAWS", json.dumps(laws)))
    ref_dir = root / "reference"
    ref = _cli(["study", "run", str(plan), "--out", str(ref_dir)], _env())  # alongside (1 thread each)
    total = survived = lost = 0
    fits_equal = True
    ref_snap = None
    c = 0
    while total < kills:
        c += 1
        if c == 1 and kinds:
            moments, after_m = [draw(rng, k) for k in kinds], []
        else:
            moments, after_m = schedule(rng, kills - total)
        log(f"campaign {c}: {len(moments) + len(after_m)} planned kills")
        study = root / f"campaign{c}"
        starts, intact = campaign(plan, study, moments, after_m, log)
        k = sum(s.killed for s in starts)
        if ref_snap is None:
            out, _ = ref.communicate(timeout=900)
            if ref.returncode != 0:
                raise SystemExit(f"the uninterrupted study failed:\n{out[-3000:]}")
            ref_snap = snapshot(ref_dir)
        v = compare(snapshot(study), ref_snap, study)
        for p in v.problems:
            log(f"  DIFFERS: {p}")
        total += k
        survived += k if (intact and not v.problems) else 0
        lost += v.lost
        fits_equal &= v.fits_equal
        log(f"  campaign {c}: {k} kills, {len(starts)} starts, "
            + ("same as the uninterrupted study" if not v.problems else f"{len(v.problems)} difference(s)"))
        if k == 0:
            raise SystemExit("a campaign finished without any kill: the moments drawn are too late")
    return {"kills": total, "survived": survived, "lost": lost, "fits_equal": fits_equal, "campaigns": c}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="working folder (default: a temporary folder)")
    ap.add_argument("--laws", default="L(N),L(N,D)", help="laws the tiny plan fits (comma-separated)")
    ap.add_argument("--kinds", default=None, help="only one campaign, killed at these kinds in order "
                    "(comma-separated), e.g. train.step,write:ckpt.pt,store.commit,fit.law,report.figure")
    a = ap.parse_args()
    kinds = a.kinds.split(",") if a.kinds else None
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="scalinglab-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    laws = re.split(r",(?![^(]*\))", a.laws)  # commas outside parentheses: L(N),L(N,D)
    r = soak(len(kinds) if kinds else a.kills, a.seed, root, laws, kinds)
    took = time.perf_counter() - t0
    print(f"soak folder: {root} ({took:.0f} s, {r['campaigns']} campaign(s), seed {a.seed})")
    print(f"kills survived: {r['survived']}/{r['kills']}, runs lost: {r['lost']}, "
          f"fits equal: {'yes' if r['fits_equal'] else 'no'}")
    sys.exit(0 if r["survived"] == r["kills"] and r["lost"] == 0 and r["fits_equal"] else 1)


if __name__ == "__main__":
    main()
