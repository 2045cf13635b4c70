"""The command line's manners: --version, tables that keep their width when piped, negative numbers."""

from __future__ import annotations

import subprocess
import sys

import scalinglab


def _cli(*args, env=None):
    exe = [sys.executable, "-c", "from scalinglab.cli import main; main()"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120, env=env)


def test_version(cli):
    code, out, err = cli("--version")
    assert code == 0 and out.strip() == f"scalinglab {scalinglab.__version__}"


def test_piped_table_keeps_its_width():
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    p = _cli("presets", env=env)  # stdout is a pipe here
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    rows = [ln for ln in lines if ln.startswith("│ kaplan2020-N ")]
    assert len(rows) == 1  # one row is one line: no cell wrapped onto a second line
    assert "Kaplan et al. 2020" in rows[0] and "N_c=8.8e+13" in rows[0]
    header = next(ln for ln in lines if ln.startswith("┃ name"))
    assert len(header) > 200  # wider than rich's 80-column default for pipes


def test_columns_env_still_wins():
    import os

    p = _cli("presets", env={**os.environ, "COLUMNS": "100"})
    assert p.returncode == 0 and max(len(ln) for ln in p.stdout.splitlines()) <= 100


def test_negative_budget_says_positive(cli):
    code, out, err = cli("allocate", "-1e24")
    assert code == 2
    assert err.strip() == "error: allocate: FLOPS (compute budget C in FLOPs) must be positive, got -1e24"
    code, out, err = cli("allocate", "0")
    assert code == 2 and "must be positive" in err
    # a misspelt option is still reported as one
    code, out, err = cli("allocate", "1e24", "--lwa", "x")
    assert code == 2 and "No such option" in err
