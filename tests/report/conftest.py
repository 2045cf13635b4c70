"""Fixtures for the report tests: a synthetic study from a known law, rendered once per session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scalinglab.report.data import StudyData
from scalinglab.report.synthetic import synthetic_study


@pytest.fixture(scope="session")
def study():
    return synthetic_study(50, seed=0)


@pytest.fixture(scope="session")
def study_data(study) -> StudyData:
    return StudyData.from_frames(study.runs, study.metrics, [], study.evals, name="synthetic")


@pytest.fixture(scope="session")
def rendered(study_data, tmp_path_factory):
    """The full report of the 50-run synthetic study (PNG + PDF), built once."""
    from scalinglab.report.build import render_report

    out = tmp_path_factory.mktemp("study") / "report"
    return render_report(study_data, out)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(
    html: Path, tmp: Path, *, screenshot: Path | None = None, dump_dom: bool = False, timeout: float = 90
) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file, offline, console messages logged to stderr."""
    exe = chromium_binary()
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,3000",
        "--virtual-time-budget=5000",
        "--hide-scrollbars",
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    if dump_dom:
        args.append("--dump-dom")
    args.append(html.resolve().as_uri())
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
