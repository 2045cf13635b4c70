"""Command-line interface: a thin layer over the library (parse, call, print with rich).

Each capability owns one module here that registers its commands on the shared Typer ``app``.
"""

from __future__ import annotations

from scalinglab.cli._app import app, main, print_json  # noqa: F401
from scalinglab.cli import laws, model, train, data, noise, study, report, evals  # noqa: F401,E402,I001

__all__ = ["app", "main", "print_json"]
