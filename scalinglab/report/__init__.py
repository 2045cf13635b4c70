"""The study report: the seed papers' figures (PNG + PDF) and one self-contained HTML page.

``build_report(study_dir)`` reads the study store and writes ``study_dir/report/index.html``;
``render_report(StudyData, out_dir)`` does the same for frames from anywhere. matplotlib is imported
lazily (Agg backend), only when a report is drawn.
"""

from __future__ import annotations

__all__ = ["build_report", "render_report", "StudyData", "load_study", "plot_fit"]

_LAZY = {
    "build_report": ("scalinglab.report.build", "build_report"),
    "render_report": ("scalinglab.report.build", "render_report"),
    "StudyData": ("scalinglab.report.data", "StudyData"),
    "load_study": ("scalinglab.report.data", "load_study"),
    "plot_fit": ("scalinglab.report.plot_fit", "plot_fit"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'scalinglab.report' has no attribute {name!r}")
