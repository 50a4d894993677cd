"""The errors training raises for bad input; the command line turns them into one-line messages."""

from __future__ import annotations

__all__ = ["ConfigError", "NTMError", "RunDirError", "TrainingDiverged"]


class NTMError(Exception):
    """Base class of the errors caused by the user's input rather than by a bug."""


class ConfigError(NTMError, ValueError):
    """An unknown configuration key, a value of the wrong type, or an invalid combination."""


class RunDirError(NTMError):
    """A run directory that is missing, incomplete, corrupt or belongs to another model."""


class TrainingDiverged(NTMError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""
