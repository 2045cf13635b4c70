"""The GPU benchmark cannot run in CI, so its code is run here on the CPU (``--smoke``): the first session
with a GPU must not find it broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_its_code_on_cpu():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_train_gpu.py"), "--smoke"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "device cpu (smoke)" in out.stdout and "tokens/s" in out.stdout
    loss = float(out.stdout.split("loss ")[1].split()[0])
    assert 0 < loss < 8.0  # finite, near ln(1024) = 6.9 nats for a model that trained 3 steps
