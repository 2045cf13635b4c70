"""``import scalinglab.laws`` stays light: well under a second, and never torch."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_fast_and_torch_free():
    code = (
        "import sys, time; t = time.perf_counter(); import scalinglab.laws; "
        "import scalinglab.laws.batch; dt = time.perf_counter() - t; "
        "import scalinglab.laws.fit, scalinglab.laws.allocate, scalinglab.laws.presets; "
        "print(dt, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    dt, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    assert float(dt) < 1.0
