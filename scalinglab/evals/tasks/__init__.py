"""The task registry. A task is data plus a small class; adding one is adding one module to this package.

Every module in ``scalinglab/evals/tasks/`` is imported on the first lookup, and registers its tasks with
``@register("family.name")`` on a ``Task`` subclass (or a factory returning a ``Task``). Nothing else changes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

from scalinglab.errors import ConfigError
from scalinglab.evals.tasks.base import Task

_REGISTRY: dict[str, Callable[..., Task]] = {}
_LOADED = False


def register(name: str) -> Callable:
    """Class/factory decorator: ``get_task(name, **kw)`` will call it with ``name=name, **kw``."""

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ConfigError(f"task {name!r} registered twice")
        _REGISTRY[key] = factory
        return factory

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_task(name: str, **kwargs: Any) -> Task:
    """The task called ``name`` (case-insensitive). A trailing ``*`` selects a family: see ``expand``."""
    _load_all()
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    factory = _REGISTRY[key]
    try:
        inspect.signature(factory).bind(name=key, **kwargs)
    except TypeError as e:  # an option the task does not take
        known = [p for p in inspect.signature(factory).parameters if p not in ("self", "name")]
        raise ConfigError(f"task {key}: {e}; its options: {', '.join(known) or 'none'}") from None
    return factory(name=key, **kwargs)


def data_kwargs(name: str, data: str) -> dict[str, Any]:
    """``get_task`` keywords for evaluating a model trained on ``data`` (a data spec): ``{"data": data}`` for
    a task whose documents come from that dataset (``Task.uses_data``), else none."""
    _load_all()
    factory = _REGISTRY.get(name.lower())
    return {"data": data} if getattr(factory, "uses_data", False) else {}


def expand(names: str | list[str]) -> list[str]:
    """Task names from a comma-separated string or list; ``arithmetic`` or ``arithmetic.*`` is a family."""
    _load_all()
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in (x.strip().lower() for x in items):
        if not item:
            continue
        if item in _REGISTRY:
            out.append(item)
            continue
        fam = item.removesuffix(".*").removesuffix("*")
        members = [t for t in sorted(_REGISTRY) if t.startswith(fam + ".")]
        if not members:
            raise ConfigError(f"unknown task {item!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
        out.extend(members)
    return list(dict.fromkeys(out))


__all__ = ["Task", "register", "get_task", "list_tasks", "expand", "data_kwargs"]
