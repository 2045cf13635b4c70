"""Errors a user can act on. The CLI prints their message as one line and exits non-zero, no traceback."""

from __future__ import annotations


class ScalingLabError(Exception):
    """Base class: a problem with the user's input or environment, explained in the message."""


class InputError(ScalingLabError, ValueError):
    """Malformed or invalid input data (missing column, NaN, non-positive value, bad shape, ...)."""


class FitError(ScalingLabError):
    """A fit could not be attempted (too few points for the form, no finite start, ...)."""


class ConfigError(ScalingLabError, ValueError):
    """An invalid configuration or study plan: the message names the key, the value and what is allowed."""


class DivergedError(ScalingLabError):
    """A training run's loss became NaN or inf."""


class StorageError(ScalingLabError, OSError):
    """A file could not be written for want of space (or quota): the message names the path. Nothing written
    before is lost; free space and run the same command again."""
