"""The errors raised for bad input; the command line turns them into one-line messages.

They sit below everything else (this module imports nothing of the package), so that models,
run directories, training and the command line all raise and catch the same classes.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ModelModuleError",
    "NTMError",
    "RunDirError",
    "TaskModuleError",
    "TrainingDiverged",
    "WriteError",
]


class NTMError(Exception):
    """Base class of the errors caused by the user's input rather than by a bug."""


class ConfigError(NTMError, ValueError):
    """An unknown configuration key, a value of the wrong type, or an invalid combination."""


class TaskModuleError(NTMError, ImportError):
    """A task module (``task.module``, ``--task-module``) that cannot be imported.

    Not a :class:`ConfigError`: the config is sound, the module is missing from ``sys.path`` (or
    failed while running), so loading a run reports this rather than a corrupt ``config.json``.
    """


class ModelModuleError(NTMError, ImportError):
    """A model module (``model.module``, ``--model-module``) that cannot be imported; see
    :class:`TaskModuleError`."""


class RunDirError(NTMError):
    """A run directory that is missing, incomplete, corrupt or belongs to another model."""


class WriteError(RunDirError, OSError):
    """A file of a run that could not be written (no space left, a read-only or unwritable
    directory, ...). The file it would have replaced is intact and no partial file is left.

    Also an :class:`OSError`, which is what it wraps (an error of the file system, or of the
    safetensors writer that reports one), so that code catching ``OSError`` still catches it.
    """


class TrainingDiverged(NTMError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""
