"""Config files of dotted keys (``--config FILE``): a JSON object such as ``{"optim.lr": 0.002,
"model.memory_slots": 64}``, applied before ``--set`` (:func:`file_overrides`).

``task.name`` and ``model.kind`` name the task and the model (what ``TASK`` and ``--model``
choose, and with them the preset), and ``task.module`` and ``model.module`` the modules that
register them (``--task-module``, ``--model-module``); :func:`read_config_file` returns these
apart. ``ntm tune`` writes its best trial's config this way (:func:`dotted_config`), so that
``ntm train --config OUT/best.json`` trains it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..rundir.build import task_defaults
from .checkpoint import atomic_write_text
from .config import RunConfig
from .errors import ConfigError

__all__ = ["CHOICE_KEYS", "dotted_config", "file_overrides", "read_config_file",
           "write_config_file"]

# Keys that choose rather than override: the command line's TASK, --model and the modules.
CHOICE_KEYS = ("task.name", "model.kind", "task.module", "model.module")


def read_config_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The choices (:data:`CHOICE_KEYS` that are set) and the other keys of a config file.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or is not an object of dotted keys.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--config {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of dotted keys such as "
                          f'{{"optim.lr": 0.002}}, got {type(values).__name__}')
    for key in values:
        if "." not in key.strip(".") or isinstance(values[key], (dict, list)):
            raise ConfigError(f"--config {path}: {key!r} must be a dotted key "
                              "(section.key, e.g. optim.lr) with a single value")
    choices = {key: values.pop(key) for key in CHOICE_KEYS if key in values}
    for key, value in choices.items():
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ConfigError(f"--config {path}: {key} must be a name (a string), got {value!r}")
    return {key: value for key, value in choices.items() if value is not None}, values


def file_overrides(values: dict[str, Any]) -> list[str]:
    """``section.key=value`` overrides for :func:`~ntm.training.apply_overrides` from the
    values of a config file (JSON's ``true``, ``null`` and numbers as ``--set`` spells them).

    >>> file_overrides({"optim.lr": 0.002, "train.init": None, "train.tensorboard": True})
    ['optim.lr=0.002', 'train.init=null', 'train.tensorboard=true']
    """
    return [f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in values.items()]


def dotted_config(config: RunConfig, *, first: tuple[str, ...] = (),
                  leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every value of ``config`` by dotted key (task parameters as ``task.PARAM``, every one of
    them, defaults too: a file's values go on top of the fast preset, which may set some), the
    keys of ``first`` first; unset modules and the keys of ``leave_out`` left out.

    >>> from ntm.training import preset_config
    >>> values = dotted_config(preset_config("copy", "ntm-lstm"), first=("optim.lr",))
    >>> list(values)[:3], values["optim.lr"]
    (['optim.lr', 'model.kind', 'model.controller_size'], 0.002)
    """
    values: dict[str, Any] = {}
    for section, fields in config.to_dict().items():
        for key, value in fields.items():
            if section == "task" and key == "params":
                every = {**task_defaults(config.task.name), **value}
                values.update({f"task.{name}": item for name, item in every.items()})
            elif section == "task" and key == "opening_params":  # after task.opening
                values.update({f"task.opening_params.{name}": item for name, item in value.items()})
            else:
                values[f"{section}.{key}"] = value
    values = {key: value for key, value in values.items()
              if key not in leave_out and not (key.endswith(".module") and value is None)}
    return {**{key: values[key] for key in first if key in values}, **values}


def write_config_file(path: str | os.PathLike[str], values: dict[str, Any]) -> None:
    """Write ``values`` (dotted keys) as a config file that ``--config`` reads."""
    atomic_write_text(Path(path), json.dumps(values, indent=2) + "\n")
