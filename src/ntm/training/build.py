"""Objects from configs: the task, the model and the device of a run."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import tasks
from ..baselines import LSTMBaseline
from ..model import NTM
from .config import ModelConfig, TaskConfig
from .errors import ConfigError

__all__ = ["build_model", "build_task", "resolve_device"]

_CONTROLLERS = {"ntm-lstm": "lstm", "ntm-ff": "feedforward"}


def build_task(config: TaskConfig, **overrides: Any) -> tasks.Task:
    """``ntm.tasks.make(config.name, **config.params, **overrides)``, errors as ConfigError.

    The task is checked with :func:`ntm.tasks.check_task` (its sizes, and the shapes and dtypes
    of one small batch), so that a custom task's mistake is one line naming what was expected,
    before any model sees a batch.
    """
    try:
        task = tasks.make(config.name, **{**config.params, **overrides})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task {config.name!r}: {error}") from None
    try:
        tasks.check_task(task)
    except (TypeError, ValueError) as error:
        # Chained: the error may come from a bug inside the task's own sample().
        raise ConfigError(f"task {config.name!r}: {error}") from error
    return task


def build_model(
    config: ModelConfig,
    input_size: int,
    output_size: int,
    *,
    device: torch.device | str | None = None,
) -> nn.Module:
    """The model ``config`` describes, for a task of the given input and output sizes.

    ``"ntm-lstm"``/``"ntm-ff"`` give :class:`ntm.NTM` with an LSTM/feedforward controller;
    ``"lstm"`` gives :class:`ntm.baselines.LSTMBaseline`. Both map ``[steps, batch,
    input_size]`` to logits ``[steps, batch, output_size]``.
    """
    try:
        if config.kind == "lstm":
            return LSTMBaseline(input_size, output_size, hidden_size=config.hidden_size,
                                num_layers=config.num_layers, device=device)
        return NTM(
            input_size,
            output_size,
            controller=_CONTROLLERS[config.kind],
            controller_size=config.controller_size,
            controller_layers=config.controller_layers,
            memory_slots=config.memory_slots,
            memory_width=config.memory_width,
            read_heads=config.read_heads,
            write_heads=config.write_heads,
            shift_range=config.shift_range,
            memory_init=config.memory_init,
            fused=config.fused,
            device=device,
        )
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; asking for missing CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; "
                          "use train.device=cpu or auto")
    return torch.device(name)
