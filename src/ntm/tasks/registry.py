"""The task registry behind ``make``: task names to factories."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ntm.tasks.associative_recall import AssociativeRecallTask
from ntm.tasks.base import Task
from ntm.tasks.copy import CopyTask
from ntm.tasks.ngrams import NGramsTask
from ntm.tasks.priority_sort import PrioritySortTask
from ntm.tasks.repeat_copy import RepeatCopyTask

TaskFactory = Callable[..., Task]

# The paper's five tasks, in the paper's order.
TASKS: tuple[str, ...] = ("copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort")

_FACTORIES: dict[str, TaskFactory] = {
    "copy": CopyTask,
    "repeat_copy": RepeatCopyTask,
    "associative_recall": AssociativeRecallTask,
    "ngrams": NGramsTask,
    "priority_sort": PrioritySortTask,
}


def names() -> list[str]:
    """The registered task names, sorted (the paper's five plus any registered since)."""
    return sorted(_FACTORIES)


def register(name: str, factory: TaskFactory) -> None:
    """Registers a task factory under ``name`` so that ``make(name, **params)`` can build it.

    Args:
        name: a new task name.
        factory: a callable taking the task's parameters as keywords and returning an object
            with ``name``, ``input_size``, ``output_size``, ``params`` and ``sample`` (see
            ``Task``); a ``Task`` subclass itself is the usual factory.

    Raises:
        ValueError: the name is empty or already registered.
        TypeError: ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")
    if name in _FACTORIES:
        raise ValueError(f"task {name!r} is already registered")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory


def parameters_of(factory: TaskFactory) -> list[str] | None:
    """The keyword parameters ``factory`` accepts, sorted; None if it takes ``**kwargs`` or its
    signature cannot be read (then ``make`` leaves the checking to the factory)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    accepted = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            accepted.append(parameter.name)
    return sorted(accepted)


def make(name: str, **params: object) -> Task:
    """Builds a registered task; unspecified parameters take the paper's training defaults.

    Example: ``make("copy", min_length=120, max_length=120)`` is the length-120 copy test.

    Raises:
        ValueError: the name is not registered, a parameter is unknown (both list the valid
            choices), or a value is invalid (the message names the parameter).
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(names())}")
    accepted = parameters_of(factory)
    if accepted is not None:
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            plural = "s" if len(unknown) > 1 else ""
            raise ValueError(
                f"unknown parameter{plural} {listed} for task {name!r}; "
                f"valid parameters: {', '.join(accepted)}"
            )
    return factory(**params)
