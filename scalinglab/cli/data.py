"""CLI commands for data. Registered on the shared app; heavy imports stay inside the commands."""

from __future__ import annotations

from scalinglab.cli._app import app  # noqa: F401
