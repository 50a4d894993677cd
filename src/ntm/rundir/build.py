"""Objects from configs: the task and the model of a run, and the modules that register them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import models, tasks
from ..errors import ConfigError, TaskModuleError
from ..tasks.curriculum import curriculum_of

if TYPE_CHECKING:
    from .config import TaskConfig

__all__ = [
    "build_model",
    "build_task",
    "import_model_module",
    "import_task_module",
    "task_defaults",
    "validate_task",
]


def build_task(config: TaskConfig, *, training: bool = False, **overrides: Any) -> tasks.Task:
    """``ntm.tasks.make(config.name, **config.params, **overrides)``, errors as ConfigError.

    Without ``training``, the task's ``training_only`` parameters in ``config.params`` are
    left at their defaults (``overrides`` still apply): the held-out data of a run (validation,
    evaluation, plots) comes from the task's own distribution, whatever the training data mixed
    in (associative recall's ``near_items``).

    The task is checked with :func:`ntm.tasks.check_task` (its sizes, and the shapes and dtypes
    of one small batch), so that a custom task's mistake is one line naming what was expected,
    before any model sees a batch.
    """
    params = {**config.params, **overrides}
    try:
        task = tasks.make(config.name, **params)
        if not training:
            held_out = {key: value for key, value in params.items()
                        if key in overrides or key not in getattr(task, "training_only", ())}
            if held_out != params:
                task = tasks.make(config.name, **held_out)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task {config.name!r}: {error}") from None
    try:
        tasks.check_task(task)
    except (TypeError, ValueError) as error:
        # Chained: the error may come from a bug inside the task's own sample().
        raise ConfigError(f"task {config.name!r}: {error}") from error
    return task


def build_model(
    config: Any,
    input_size: int,
    output_size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The model ``config`` describes, for a task of the given input and output sizes:
    :func:`ntm.models.make`. Every model maps ``[steps, batch, input_size]`` to logits
    ``[steps, batch, output_size]``.

    Raises:
        ConfigError: an unknown kind, or sizes the model refuses.
    """
    return models.make(config, input_size, output_size, device=device, dtype=dtype)


def task_defaults(name: str) -> dict[str, Any]:
    """The parameters of task ``name`` with their default values."""
    try:
        return dict(tasks.make(name).params)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def validate_task(task: TaskConfig) -> None:
    """Raise :class:`ConfigError` unless :func:`ntm.tasks.make` accepts the task config (after
    importing ``task.module``, see :func:`import_task_module`)."""
    import_task_module(task)
    try:
        made = tasks.make(task.name, **task.params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task {task.name!r}: {error}") from None
    if task.harden_below is not None and not getattr(made, "training_only", ()):
        with_some = [name for name in tasks.TASKS if tasks.make(name).training_only]
        raise ConfigError(f"task {task.name!r} has no training-only parameters for "
                          f"task.harden_below to hold back; tasks with some: "
                          f"{', '.join(with_some)}")
    _validate_opening(task)
    if task.curriculum is not None and not curriculum_of(made):
        with_one = [name for name in tasks.TASKS if curriculum_of(tasks.make(name))]
        raise ConfigError(f"task {task.name!r} has no length curriculum (task.curriculum); "
                          f"tasks with one: {', '.join(with_one)}")


def _validate_opening(task: TaskConfig) -> None:
    """Raise :class:`ConfigError` unless ``task.opening`` and ``task.opening_params`` come
    together, without a curriculum, and the task accepts its parameters with the opening's."""
    if (task.opening is None) != (not task.opening_params):
        raise ConfigError("task.opening (sequences) and task.opening_params.<param> go "
                          "together: set both or neither")
    if task.opening is None:
        return
    if task.curriculum is not None:
        raise ConfigError("task.opening and task.curriculum do not combine: choose one "
                          "(task.opening=none removes the opening)")
    try:
        tasks.make(task.name, **{**task.params, **task.opening_params})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task {task.name!r} with task.opening_params: {error} (set "
                          f"task.opening_params.<param> to fit, or task.opening=none)") from None


def import_task_module(task: TaskConfig) -> None:
    """Import ``task.module`` unless ``task.name`` is registered already (by an earlier import,
    or by a script that defined the task itself).

    Raises:
        TaskModuleError: the module cannot be imported (one line, the cause chained).
    """
    if task.module and task.name not in tasks.names():
        try:
            tasks.import_module(task.module)
        except ImportError as error:
            raise TaskModuleError(str(error)) from error


def import_model_module(module: str | None, kind: str | None = None) -> None:
    """Import ``module`` (``model.module``, ``--model-module``) unless model ``kind`` is
    registered already.

    Raises:
        ModelModuleError: the module cannot be imported (one line, the cause chained).
    """
    if module and (kind is None or kind not in models.names()):
        models.import_module(module)

