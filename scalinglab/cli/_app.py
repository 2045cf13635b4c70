"""The Typer application and the shared output helpers; command modules register onto ``app``.

Commands import their heavy dependencies (torch, matplotlib, ...) inside the command body so that
``scalinglab fit`` starts fast and never loads torch.
"""

from __future__ import annotations

import json
import math
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


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into plain JSON values."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if np is not None:
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
        e.show()
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    if isinstance(rv, int) and rv != 0:
        raise SystemExit(rv)
