"""The errors training raises for bad input (defined in :mod:`ntm.errors`, re-exported here)."""

from __future__ import annotations

from ..errors import (
    ConfigError,
    ModelModuleError,
    NTMError,
    RunDirError,
    TaskModuleError,
    TrainingDiverged,
)

__all__ = ["ConfigError", "ModelModuleError", "NTMError", "RunDirError", "TaskModuleError",
           "TrainingDiverged"]
