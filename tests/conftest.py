"""Shared fixtures. Real data from ../shared/data is read in place (never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCALINGLAB_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("SCALINGLAB_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder ../shared/data; the test is skipped, with the reason printed, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set SCALINGLAB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def chinchilla_csv(shared_data: Path) -> Path:
    path = shared_data / "chinchilla_epoch_svg_extracted.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the console entry point in-process: ``cli("allocate", "1e22")`` -> (exit code, stdout, stderr)."""
    import sys

    def call(*args):
        from scalinglab.cli._app import main

        monkeypatch.setattr(sys, "argv", ["scalinglab", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
