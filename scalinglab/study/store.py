"""The study store: one SQLite file (WAL mode) per study, the source of truth for what ran and what it gave.

Tables (every write is one transaction; readers never block the writer):
- `runs`: one row per planned run: `run_id` (hash of its trainer config), `config` (JSON), `roles` (JSON
  list: "grid", "L(N)", "L(D)", "isoflop:<C>", "seed-noise", ...), `status` (pending | running | done |
  diverged | failed), parameter counts under every convention (`n_kaplan`, `n_non_embedding`,
  `n_non_embedding_with_head`, `n_total`, `n_total_without_head`), `n_layer`, `d_model`, `tokens`,
  `batch_size`, `lr`, `seed`, `flops_6n` .. (planned training FLOPs), final losses (nats/token), `wall_s`,
  `owner_pid`/`owner_host`/`heartbeat` (who runs it; a dead owner means the run was interrupted),
  `attempts`, `resumed_from_step` (step of the checkpoint the last attempt resumed from, or null), `error`,
  `job_engine`/`job_id`/`job_state` (the Ray task or Slurm job of the last attempt, as the driver saw it).
- `metrics`: the trainer's metrics rows keyed (run_id, step): re-ingesting after a resume replaces, never
  duplicates. Columns are the pinned metrics keys; anything else goes to `extra` (JSON).
- `noise_scale`: (run_id, step) -> tokens, train_loss, g2, trace, b_simple_tokens (from metrics rows).
- `fits`: one row per law: the FitResult dict, its back-test dict, and `data_hash` (hash of the points it
  was fitted on; an unchanged hash means the fit need not be redone).
- `evals`: one row per evaluation: run_id, task, shots, metric, value, n, record (the full dict, JSON).
- `eval_sets`: (run_id, eval_set) -> loss (nats/token), bpb, tokens: each run's final validation (`val`) and
  every extra evaluation set (Kaplan's transfer, e.g. `text:xz-docs`).
- `position_loss`: (run_id, eval_set, position) -> loss (nats/token), tokens: the final loss at each position
  t = 1..n_ctx of the context (Kaplan Fig. 20), on the same tokens as the set's loss.
- `meta`: key/value (plan hash, phase, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError, StorageError
from scalinglab.faults import point
from scalinglab.io import no_space_message, pid_alive  # noqa: F401  (pid_alive: re-exported)
from scalinglab.model.counting import FLOP_CONVENTIONS
from scalinglab.train.metric_keys import VALUE_KEYS

PARAM_KEYS = ("kaplan", "non_embedding", "non_embedding_with_head", "total", "total_without_head")
FLOP_KEYS = FLOP_CONVENTIONS
METRIC_KEYS = VALUE_KEYS  # one column per trainer metric (the step is the key)
STATUSES = ("pending", "running", "done", "diverged", "failed")
EVAL_KEYS = ("task", "shots", "metric", "value", "n")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, config TEXT NOT NULL, roles TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL DEFAULT 'pending',
  {", ".join(f"n_{k} REAL" for k in PARAM_KEYS)},
  n_layer INTEGER, d_model INTEGER, n_head INTEGER, tokens REAL, batch_size INTEGER, lr REAL, seed INTEGER,
  {", ".join(f"flops_{k} REAL" for k in FLOP_KEYS)},
  final_train_loss REAL, final_val_loss REAL, final_val_bpb REAL, steps INTEGER, wall_s REAL,
  summary TEXT, owner_pid INTEGER, owner_host TEXT, heartbeat REAL, started_at REAL, finished_at REAL,
  attempts INTEGER NOT NULL DEFAULT 0, resumed_from_step INTEGER, error TEXT, created_at REAL,
  job_engine TEXT, job_id TEXT, job_state TEXT);
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT NOT NULL, step INTEGER NOT NULL, {", ".join(f"{k} REAL" for k in METRIC_KEYS)}, extra TEXT,
  PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS noise_scale (
  run_id TEXT NOT NULL, step INTEGER NOT NULL, tokens REAL, train_loss REAL, g2 REAL, trace REAL,
  b_simple_tokens REAL, PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS fits (
  law TEXT PRIMARY KEY, data_hash TEXT NOT NULL, result TEXT NOT NULL, backtest TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS evals (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, task TEXT, shots INTEGER, metric TEXT, value REAL,
  n INTEGER, record TEXT NOT NULL, created_at REAL);
CREATE TABLE IF NOT EXISTS eval_sets (
  run_id TEXT NOT NULL, eval_set TEXT NOT NULL, loss REAL, bpb REAL, tokens INTEGER, record TEXT,
  created_at REAL, PRIMARY KEY (run_id, eval_set));
CREATE TABLE IF NOT EXISTS position_loss (
  run_id TEXT NOT NULL, eval_set TEXT NOT NULL, position INTEGER NOT NULL, loss REAL, tokens INTEGER,
  PRIMARY KEY (run_id, eval_set, position));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

DB_NAME = "scalinglab.db"
_ADDED_RUN_COLUMNS = ("job_engine", "job_id", "job_state")  # added after the first release of the schema


def _num(v: Any) -> Any:
    """A JSON/SQLite-safe scalar: numpy scalars to Python, non-finite floats to None."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    return v


def _dumps(obj: Any) -> str:
    def clean(o: Any) -> Any:
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple, set)):
            return [clean(v) for v in (sorted(o) if isinstance(o, set) else o)]
        if hasattr(o, "tolist"):
            return clean(o.tolist())
        return _num(o)

    return json.dumps(clean(obj), sort_keys=True)


class _Connection(sqlite3.Connection):
    """A connection whose statements turn SQLite's "database or disk is full" and "disk I/O error" (what a
    full disk gives when the WAL or its index cannot grow) into one StorageError naming the database."""

    db_path: Path | None = None

    def _storage_error(self, e: sqlite3.OperationalError) -> Exception:
        msg = str(e)
        if "full" in msg or "disk I/O error" in msg:
            path = self.db_path or Path("scalinglab.db")
            try:
                low = shutil.disk_usage(path.parent).free < 2**20
            except OSError:
                low = False
            text = no_space_message(path) if "full" in msg or low else f"{msg} writing {path}"
            return StorageError(text)
        return e

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.OperationalError as e:
            raise self._storage_error(e) from None

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.OperationalError as e:
            raise self._storage_error(e) from None


class Store:
    """The study's SQLite store: `Store(study_dir)` or `Store(path/to/scalinglab.db)`, multi-process safe."""

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0):
        path = Path(path)
        if path.is_dir() or path.suffix != ".db":
            if path.exists() and not path.is_dir():
                raise InputError(f"{path} is a file, not a study folder or a .db file")
            path.mkdir(parents=True, exist_ok=True)
            path = path / DB_NAME
        self.path = path
        try:
            self.conn = sqlite3.connect(
                str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False,
                factory=_Connection,
            )
        except sqlite3.OperationalError as e:
            raise InputError(f"cannot open the study store {path}: {e}") from None
        self.conn.db_path = path
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        for attempt in range(50):  # switching a new file to WAL needs a lock the busy timeout does not cover
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction() as c:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            have = {r[1] for r in c.execute("PRAGMA table_info(runs)")}
            for col in _ADDED_RUN_COLUMNS:  # a study folder from before these columns existed
                if col not in have:
                    c.execute(f"ALTER TABLE runs ADD COLUMN {col} TEXT")

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on any exception."""
        for attempt in range(50):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:  # busy beyond busy_timeout: back off and retry
                if "locked" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.05 * (attempt + 1))
        try:
            yield self.conn
            point("store.commit")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _frame(self, sql: str, params: Iterable[Any] = ()):
        import pandas as pd

        cur = self.conn.execute(sql, tuple(params))
        cols = [d[0] for d in cur.description]
        return pd.DataFrame([tuple(r) for r in cur.fetchall()], columns=cols)

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ------------------------------------------------------------------ runs
    def add_runs(self, runs: Iterable[tuple[str, dict[str, Any], Iterable[str], dict[str, Any]]]) -> int:
        """Insert planned runs `(run_id, config, roles, counts)`; existing runs keep their status (roles are
        merged). `counts` holds `params` (count_params dict) and `flops_per_token` (dict). Returns #new."""
        new = 0
        now = time.time()
        with self.transaction() as c:
            for rid, cfg, roles, counts in runs:
                row = c.execute("SELECT roles FROM runs WHERE run_id = ?", (rid,)).fetchone()
                if row is not None:
                    merged = sorted(set(json.loads(row[0])) | set(roles))
                    c.execute("UPDATE runs SET roles = ? WHERE run_id = ?", (_dumps(merged), rid))
                    continue
                params = counts.get("params", {})
                fpt = counts.get("flops_per_token", {})
                tokens = float(cfg.get("tokens", 0))
                cols = {
                    "run_id": rid,
                    "config": _dumps(cfg),
                    "roles": _dumps(sorted(set(roles))),
                    "status": "pending",
                    **{f"n_{k}": _num(params.get(k)) for k in PARAM_KEYS},
                    "n_layer": cfg.get("n_layer"),
                    "d_model": cfg.get("d_model"),
                    "n_head": cfg.get("n_head"),
                    "tokens": tokens,
                    "batch_size": cfg.get("batch_size"),
                    "lr": cfg.get("lr"),
                    "seed": cfg.get("seed"),
                    **{
                        f"flops_{k}": (_num(fpt[k]) * tokens if fpt.get(k) is not None else None)
                        for k in FLOP_KEYS
                    },
                    "created_at": now,
                }
                c.execute(
                    f"INSERT INTO runs({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    tuple(cols.values()),
                )
                new += 1
        return new

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise InputError(f"run {run_id} is not in the store {self.path}")
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["roles"] = json.loads(d["roles"])
        d["summary"] = json.loads(d["summary"]) if d["summary"] else None
        return d

    def run_ids(self, status: str | None = None) -> list[str]:
        if status is None:
            return [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY created_at, run_id")]
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT run_id FROM runs WHERE status = ? ORDER BY created_at, run_id", (status,)
            )
        ]

    def claim(self, run_id: str, pid: int | None = None, host: str | None = None) -> bool:
        """Mark a *pending* run `running` for this process (or ``pid``/``host``), atomically: False when it is
        not pending any more (another process claimed it first, or it finished), and then nothing changes."""
        now = time.time()
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'running', owner_pid = ?, owner_host = ?, heartbeat = ?, "
                "started_at = COALESCE(started_at, ?), attempts = attempts + 1, error = NULL "
                "WHERE run_id = ? AND status = 'pending'",
                (pid or os.getpid(), host or socket.gethostname(), now, now, run_id),
            )
            return cur.rowcount == 1

    def heartbeat(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if not ids:
            return
        with self.transaction() as c:
            c.executemany("UPDATE runs SET heartbeat = ? WHERE run_id = ?", [(time.time(), r) for r in ids])

    def finish_run(
        self,
        run_id: str,
        status: str,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
        resumed_from_step: int | None = None,
    ) -> None:
        """Record the outcome of a run: `done`, `diverged` or `failed` (with the error message)."""
        if status not in STATUSES:
            raise InputError(f"status {status!r}: allowed {STATUSES}")
        s = summary or {}
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, summary = ?, final_train_loss = ?, final_val_loss = ?, "
                "final_val_bpb = ?, steps = ?, wall_s = ?, error = ?, finished_at = ?, owner_pid = NULL, "
                "resumed_from_step = COALESCE(?, resumed_from_step) WHERE run_id = ?",
                (
                    status,
                    _dumps(s) if summary is not None else None,
                    _num(s.get("final_train_loss")),
                    _num(s.get("final_val_loss")),
                    _num(s.get("final_val_bpb")),
                    s.get("steps"),
                    _num(s.get("wall_s")),
                    error,
                    time.time(),
                    resumed_from_step,
                    run_id,
                ),
            )

    def set_job(
        self, run_id: str, state: str | None, engine: str | None = None, job_id: str | None = None
    ) -> None:
        """Record the engine's job of a run's current attempt (engine and id at submission) and its state."""
        with self.transaction() as c:
            if engine is not None or job_id is not None:
                c.execute(
                    "UPDATE runs SET job_engine = ?, job_id = ?, job_state = ? WHERE run_id = ?",
                    (engine, job_id, state, run_id),
                )
            else:
                c.execute("UPDATE runs SET job_state = ? WHERE run_id = ?", (state, run_id))

    def set_resumed(self, run_id: str, step: int | None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET resumed_from_step = ? WHERE run_id = ?", (step, run_id))

    def reset_interrupted(self, stale_s: float = 600.0) -> list[str]:
        """Runs marked `running` whose owner is gone (dead pid on this host, or no heartbeat for `stale_s`
        elsewhere) go back to `pending`; `failed` runs are retried too. Returns their ids."""
        host = socket.gethostname()
        now = time.time()
        back = []
        rows = self.conn.execute(
            "SELECT run_id, status, owner_pid, owner_host, heartbeat FROM runs "
            "WHERE status IN ('running', 'failed')"
        ).fetchall()
        for r in rows:
            if r["status"] == "failed":
                back.append(r)
            elif r["owner_host"] == host:
                if not pid_alive(r["owner_pid"]):
                    back.append(r)
            elif now - (r["heartbeat"] or 0) > stale_s:
                back.append(r)
        done = []
        with self.transaction() as c:
            for r in back:  # only if unchanged since read: another process may have claimed it meanwhile
                cur = c.execute(
                    "UPDATE runs SET status = 'pending', owner_pid = NULL WHERE run_id = ? AND status = ? "
                    "AND owner_pid IS ? AND heartbeat IS ?",
                    (r["run_id"], r["status"], r["owner_pid"], r["heartbeat"]),
                )
                if cur.rowcount == 1:
                    done.append(r["run_id"])
        return done

    def is_live(self, row: dict[str, Any], stale_s: float = 600.0) -> bool:
        """Whether a `running` row's owner is alive (pid on this host, heartbeat elsewhere)."""
        if row.get("status") != "running":
            return False
        if row.get("owner_host") == socket.gethostname():
            return pid_alive(row.get("owner_pid"))
        return time.time() - (row.get("heartbeat") or 0) <= stale_s

    def counts(self) -> dict[str, int]:
        """Runs per status; `running` rows with a dead owner count as `pending` (they will be re-run)."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.conn.execute("SELECT status, owner_pid, owner_host, heartbeat FROM runs").fetchall():
            st = r["status"]
            if st == "running" and not self.is_live(dict(r)):
                st = "pending"
            out[st] += 1
        return out

    def runs_frame(self):
        """All runs as a DataFrame (config, roles and summary as JSON strings; one column per param count)."""
        return self._frame("SELECT * FROM runs ORDER BY created_at, run_id")

    # ------------------------------------------------------------------ metrics
    def add_metrics(self, run_id: str, rows: Iterable[dict[str, Any]]) -> int:
        """Insert-or-replace the trainer's metrics rows (keyed by step) and their noise-scale values."""
        mrows, nrows, gone = [], [], []
        for row in rows:
            if "step" not in row:
                raise InputError(f"metrics row for run {run_id} has no 'step': {row}")
            step = int(row["step"])
            extra = {k: v for k, v in row.items() if k not in METRIC_KEYS and k != "step"}
            mrows.append(
                (run_id, step, *(_num(row.get(k)) for k in METRIC_KEYS), _dumps(extra) if extra else None)
            )
            if row.get("gns_b_simple_tokens") is not None or row.get("gns_g2") is not None:
                nrows.append(
                    (
                        run_id,
                        step,
                        _num(row.get("tokens")),
                        _num(row.get("train_loss")),
                        _num(row.get("gns_g2")),
                        _num(row.get("gns_trace")),
                        _num(row.get("gns_b_simple_tokens")),
                    )
                )
            else:
                gone.append((run_id, step))
        if not mrows:
            return 0
        cols = ("run_id", "step", *METRIC_KEYS, "extra")
        with self.transaction() as c:
            c.executemany(
                f"INSERT OR REPLACE INTO metrics({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                mrows,
            )
            c.executemany("INSERT OR REPLACE INTO noise_scale VALUES (?, ?, ?, ?, ?, ?, ?)", nrows)
            c.executemany("DELETE FROM noise_scale WHERE run_id = ? AND step = ?", gone)
        return len(mrows)

    def metrics_frame(self, run_id: str | None = None):
        """Metrics rows (one per run and logged step), ordered by run and step."""
        if run_id is None:
            return self._frame("SELECT * FROM metrics ORDER BY run_id, step")
        return self._frame("SELECT * FROM metrics WHERE run_id = ? ORDER BY step", (run_id,))

    def noise_frame(self):
        """Noise-scale measurements: run_id, step, tokens, train_loss, g2, trace, b_simple_tokens."""
        return self._frame("SELECT * FROM noise_scale ORDER BY run_id, step")

    # ------------------------------------------------------------------ fits
    def drop_fit(self, law: str) -> bool:
        """Remove the stored fit of ``law`` (it no longer describes the runs); True if there was one."""
        with self.transaction() as c:
            return c.execute("DELETE FROM fits WHERE law = ?", (law,)).rowcount > 0

    def put_fit(
        self, law: str, data_hash: str, result: dict[str, Any], backtest: dict[str, Any] | None
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO fits(law, data_hash, result, backtest, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    law,
                    data_hash,
                    _dumps(result),
                    _dumps(backtest) if backtest is not None else None,
                    time.time(),
                ),
            )

    def fit_hash(self, law: str) -> str | None:
        row = self.conn.execute("SELECT data_hash FROM fits WHERE law = ?", (law,)).fetchone()
        return row[0] if row else None

    def fits(self) -> list[dict[str, Any]]:
        """Every stored fit: {"law", "data_hash", "result" (FitResult dict), "backtest" (dict or None)}."""
        out = []
        for r in self.conn.execute("SELECT * FROM fits ORDER BY created_at, law").fetchall():
            out.append(
                {
                    "law": r["law"],
                    "data_hash": r["data_hash"],
                    "result": json.loads(r["result"]),
                    "backtest": json.loads(r["backtest"]) if r["backtest"] else None,
                    "created_at": r["created_at"],
                }
            )
        return out

    def delete_fits(self, keep: Iterable[str]) -> None:
        keep = list(keep)
        with self.transaction() as c:
            c.execute(f"DELETE FROM fits WHERE law NOT IN ({', '.join('?' * len(keep))})", keep)

    # ------------------------------------------------------------------ evals
    def add_eval(self, run_id: str | None, record: dict[str, Any]) -> int:
        """Store one evaluation result. `record` may hold `task`, `shots`, `metric`, `value`, `n` (columns of
        their own) and anything else (kept in `record`, JSON). Returns the row id."""
        if not isinstance(record, dict):
            raise InputError(f"eval record must be a dict, got {type(record).__name__}")
        vals = (
            run_id,
            record.get("task"),
            record.get("shots"),
            record.get("metric"),
            _num(record.get("value")),
            record.get("n"),
            _dumps(record),
            time.time(),
        )
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO evals(run_id, task, shots, metric, value, n, record, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                vals,
            )
            return int(cur.lastrowid)

    def evals_frame(self):
        """Evaluations: id, run_id, task, shots, metric, value, n, created_at, plus every other record key."""
        import pandas as pd

        df = self._frame("SELECT * FROM evals ORDER BY id")
        if df.empty:
            return df.drop(columns=["record"])
        extra = pd.DataFrame([json.loads(r) for r in df["record"]])
        extra = extra[[c for c in extra.columns if c not in df.columns]]
        return pd.concat([df.drop(columns=["record"]), extra], axis=1)

    # ------------------------------------------------------------------ eval sets and loss by position
    def put_eval_set(self, run_id: str, eval_set: str, result: dict[str, Any]) -> None:
        """Store one run's result on one evaluation set (``val`` = its own validation split), replacing an
        earlier one: ``result`` holds ``loss`` (nats/token), ``bpb``, ``tokens`` and, optionally,
        ``loss_by_position`` / ``tokens_by_position`` (lists over positions 1..n_ctx); the rest is kept as
        JSON in ``record``."""
        pos = result.get("loss_by_position") or []
        cnt = result.get("tokens_by_position") or [None] * len(pos)
        rest = {k: v for k, v in result.items() if k not in ("loss_by_position", "tokens_by_position")}
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO eval_sets(run_id, eval_set, loss, bpb, tokens, record, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, eval_set, _num(result.get("loss")), _num(result.get("bpb")), result.get("tokens"),
                 _dumps(rest), time.time()),
            )
            if pos:
                c.execute("DELETE FROM position_loss WHERE run_id = ? AND eval_set = ?", (run_id, eval_set))
                pairs = enumerate(zip(pos, cnt, strict=True))
                rows = [(run_id, eval_set, t + 1, _num(v), n) for t, (v, n) in pairs]
                c.executemany(
                    "INSERT INTO position_loss(run_id, eval_set, position, loss, tokens) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    def eval_set_names(self, run_id: str) -> set[str]:
        """The evaluation sets stored for a run (``val`` included once its loss by position is in)."""
        rows = self.conn.execute("SELECT eval_set FROM eval_sets WHERE run_id = ?", (run_id,)).fetchall()
        return {r[0] for r in rows}

    def eval_sets_frame(self):
        """Final losses per run and evaluation set: run_id, eval_set, loss (nats/token), bpb, tokens."""
        return self._frame(
            "SELECT run_id, eval_set, loss, bpb, tokens, created_at FROM eval_sets ORDER BY run_id, eval_set"
        )

    def position_frame(self, run_id: str | None = None, eval_set: str | None = None):
        """The final loss by context position: run_id, eval_set, position (1..n_ctx), loss (nats/token),
        tokens (targets counted at that position)."""
        sql, args = "SELECT * FROM position_loss", []
        where = [(k, v) for k, v in (("run_id", run_id), ("eval_set", eval_set)) if v is not None]
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k, _ in where)
            args = [v for _, v in where]
        return self._frame(sql + " ORDER BY run_id, eval_set, position", args)

    # ------------------------------------------------------------------ export
    def export(self, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
        """Write every table to `out_dir/<table>.<fmt>` (parquet or csv), atomically per file."""
        if fmt not in ("parquet", "csv"):
            raise InputError(f"export format {fmt!r}: allowed 'parquet' or 'csv'")
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"export folder {out_dir} is a file")
        out_dir.mkdir(parents=True, exist_ok=True)
        frames = {
            "runs": self.runs_frame(),
            "metrics": self.metrics_frame(),
            "noise_scale": self.noise_frame(),
            "fits": self._frame("SELECT * FROM fits ORDER BY law"),
            "evals": self.evals_frame(),
            "eval_sets": self.eval_sets_frame(),
            "position_loss": self.position_frame(),
        }
        paths = []
        for name, df in frames.items():
            path = out_dir / f"{name}.{fmt}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            if fmt == "parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            paths.append(path)
        return paths
