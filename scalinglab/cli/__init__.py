"""Command-line interface: a thin layer over the library (parse, call, print with rich).

Each capability owns one module here that registers its commands on the shared Typer ``app``.
"""

from __future__ import annotations

from scalinglab.cli import budget, data, evals, laws, model, noise, report, study, train  # noqa: F401
from scalinglab.cli._app import app, main, print_json

__all__ = ["app", "main", "print_json"]
