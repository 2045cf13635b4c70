"""The ``Task`` base class: documents per split and the prompt presets that turn them into requests."""

from __future__ import annotations

from typing import Any, ClassVar

from scalinglab.errors import ConfigError
from scalinglab.evals.prompts import Doc, Preset


class Task:
    """A task: ``docs(split)`` (each doc a dict with a unique ``id``) and named ``presets``.

    Subclasses set ``presets`` (name -> Preset), ``default_preset``, ``eval_split`` and ``fewshot_split``,
    and implement ``docs``. ``version`` is bumped on any change of data or prompt (it is stored with results).
    """

    name: str = ""
    version: ClassVar[int] = 1
    eval_split: str = "test"
    fewshot_split: str = "train"
    default_preset: str = ""
    presets: dict[str, Preset] = {}
    uses_data: ClassVar[bool] = False  # its documents come from the model's own dataset: built with data=SPEC

    def docs(self, split: str) -> list[Doc]:
        raise NotImplementedError

    def preset(self, name: str | None = None) -> Preset:
        key = name or self.default_preset
        if key not in self.presets:
            choices = ", ".join(self.presets)
            raise ConfigError(f"task {self.name}: unknown preset {key!r}; choose one of {choices}")
        return self.presets[key]

    def decontamination_text(self, doc: Doc, preset: str | None = None) -> str:
        """The text searched in the training corpus by the contamination check: the prompt and answer as
        the evaluated ``preset`` writes them (the task's default preset when None)."""
        return self.preset(preset).demo(doc)


def count_option(task: str, key: str, value: Any, minimum: int = 1, maximum: int = 10**6) -> int:
    """A task's integer option (a number of documents, a length), checked: a ConfigError names it."""
    try:
        v = int(value)
        ok = not isinstance(value, bool) and v == float(value) and minimum <= v <= maximum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{task}: {key}={value!r}: expected an integer from {minimum} to {maximum}")
    return v
