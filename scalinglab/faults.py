"""Fault points: named places where a durability test or the soak (``bench/soak_study.py``) kills the process.

``SCALINGLAB_FAULT=NAME:N`` makes the process SIGKILL itself the N-th time it passes ``point(NAME)``
(``NAME`` alone: the first time). ``SCALINGLAB_FAULT_TRACE=FILE`` appends the name of every point passed to
FILE, one a line, so a harness can count them. Unset (always, outside tests), a point costs one lookup.

Points: ``train.step`` (after each optimizer step), ``write:<file name>`` (an atomic write, its temporary
file complete but not yet renamed: ``write:ckpt.pt`` is a checkpoint), ``store.commit`` (inside a store
transaction, before COMMIT), ``fit.law`` (a law fitted, not yet stored), ``report.figure`` (before each
figure), ``swap`` (a folder switch in ``scalinglab.io.replace_dir``, between its steps).
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_counts: dict[str, int] = {}
_parsed: tuple[str | None, str, int] = (None, "", 0)


def point(name: str) -> None:
    """Pass the fault point ``name``: killed here if ``SCALINGLAB_FAULT`` asks for it (see the module doc)."""
    spec = os.environ.get("SCALINGLAB_FAULT")
    trace = os.environ.get("SCALINGLAB_FAULT_TRACE")
    if not spec and not trace:
        return
    global _parsed
    with _lock:
        if trace:
            with open(trace, "a") as f:
                f.write(name + "\n")
        if not spec:
            return
        if _parsed[0] != spec:
            target, _, n = spec.rpartition(":")
            _parsed = (spec, target, int(n)) if n.isdigit() and target else (spec, spec, 1)
        _, target, n = _parsed
        if name != target:
            return
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] == n:
            os.kill(os.getpid(), signal.SIGKILL)
