"""Models trained on the paper's tasks, shipped inside the package.

Each model is a small run directory under this package, ``TASK-MODEL/``, holding the
``config.json`` it was trained with, its weights in ``model.safetensors`` (no pickle) and its
``metrics.jsonl`` learning curve. Everything loads offline, through :mod:`ntm.rundir` (this
package does not import :mod:`ntm.training`).

>>> import ntm
>>> "copy-ntm-lstm" in ntm.pretrained.list()
True
"""

from __future__ import annotations

import builtins
from pathlib import Path

from torch import nn

from ..rundir import DEFAULT_SHIPPED_MODEL, load_run, shipped_names, shipped_run_dir

DEFAULT_MODEL = DEFAULT_SHIPPED_MODEL


def list() -> builtins.list[str]:  # noqa: A001 - the name the API promises
    """Names of the shipped models, ``"TASK-MODEL"``, sorted."""
    return shipped_names()


def run_dir(name: str) -> Path:
    """The directory of a shipped model: ``"copy"`` (the LSTM-controller NTM) or ``"copy-ntm-ff"``.

    Raises:
        KeyError: no such model; the message lists the shipped ones.
    """
    return shipped_run_dir(name)


def load(
    task: str, model: str = DEFAULT_MODEL, *, device=None, memory_slots: int | None = None
) -> nn.Module:
    """The shipped model trained on ``task`` (an :class:`ntm.NTM`), in eval mode.

    Args:
        task: a task name, e.g. ``"copy"``.
        model: ``"ntm-lstm"`` or ``"ntm-ff"``.
        device: where to put it (default: the CPU, or CUDA if available).
        memory_slots: give it a memory of this many slots instead of the one it trained with,
            as :func:`ntm.rundir.load_run` does (a model that learned its initial memory,
            such as ``copy-ntm-lstm``, accepts only its own size).

    Raises:
        KeyError: no model was shipped for ``task`` and ``model``; the message lists the
            shipped ones.
        ntm.errors.ConfigError: a ``memory_slots`` that the model's weights do not allow.

    >>> load("repeat_copy", "ntm-ff", memory_slots=200).cell.memory_slots
    200
    """
    try:
        path = run_dir(f"{task}-{model}")
    except KeyError as error:
        reason = error.args[0]  # the shipped models
        raise KeyError(f"no model {model!r} was shipped for task {task!r}; {reason}") from None
    loaded, _ = load_run(path, device=device, memory_slots=memory_slots)
    return loaded
