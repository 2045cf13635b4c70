"""The short fault soak: the tiny study of bench/soak_study.py SIGKILLed five times (mid-training, while a
checkpoint is written, inside a store transaction, while fitting, mid-report), restarted after each, ends
identical to the uninterrupted study run alongside (runs, bit-identical losses and metrics, fits, no
temporary file left). The long soak (>= 20 seeded moments) is `python bench/soak_study.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_five_kills_change_nothing(tmp_path: Path) -> None:
    kinds = "train.step,write:ckpt.pt,store.commit,fit.law,report.figure:3"
    p = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak_study.py"), "--kinds", kinds, "--seed", "3",
         "--laws", "L(N)", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    out = p.stdout
    assert "kills survived: 5/5, runs lost: 0, fits equal: yes" in out, out
    for k in ("train.step", "write:ckpt.pt", "store.commit", "fit.law", "report.figure"):
        assert any(line.strip().startswith(k) and "killed" in line for line in out.splitlines()), (k, out)
    assert "same as the uninterrupted study" in out and "DIFFERS" not in out
