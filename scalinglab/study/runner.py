"""`study run`: plan -> store the runs -> train them with an executor -> ingest metrics -> fit -> report.

Resumable by construction: the store is the source of truth for run status; a run's folder holds its
checkpoint. Re-running the same command re-plans (same ids), puts runs whose owner died back to pending,
trains what is not done (the trainer resumes from `ckpt.pt`), re-ingests metrics (keyed by step, so
nothing is duplicated) and re-fits only the laws whose data changed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalinglab.errors import ConfigError, FitError, InputError, StorageError
from scalinglab.io import atomic_write_bytes, atomic_write_json
from scalinglab.study import design
from scalinglab.study.executors import capacity, make_executor, run_dir, threads_per_run
from scalinglab.study.plan import (
    BatchFor,
    Plan,
    RunSpec,
    batch_from_noise,
    load_plan,
    make_runs,
    pilot_runs,
    plan_hash,
)
from scalinglab.study.store import Store
from scalinglab.study.suggest import adaptive_specs, remember, suggest_runs

Echo = Callable[[str], None]
POLL_S = 0.2


def study_dir_for(plan: Plan, plan_path: Path, out: str | Path | None = None) -> Path:
    """The study folder: `--out`, else the plan's `out` (relative to the toml), else `./runs/<name>`."""
    if out is not None:
        return Path(out)
    if plan.out:
        p = Path(plan.out)
        return p if p.is_absolute() else plan_path.parent / p
    return Path("runs") / plan.name


def data_identity(spec: str) -> tuple[int, str]:
    """(vocabulary size, content fingerprint) of the prepared data behind ``spec`` (built on first use). The
    fingerprint hashes the tokens, the tokenizer and the split rule: it changes whenever the data does."""
    from scalinglab.data import ensure_dataset, open_dataset

    ds = open_dataset(ensure_dataset(spec))
    return int(ds.vocab_size), str(ds.fingerprint)


def check_same_data(store: Store, spec: str, fingerprint: str) -> None:
    """Refuse to continue a study whose data changed since it began: its finished runs were trained on the
    old data, and mixing them with runs on the new data would fit a law to two datasets at once."""
    seen = store.get_meta("data_fingerprint")
    if seen is not None and seen != fingerprint:
        raise ConfigError(
            f"the data behind {spec!r} changed since this study began (fingerprint {seen} -> {fingerprint}); "
            "its finished runs were trained on the old data. Restore the data, or start a new study "
            "(another --out or name)"
        )
    store.set_meta("data_fingerprint", fingerprint)


def counts_for(config: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """Parameter counts (every convention) and training FLOPs per token (every convention) of a run."""
    from scalinglab.model.counting import count_params, flops_per_token
    from scalinglab.train.config import TrainConfig

    mcfg = TrainConfig.make(**config).arch_config(vocab_size)
    return {"params": count_params(mcfg), "flops_per_token": flops_per_token(mcfg)}


def register(store: Store, study_dir: Path, plan: Plan, runs: list[RunSpec], vocab_size: int) -> list[str]:
    """Insert the planned runs (idempotent) and record which ids the current plan holds."""
    store.add_runs((r.run_id, r.config, r.roles, counts_for(r.config, vocab_size)) for r in runs)
    ids = [r.run_id for r in runs]
    store.set_meta("plan_runs", ids)
    store.set_meta("plan_hash", plan_hash(plan))
    store.set_meta("vocab_size", vocab_size)
    store.set_meta("params", plan.params)  # the N the laws are fitted on (the report draws with it)
    return ids


class MetricsTail:
    """Incremental reader of each run's `metrics.jsonl` (complete lines only) into the store."""

    def __init__(self, store: Store, study_dir: Path):
        self.store, self.study_dir, self.offsets = store, study_dir, {}

    def ingest(self, run_id: str) -> int:
        path = run_dir(self.study_dir, run_id) / "metrics.jsonl"
        if not path.is_file():
            return 0
        off = self.offsets.get(run_id, 0)
        if path.stat().st_size < off:  # the file was rewritten (e.g. truncated on resume): read it again
            off = 0
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read()
        end = data.rfind(b"\n") + 1
        rows = []
        for line in data[:end].splitlines():
            line = line.strip()
            if line:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
        self.offsets[run_id] = off + end
        return self.store.add_metrics(run_id, rows)


def execute(store: Store, study_dir: Path, plan: Plan, ids: list[str], echo: Echo) -> dict[str, int]:
    """Train every pending run of `ids` with the plan's executor; returns counts of outcomes."""
    from scalinglab.study.executors import job_name
    todo = [r for r in ids if store.run(r)["status"] == "pending"]
    if not todo:
        return {}
    ex = make_executor(plan.executor, study_dir)
    if ex.capacity > 1:  # several at once: longest first, so the last slot is not one big run alone
        cost = {r: (store.run(r)["flops_6n"] or 0.0) for r in todo}
        todo.sort(key=lambda r: -cost[r])
    threads = threads_per_run(plan.executor)
    tail = MetricsTail(store, study_dir)
    inflight: dict[str, Any] = {}
    jobs: dict[str, str | None] = {}  # run -> the engine's state of its job, as last recorded
    outcome = {"done": 0, "diverged": 0, "failed": 0, "pending": 0}
    n_total, n_start = len(ids), len(ids) - len(todo)
    t0, last_beat = time.time(), 0.0
    echo(
        f"training {len(todo)} run(s) with executor {plan.executor.kind} "
        f"(workers {plan.executor.workers}, {threads} thread(s) per run)"
    )
    try:
        while todo or inflight:
            while todo and len(inflight) < ex.capacity:
                rid = todo.pop(0)
                if not store.claim(rid):  # another process on this study took it since the list was read
                    n_total -= 1
                    continue
                d = run_dir(study_dir, rid)
                d.mkdir(parents=True, exist_ok=True)
                run = store.run(rid)
                atomic_write_json(
                    d / "spec.json",
                    {"run_id": rid, "config": run["config"], "threads": threads, "roles": run["roles"]},
                )
                old = run["job_id"] if run["job_engine"] == plan.executor.kind else None
                try:  # a job an earlier (dead) driver left queued or running is waited for, not doubled
                    h = ex.attach(study_dir, rid, old) if old and hasattr(ex, "attach") else None
                    if h is not None:
                        echo(f"{rid}: back to {plan.executor.kind} job {old} ({h.state()}), submitted before")
                    else:
                        h = ex.submit(study_dir, rid)
                    inflight[rid] = h
                except Exception as e:  # e.g. a broken process pool: recorded, retried on the next run
                    store.finish_run(rid, "failed", None, error=f"submit: {type(e).__name__}: {e}"[:500])
                    outcome["failed"] += 1
                    echo(f"{rid}: could not be submitted ({type(e).__name__}: {e})")
                    continue
                if getattr(h, "job_id", None):  # the engine's id: in the store, for `study status`
                    jobs[rid] = h.state()
                    store.set_job(rid, jobs[rid], plan.executor.kind, h.job_id)
                    if h.job_id != old:
                        echo(f"{rid}: {plan.executor.kind} job {h.job_id} ({job_name(study_dir, rid)})")
            time.sleep(POLL_S if inflight else 0)
            for rid, h in list(inflight.items()):
                if not h.done():
                    continue
                del inflight[rid]
                if jobs.pop(rid, False) is not False:
                    store.set_job(rid, h.state())  # the engine's last word on it
                tail.offsets[rid] = 0  # the whole file, once more: the trainer rewrites it on resume
                tail.ingest(rid)
                status = _finish(store, rid, h)
                outcome[status] += 1
                run = store.run(rid)
                n_done = n_start + sum(outcome.values())
                loss = run["final_val_loss"]
                echo(
                    f"[{n_done}/{n_total}] {rid} (L={run['n_layer']}, d={run['d_model']}, "
                    f"D={run['tokens']:.3g}) {status}"
                    + (f": val loss {loss:.4f}" if loss is not None else "")
                    + (f" ({run['error']})" if run["error"] else "")
                    + f" [{time.time() - t0:.0f} s]"
                )
            if time.time() - last_beat > 2.0:
                for rid, h in inflight.items():
                    tail.ingest(rid)
                    if rid in jobs and h.state() != jobs[rid]:
                        jobs[rid] = h.state()
                        store.set_job(rid, jobs[rid])
                store.heartbeat(inflight)
                last_beat = time.time()
    finally:
        ex.shutdown()
    return outcome


def _finish(store: Store, rid: str, handle: Any) -> str:
    try:
        res = handle.result()
    except StorageError:  # a full disk is not the run's fault: it stays to do, and the study stops
        with contextlib.suppress(StorageError):
            store.finish_run(rid, "pending", None)
        raise
    except Exception as e:  # the run raised: record it and go on with the study
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        store.finish_run(rid, "failed", None, error=msg)
        return "failed"
    summary = res.get("summary") or {}
    if summary.get("status") == "stopped":  # asked to stop (shutdown): it resumes from its checkpoint later
        store.finish_run(rid, "pending", None)
        return "pending"
    status = "diverged" if summary.get("status") == "diverged" else "done"
    store.finish_run(
        rid,
        status,
        summary,
        error=summary.get("error") if status == "diverged" else None,
        resumed_from_step=res.get("resumed_from_step"),
    )
    return status


def wait_for_others(store: Store, ids: list[str], echo: Echo, poll_s: float = 1.0) -> None:
    """Block while any of ``ids`` is being trained by another live process (a second `study run` on the same
    folder): what follows needs their results."""
    said = False
    while True:
        live = [r for r in ids if store.is_live(store.run(r))]
        if not live:
            return
        if not said:
            echo(f"waiting for {len(live)} run(s) another process is training: {', '.join(live)}")
            said = True
        time.sleep(poll_s)


def batches_from_pilots(store: Store, plan: Plan, pilots: list[RunSpec], echo: Echo) -> BatchFor:
    """Noise-scale rule: each shape's batch from the median B_simple (tokens) of its pilot's last half."""
    noise = store.noise_frame()
    out: BatchFor = {}
    for p in pilots:
        key = (p.config["n_layer"], p.config["d_model"])
        n = noise[noise["run_id"] == p.run_id]
        n = n[n["step"] >= n["step"].max() / 2] if len(n) else n
        b = n["b_simple_tokens"].astype(float)
        b = b[b > 0]
        if b.empty:
            out[key] = plan.batch.size
            echo(f"noise scale: no measurement for shape {key}; batch {plan.batch.size} (the pilot's)")
            continue
        out[key] = batch_from_noise(float(b.median()), plan)
        echo(f"noise scale: shape {key} B_simple = {b.median():.4g} tokens -> batch {out[key]} sequences")
    return out


def refuse_imported(*folders: Path) -> None:
    """A study of imported runs (``scalinglab study import``) has nothing to train: a ConfigError."""
    from scalinglab.study.store import DB_NAME

    for d in folders:
        if (Path(d) / DB_NAME).is_file():
            with Store(d) as s:
                meta = s.get_meta("imported")
            if meta:
                src = ", ".join(meta["sources"])
                raise ConfigError(f"{d} holds runs imported from {src}: there is nothing to train; use "
                                  "`study fit` and `report` on it")


def run_study(
    plan_path: str | Path,
    out: str | Path | None = None,
    *,
    echo: Echo = print,
    report: Callable[[Path], Any] | bool | None = None,
    adaptive: int = 0,
    adaptive_runs: int = 2,
) -> dict[str, Any]:
    """Run (or continue) a study end to end; returns {"study_dir", "runs", "fits", "report"}. ``adaptive``
    rounds of suggest-then-train (``study.suggest``, ``adaptive_runs`` runs each) follow the plan's runs.

    ``report``: a report builder called with the study folder once the laws are fitted
    (``scalinglab.report.build_report``; ``scalinglab study run`` passes it), or None/False for none. The
    study package does not import the report (the report reads the study's store), so ``True`` is refused:
    pass the builder. A builder that fails never fails the study: the reason is echoed."""
    if report is True:
        raise ConfigError("run_study(report=True): pass the builder, report=scalinglab.report.build_report "
                          "(the study package does not import the report)")
    from scalinglab.study import fitting

    t0 = time.time()
    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    study_dir = study_dir_for(plan, plan_path, out)
    refuse_imported(plan_path.parent, study_dir)
    vocab, fingerprint = data_identity(plan.data.spec)
    plan = design.expand(plan, vocab)  # the design's runs and laws, laid out from its budget
    design.check(plan, make_runs(plan, vocab), vocab, echo)  # a law the runs cannot identify: refused now
    study_dir.mkdir(parents=True, exist_ok=True)
    store = Store(study_dir)
    check_same_data(store, plan.data.spec, fingerprint)  # before anything of the study is changed
    if plan_path.resolve() != (study_dir / "study.toml").resolve():
        # a temporary file of its own: two `study run` on one folder must not write the same one
        atomic_write_bytes(study_dir / "study.toml", plan_path.read_bytes())
    old = store.get_meta("plan_hash")
    if old is not None and old != plan_hash(plan):
        echo("the plan changed since the last run: new runs are added, finished runs are kept")
    echo(f"study {plan.name!r} in {study_dir}")
    back = store.reset_interrupted()
    if back:
        echo(f"resuming {len(back)} interrupted or failed run(s): {', '.join(back)}")
    pilots: list[RunSpec] = []
    batch_for = None
    if plan.batch.rule == "noise_scale":
        pilots = pilot_runs(plan, vocab)
        register(store, study_dir, plan, pilots, vocab)
        execute(store, study_dir, plan, [p.run_id for p in pilots], echo)
        wait_for_others(store, [p.run_id for p in pilots], echo)  # the batch sizes need every pilot's result
        batch_for = batches_from_pilots(store, plan, pilots, echo)
    planned = pilots + make_runs(plan, vocab, batch_for)
    ids = register(store, study_dir, plan, planned + adaptive_specs(store), vocab)
    execute(store, study_dir, plan, ids, echo)
    from scalinglab.study import evalsets, findings

    evalsets.collect(store, study_dir, ids, plan.eval.sets, echo)  # loss by position, extra eval sets
    # runs another `study run` on this folder is training: fitted without them, this process's fits could be
    # stored after (over) that process's complete ones
    wait_for_others(store, ids, echo)
    store.set_meta("phase", "fitting")
    fits = fitting.fit_study(store, plan, ids, echo)
    store.set_meta("phase", "fitted")
    done_rounds = int(store.get_meta("adaptive_rounds", 0))
    for rnd in range(done_rounds, adaptive):
        target = fitting.target_flops(plan, fitting.finished_runs(store, plan, ids))
        try:
            sg, specs = suggest_runs(store, plan, fits, vocab, target_C=target, k=adaptive_runs)
        except (FitError, ConfigError, InputError) as e:
            echo(f"adaptive round {rnd + 1}: stopped ({e})")
            break
        for line in sg.lines():
            echo(f"adaptive round {rnd + 1}: {line}")
        remember(store, specs)
        ids = register(store, study_dir, plan, planned + adaptive_specs(store), vocab)
        store.set_meta("phase", "training")
        execute(store, study_dir, plan, ids, echo)
        fits = fitting.fit_study(store, plan, ids, echo)
        store.set_meta("adaptive_rounds", rnd + 1)
        store.set_meta("phase", "fitted")
    findings.print_findings(store, plan, ids, echo)  # shape, loss by position, LSTM, transfer (Kaplan 2020)
    rep = None
    if report:
        try:
            rep = report(study_dir)
        except StorageError:  # a full disk stops the study with its one error line
            raise
        except Exception as e:  # the report must never break the study
            echo(f"report: failed ({type(e).__name__}: {e}); results are in {study_dir / 'scalinglab.db'}")
        else:
            echo(f"report: {rep}")
    store.set_meta("phase", "finished")
    echo(f"study finished in {time.time() - t0:.1f} s")
    return {
        "study_dir": str(study_dir),
        "runs": store.counts(),
        "fits": fits,
        "report": str(rep) if rep else None,
    }


def describe_plan(plan_path: str | Path, *, calibrate: bool = True) -> dict[str, Any]:
    """What ``study run`` would train, without training: every run (shape, N under the plan's convention,
    tokens, batch, steps, FLOPs, estimated seconds on this machine), the totals, and per planned law the
    runs that feed it, the decades they span in N, D and C and whether they identify it."""
    from scalinglab.study import estimate
    from scalinglab.train.config import TrainConfig

    plan_path = Path(plan_path)
    plan = load_plan(plan_path)
    vocab, _ = data_identity(plan.data.spec)
    plan = design.expand(plan, vocab)
    runs = make_runs(plan, vocab)
    table = design.identifiability(plan, runs, vocab)
    threads = threads_per_run(plan.executor)
    model = estimate.calibrate([r.config for r in runs], vocab, threads) if calibrate and runs else None
    rows = []
    for r in runs:
        c = r.config
        n = counts_for(c, vocab)["params"][plan.params]
        rows.append({
            "run_id": r.run_id, "roles": sorted(r.roles), "n_layer": c["n_layer"], "d_model": c["d_model"],
            "N": n, "tokens": c["tokens"], "tokens_per_param": c["tokens"] / n, "batch_size": c["batch_size"],
            "steps": TrainConfig.make(**c).planned_steps, "flops": 6.0 * n * c["tokens"], "lr": c.get("lr"),
            "est_s": estimate.run_seconds(c, vocab, model) if model else None,
        })
    slots = plan.executor.workers or 1
    est = [r["est_s"] for r in rows if r["est_s"] is not None]
    return {
        "plan": str(plan_path),
        "design": plan.design,
        "budget": plan.budget,
        "laws": list(plan.fit.laws),
        "runs": rows,
        "total_flops": float(sum(r["flops"] for r in rows)),
        "est_wall_s": estimate.wall_seconds(est, slots) if model else None,
        "slots": slots,
        "step_model": None if model is None else {"t0_s": model.t0, "flops_per_s": model.rate,
                                                  "threads": model.threads, "source": model.source},
        "identifiability": [c.to_dict() for c in table],
        "identified": all(c.identified for c in table),
    }


def _slots(study_dir: Path) -> int:
    """Runs the study's executor trains at once: its plan's workers (Ray and Slurm with 0 workers: no limit;
    local with 0: in-process, one at a time; 1 when the plan is unreadable)."""
    try:
        return capacity(load_plan(study_dir / "study.toml").executor)
    except ConfigError:
        return 1


def study_status(study_dir: str | Path) -> dict[str, Any]:
    """Counts per status, the phase, and an ETA: the planned FLOPs still to train (a running run's logged
    tokens count as done) over the FLOP rate of one run slot, measured on the finished runs, times the
    executor's parallel slots."""
    study_dir = Path(study_dir)
    if not (study_dir / "scalinglab.db").is_file():
        raise ConfigError(f"{study_dir} is not a study folder (no scalinglab.db)")
    store = Store(study_dir)
    runs = store.runs_frame()
    ids = set(store.get_meta("plan_runs", list(runs["run_id"])))
    runs = runs[runs["run_id"].isin(ids)]
    counts = dict.fromkeys(("done", "failed", "pending", "running", "diverged"), 0)
    live = []
    for _, r in runs.iterrows():
        st = r["status"]
        if st == "running":
            st = "running" if store.is_live(r.to_dict()) else "pending"
        counts[st] += 1
        live.append(st)
    runs = runs.assign(effective=live)
    fin = runs[runs["effective"].isin(["done", "diverged"]) & runs["wall_s"].notna()]
    eta = None
    if len(fin) and fin["wall_s"].sum() > 0:
        rate = fin["flops_6n"].sum() / fin["wall_s"].sum()  # FLOPs per second of one run slot
        todo = runs[runs["effective"].isin(["pending", "running"])]
        left = 0.0
        for _, r in todo.iterrows():  # a running run has its logged tokens behind it
            seen = store.conn.execute("SELECT MAX(tokens) FROM metrics WHERE run_id = ?", (r["run_id"],))
            seen = seen.fetchone()[0] or 0.0
            frac = min(1.0, seen / r["tokens"]) if r["effective"] == "running" and r["tokens"] else 0.0
            left += float(r["flops_6n"]) * (1.0 - frac)
        slots = min(_slots(study_dir), max(1, len(todo)))  # runs in parallel: the executor's workers
        eta = float(left / (rate * slots)) if rate > 0 else None
    return {
        "runs": counts,
        "total": int(len(runs)),
        "phase": store.get_meta("phase"),
        "eta_s": eta,
        "study_dir": str(study_dir),
        "fits": [f["law"] for f in store.fits()],
        "jobs": _jobs(runs),
    }


def _jobs(runs) -> list[dict[str, Any]]:
    """The engine's job of each run that went to Ray or Slurm: {"run_id", "status", "engine", "job_id",
    "state"}; Slurm states are asked of the controller now where `squeue` answers, else the driver's last."""
    from scalinglab.study.executors import slurm_states
    out = [
        {"run_id": r["run_id"], "status": r["effective"], "engine": r["job_engine"], "job_id": r["job_id"],
         "state": r["job_state"]}
        for _, r in runs.iterrows() if r["job_id"]
    ]
    ask = [j["job_id"] for j in out if j["engine"] == "slurm" and j["status"] not in ("done", "diverged")]
    if ask and shutil.which("squeue"):
        live = slurm_states(ask) or {}
        for j in out:
            j["state"] = live.get(j["job_id"], j["state"]) if j["engine"] == "slurm" else j["state"]
    return out
