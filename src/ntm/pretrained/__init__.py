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
    task: str, model: str | None = None, *, device=None, dtype=None,
    memory_slots: int | None = None,
) -> nn.Module:
    """A shipped model (an :class:`ntm.NTM`), in eval mode.

    Args:
        task: a task name, e.g. ``"copy"``, or a shipped model's full name, one that
            :func:`list` returns (``"copy-ntm-lstm"``).
        model: ``"ntm-lstm"`` (the default) or ``"ntm-ff"``, with a task name.
        device: where to put it, a :class:`torch.device` or its name (default: the CPU, or
            CUDA if available).
        dtype: its floating-point dtype (default: float32, which it was trained in; the NTM
            also runs in float64 and bfloat16).
        memory_slots: give it a memory of this many slots instead of the one it trained with,
            as :func:`ntm.rundir.load_run` does (a model that learned its initial memory,
            such as ``copy-ntm-lstm``, accepts only its own size).

    Raises:
        KeyError: no model was shipped for ``task`` and ``model``; the message lists the
            shipped ones.
        ValueError: a device that is not available here or a dtype that is not a
            floating-point one (the message lists the valid ones), a full name with another
            ``model``, or (:class:`ntm.errors.ConfigError`) a ``memory_slots`` that the
            model's weights do not allow.
        ntm.errors.RunDirError: the shipped files are damaged.

    >>> load("repeat_copy", "ntm-ff", memory_slots=200).cell.memory_slots
    200
    >>> {weight.dtype for weight in load("copy-ntm-ff", dtype="float64").parameters()}
    {torch.float64}
    """
    available = list()
    if task in available:  # a full name, as list() gives it
        if model is not None and not task.endswith(f"-{model}"):
            raise ValueError(f"{task!r} names a shipped model already, not one of model "
                             f"{model!r}; give model= only with a task name, as in "
                             "load('copy', 'ntm-ff')")
        name = task
    else:
        name = f"{task}-{model or DEFAULT_MODEL}"
    try:
        path = run_dir(name)
    except KeyError as error:
        reason = error.args[0]  # the shipped models
        raise KeyError(f"no model {model or DEFAULT_MODEL!r} was shipped for task {task!r}; "
                       f"{reason}") from None
    loaded, _ = load_run(path, device=device, dtype=dtype, memory_slots=memory_slots)
    return loaded
