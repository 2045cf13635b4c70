"""Headless Chromium for the report tests (Debian's `chromium`; CI installs it in .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


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
