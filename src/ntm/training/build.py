"""Objects from configs: the task, the model and the device of a run.

:func:`build_task` and :func:`build_model` live in :mod:`ntm.rundir.build` (reading a run needs
them) and are re-exported here; the device is training's own.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..rundir.build import build_model, build_task

__all__ = ["build_model", "build_task", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; asking for missing CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; "
                          "use train.device=cpu or auto")
    return torch.device(name)
