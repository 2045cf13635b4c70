"""The Typer application and the shared output helpers; command modules register onto ``app``.

Commands import their heavy dependencies (torch, matplotlib, ...) inside the command body so that
``scalinglab fit`` starts fast and never loads torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import typer


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException types, Abort types): typer >= 0.29 vendors its own click beside the click package."""
    usage: list[type] = []
    abort: list[type] = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mod = __import__(name, fromlist=["ClickException"])
        except ImportError:
            continue
        if hasattr(mod, "ClickException"):
            usage.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            abort.append(mod.Abort)
    return tuple(usage), tuple(abort)

app = typer.Typer(
    name="scalinglab",
    help="Empirical neural scaling-law science: train ladders, measure the noise scale, fit laws, "
    "evaluate few-shot, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from scalinglab import __version__

        sys.stdout.write(f"scalinglab {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Empirical neural scaling-law science: train ladders, measure the noise scale, fit laws, evaluate
    few-shot, report."""


PIPE_WIDTH = 10_000
"""Console width when stdout is not a terminal (and COLUMNS is unset): tables keep their natural width
instead of being squeezed into rich's 80-column default, so piped output stays one row per line."""


def console(stderr: bool = False):
    """The rich Console every command prints through: the terminal's width on a terminal; when the output
    is piped or redirected, wide enough that no table column wraps (``COLUMNS`` still wins when set)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = PIPE_WIDTH if piped and not os.environ.get("COLUMNS") else None
    return Console(stderr=stderr, width=width)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into plain JSON values."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (numpy values converted, NaN/inf as null)."""
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    """Print one error line on stderr and exit non-zero (no traceback)."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


def _negative_argument(e: Exception) -> str | None:
    """Click reads ``-1e24`` as an unknown option ``-1``: when the "option" is a negative number standing
    where a command's positional number goes, the message says that the value must be positive."""
    name = getattr(e, "option_name", None)
    if not (isinstance(name, str) and name.startswith("-")):
        return None
    value = next((a for a in sys.argv[1:] if a.startswith(name)), name)
    try:
        float(value)
    except ValueError:
        return None
    ctx = getattr(e, "ctx", None)
    cmd = getattr(ctx, "command", None)
    args = [p for p in getattr(cmd, "params", []) if getattr(p, "param_type_name", "") == "argument"]
    what = "the value"
    if args:
        what = str(args[0].name).upper()
        hint = (getattr(args[0], "help", None) or "").split(",")[0].split(".")[0].strip()
        what += f" ({hint[:1].lower()}{hint[1:]})" if hint else ""
    prefix = f"{ctx.info_name}: " if getattr(ctx, "info_name", None) else ""
    return f"{prefix}{what} must be positive, got {value}"


def main() -> None:
    """Console-script entry point: run the app; user errors become one line on stderr and exit 2."""
    from scalinglab import cli as _register  # noqa: F401  (imports every command module)
    from scalinglab.errors import ScalingLabError

    click_errors, click_aborts = _click_exception_types()
    try:
        rv = app(standalone_mode=False)
    except ScalingLabError as e:
        fail(str(e))
    except click_aborts:
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    except click_errors as e:
        negative = _negative_argument(e)
        if negative:
            fail(negative)
        e.show()
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    if isinstance(rv, int) and rv != 0:
        raise SystemExit(rv)
