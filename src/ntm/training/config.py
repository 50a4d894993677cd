"""Typed configuration of a training run: :mod:`ntm.rundir.config`, re-exported under its older
name, with the model configs of :mod:`ntm.models`.

``ModelConfig(kind=..., **fields)`` is the older spelling of a model's config: it returns the
kind's own dataclass (:class:`ntm.models.NTMConfig`, :class:`ntm.models.LSTMConfig`, ...).
"""

from __future__ import annotations

from typing import Any

from .. import models
from ..models import LSTMConfig, NTMConfig
from ..rundir.build import import_model_module, import_task_module, task_defaults, validate_task
from ..rundir.config import (
    SECTIONS,
    SEED_LIMIT,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_overrides,
)

__all__ = [
    "MODEL_KINDS",  # noqa: F822 - served by __getattr__ below
    "SECTIONS",
    "SEED_LIMIT",
    "LSTMConfig",
    "ModelConfig",
    "NTMConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "import_model_module",
    "import_task_module",
    "task_defaults",
    "validate_task",
]


def __getattr__(name: str) -> Any:
    if name == "MODEL_KINDS":  # the older constant: the names registered now
        return tuple(models.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
