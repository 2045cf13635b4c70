"""A persistent cache of request results, keyed by model identity, request type and arguments.

The key is ``sha256(json([identity, request_type, args]))`` where ``identity`` holds the model's path,
weights hash, dtype and context length, so two models never share an entry (the harness's cache key
omits the model: lm-evaluation-harness issue #2715). Generations are cached only from models that decode
greedily (``lm.greedy_generation`` true); sampled generations are never cached. Storage: one SQLite file
(WAL mode, one transaction per call, so an interrupted run leaves only whole entries).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError
from scalinglab.evals.lm import LM, GenRequest, LogLik


def request_key(identity: dict[str, Any], kind: str, args: Any) -> str:
    """The cache key of one request."""
    blob = json.dumps([identity, kind, args], sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachingLM:
    """Wrap an ``LM``; results found in ``path`` are not recomputed. ``hits``/``misses`` count requests."""

    def __init__(self, lm: LM, path: str | Path) -> None:
        identity = getattr(lm, "identity", None)
        if not identity or not identity.get("weights"):
            raise InputError("CachingLM needs lm.identity with a 'weights' hash (the model's identity)")
        self.lm, self.identity = lm, dict(identity)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()
        self.hits = self.misses = 0

    def close(self) -> None:
        self._db.close()

    def _cached(self, kind: str, requests: Sequence, compute: Callable[[list], list],
                encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> list:
        keys = [request_key(self.identity, kind, list(r) if isinstance(r, tuple) else r) for r in requests]
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(part))})"
            found.update((k, decode(json.loads(v))) for k, v in self._db.execute(q, part))
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = compute([requests[i] for i in todo])
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)",
                                     [(keys[i], json.dumps(encode(v)))
                                      for i, v in zip(todo, fresh, strict=True)])
            for i, v in zip(todo, fresh, strict=True):
                found[keys[i]] = v
        return [found[k] for k in keys]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LogLik]:
        return self._cached("loglikelihood", requests, self.lm.loglikelihood,
                            lambda r: [r[0], r[1], getattr(r, "n_tokens", 0)], lambda v: LogLik(*v))

    def loglikelihood_rolling(self, requests: Sequence[str]) -> list[float]:
        return self._cached("loglikelihood_rolling", requests, self.lm.loglikelihood_rolling, float, float)

    def generate_until(self, requests: Sequence[GenRequest]) -> list[str]:
        if not getattr(self.lm, "greedy_generation", False):
            return self.lm.generate_until(requests)  # sampled: never cached
        norm = [(c, [u] if isinstance(u, str) else list(u), int(m)) for c, u, m in requests]
        return self._cached("generate_until", norm, self.lm.generate_until, str, str)
