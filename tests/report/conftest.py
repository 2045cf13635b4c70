"""Fixtures for the report tests: a synthetic study from a known law, rendered once per session."""

from __future__ import annotations

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
