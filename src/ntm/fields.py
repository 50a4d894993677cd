"""Typed config fields: every config dataclass (models, tasks, optimiser, training) checks its
values here, whether they come from ``config.json`` or from ``--set section.key=value``.

A field's annotation is its type; its bounds sit in the field metadata (``min``: at least,
``gt``: greater than, ``lt``: less than, ``max``: at most), so the declaration is the single
source of truth.

>>> from dataclasses import dataclass
>>> @dataclass
... class Sizes:
...     slots: int = bounded(128, min=1)
>>> sizes = Sizes()
>>> assign(sizes, "slots", "64", "model.slots"); sizes.slots
64
>>> assign(sizes, "slots", "0", "model.slots")
Traceback (most recent call last):
...
ntm.errors.ConfigError: model.slots must be at least 1, got 0
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import types
import typing
from dataclasses import field
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["assign", "bounded", "check_bounds", "convert", "defaults_of", "type_of"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def bounded(default: Any, *, min: float | None = None, gt: float | None = None,
            lt: float | None = None, max: float | None = None) -> Any:
    """A dataclass field with bounds, checked by :func:`assign` on every assignment."""
    return field(default=default, metadata={"min": min, "gt": gt, "lt": lt, "max": max})


def defaults_of(function: Any) -> dict[str, Any]:
    """The default values of ``function``'s parameters (a class: its constructor's), by name:
    a config dataclass takes its defaults from the module it configures, so they are written
    once."""
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def assign(target: Any, name: str, value: Any, where: str) -> None:
    """Set the dataclass field ``target.<name>`` to ``value``, converted and checked.

    Args:
        target: a dataclass instance.
        name: one of its fields (the caller checks that it is one).
        value: a command-line string or a JSON value.
        where: how the messages name the field, e.g. ``"model.memory_slots"``.

    Raises:
        ConfigError: a value of the wrong type or out of bounds.
    """
    fields = {f.name: f for f in dataclasses.fields(target)}
    hint = typing.get_type_hints(type(target))[name]
    converted = convert(value, hint, where)
    check_bounds(converted, fields[name].metadata, where)
    setattr(target, name, converted)


def type_of(default: Any) -> Any:
    """The annotation used to check a value typed by example (a task parameter's default)."""
    if default is None:
        return Any
    return float if isinstance(default, float) else type(default)


def convert(value: Any, hint: Any, where: str) -> Any:
    """Convert a command-line string or check a JSON value against the annotation ``hint``.

    ``int`` and ``float`` parse numbers, ``bool`` takes ``true``/``false`` (also ``1``/``0``,
    ``yes``/``no``, ``on``/``off``), optional fields take ``none``, ``Literal`` its choices.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; "
                              f"got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return convert(value, options[0], where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where} expects bool (true or false), got {value!r}")
    if hint in (int, float):
        return _number(value, hint, where)
    if isinstance(value, hint):
        return value
    raise ConfigError(f"{where} expects {_name(hint)}, got {value!r}")


def _number(value: Any, hint: type, where: str) -> int | float:
    """``value`` as an ``int`` or ``float`` (``hint``); a bool is neither, a float no int."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if hint is float:
            return float(value)
        if isinstance(value, int):
            return value
    if isinstance(value, str):
        try:
            return hint(value)
        except ValueError:
            pass
    raise ConfigError(f"{where} expects {_name(hint)}, got {value!r}")


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def check_bounds(value: Any, metadata: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming the whole valid range unless ``value`` lies in it."""
    if value is None or isinstance(value, (str, bool)):
        return
    low, above, below = metadata.get("min"), metadata.get("gt"), metadata.get("lt")
    high = metadata.get("max")
    if (low, above, below, high) == (None, None, None, None):
        return
    if isinstance(value, float) and not math.isfinite(value):  # ints are finite, maybe huge
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if ((low is not None and value < low) or (above is not None and not value > above)
            or (below is not None and not value < below)
            or (high is not None and not value <= high)):
        raise ConfigError(f"{where} must be {_range_text(low, above, below, high)}, "
                          f"got {value!r}")


def _range_text(low: float | None, above: float | None, below: float | None,
                high: float | None) -> str:
    """``"at least 0 and less than 1"``: the bounds of a field in words."""
    parts = [f"{word} {bound}" for word, bound in
             (("at least", low), ("greater than", above), ("less than", below),
              ("at most", high))
             if bound is not None]
    return " and ".join(parts)
