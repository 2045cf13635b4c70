"""Everything a figure or table reads, computed once per report: derived tables, fits, allocations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scalinglab.report import derive
from scalinglab.report.data import StudyData
from scalinglab.report.fits import FitView, collect_fits


@dataclass
class Context:
    data: StudyData
    pts: pd.DataFrame  # final points of finished runs (derive.final_points)
    cur: pd.DataFrame  # learning curves (derive.curves)
    fits: dict[str, FitView]
    fit_why: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)  # figure name -> why it is not drawn
    notes: dict[str, list[str]] = field(default_factory=dict)  # figure name -> caption notes
    cache: dict[str, Any] = field(default_factory=dict)
    fit_missing: bool = True  # fit what the store lacks (False: `report --no-fit`, stored fits only)

    def skip(self, name: str, reason: str) -> None:
        """Record why figure ``name`` is not drawn; figure functions ``return ctx.skip(...)`` (None)."""
        self.skipped[name] = reason

    def note(self, name: str, text: str) -> None:
        self.notes.setdefault(name, []).append(text)

    def fit(self, key: str, figure: str) -> FitView | None:
        """The fit ``key``, or None with a caption note saying why it is missing."""
        v = self.fits.get(key)
        if v is None:
            self.note(figure, f"No {key} fit: {self.fit_why.get(key, 'not available')}.")
        else:
            self.note(figure, v.describe())
            if not v.converged:
                self.note(figure, f"The {v.title} fit did not converge; read its curve with care.")
        return v

    @property
    def n_label(self) -> str:
        return (
            "N, non-embedding parameters"
            if self.data.param_count == "kaplan"
            else "N, parameters (all, with embeddings)"
        )


def build_context(data: StudyData, *, fit_missing: bool = True) -> Context:
    fits, why = collect_fits(data, fit_missing=fit_missing)
    return Context(data=data, pts=derive.final_points(data), cur=derive.curves(data), fits=fits, fit_why=why,
                   fit_missing=fit_missing)
