"""The task registry behind ``make``: task names to factories, and the import of task modules."""

from __future__ import annotations

import importlib
import inspect
import types
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


def register(name: str, factory: TaskFactory, *, replace: bool = False) -> None:
    """Registers a task factory under ``name`` so that ``make(name, **params)`` can build it.

    Example (``ConstantTask`` is a :class:`~ntm.tasks.Task` subclass)::

        ntm.tasks.register("constant", ConstantTask)
        ntm.tasks.make("constant", value=0)

    Args:
        name: a new task name.
        factory: a callable taking the task's parameters as keywords and returning an object
            with ``input_size``, ``output_size``, ``params`` and ``sample`` (see ``Task``); a
            ``Task`` subclass itself is the usual factory.
        replace: allow replacing a task registered earlier under ``name`` (a notebook cell run
            twice); the paper's five tasks cannot be replaced.

    Raises:
        ValueError: the name is empty or already registered (and ``replace`` is false, or
            the name is one of the paper's tasks).
        TypeError: ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")
    if name in _FACTORIES and (not replace or name in TASKS):
        previous = _FACTORIES[name]
        where = f"{getattr(previous, '__module__', '?')}.{getattr(previous, '__qualname__', '?')}"
        hint = "; choose another name" if name in TASKS else (
            "; choose another name, or pass replace=True")
        raise ValueError(f"task {name!r} is already registered (by {where}){hint}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory


def import_module(module: str) -> types.ModuleType:
    """Imports a module for the tasks it registers when imported (``--task-module``).

    Args:
        module: a dotted module name importable from ``sys.path``, e.g. ``"mypackage.tasks"``.

    Returns:
        The module (Python imports it once; later calls return the same module).

    Raises:
        ImportError: one line naming the module and the reason, whatever failed: a missing
            module, or an error raised while it ran (the original error is chained).
    """
    try:
        return importlib.import_module(module)
    except Exception as error:  # the module's own code may raise anything; report it in one line
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, ModuleNotFoundError) and error.name and (
            module == error.name or module.startswith(error.name + ".")
        ):
            reason = f"no module named {error.name!r} (is its directory on PYTHONPATH?)"
        raise ImportError(f"cannot import task module {module!r}: {reason}") from error


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
