"""The model registry: a name, a config dataclass and a function that builds the module.

Training, evaluation, the command line, the figures and the presets know a model only through
its :class:`Entry`; what differs between models is a field of the config or a hook here, so
adding a model is one file with one :func:`register` call.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelModuleError
from ..fields import assign

__all__ = [
    "DEFAULT_MODEL",
    "LEGACY_FIELDS",
    "Entry",
    "default_config",
    "from_dict",
    "get",
    "import_module",
    "make",
    "memory_slots",
    "names",
    "register",
    "resized_memory",
    "set_field",
    "valid_keys",
    "with_controller",
]

DEFAULT_MODEL = "ntm-lstm"

# The fields of the one flat ModelConfig that every config.json before the registry holds, for
# every kind: reading such a file drops those that the kind's own config does not have.
LEGACY_FIELDS = frozenset({
    "controller_size", "controller_layers", "memory_slots", "memory_width", "read_heads",
    "write_heads", "shift_range", "memory_init", "fused", "hidden_size", "num_layers",
})

# Keys of a run's model section that are not fields of the model's config.
RESERVED = ("module",)

Build = Callable[..., nn.Module]


@dataclass(frozen=True)
class Entry:
    """A registered model.

    Attributes:
        name: the ``kind`` that picks it (``--model NAME``).
        build: ``build(config, input_size, output_size, *, device, dtype) -> nn.Module``, a
            module mapping ``[steps, batch, input_size]`` to ``(logits [steps, batch,
            output_size], state)``.
        config_type: its config dataclass; ``kind`` is its first field.
        description: a few words for help texts and messages.
        paper: ``paper(heads, layers, size) -> config``: the config of a row of the paper's
            model tables (:data:`ntm.training.PAPER_MODELS`), or ``None`` if the paper has none.
        resize_memory: ``resize_memory(config, memory_slots) -> config``: the config with a
            memory of that many slots, for weights that fit any length (``ntm eval
            --memory-slots``); ``None`` for a model without such a memory.
        aliases: older names of fields: ``aliases[old](value) -> (field, value)``, applied
            when a config is read or overridden (``fused`` for the NTM's ``backend``).
        builtin: registered by the package; cannot be replaced.
    """

    name: str
    build: Build
    config_type: type
    description: str = ""
    paper: Callable[[int, int, int], Any] | None = None
    resize_memory: Callable[[Any, int], Any] | None = None
    aliases: Mapping[str, Callable[[Any], tuple[str, Any]]] = field(default_factory=dict)
    builtin: bool = False

    def default_config(self) -> Any:
        """The config with every default: ``config_type(kind=name)``."""
        return self.config_type(kind=self.name)


_ENTRIES: dict[str, Entry] = {}


def register(
    name: str,
    build: Build,
    config_type: type,
    *,
    description: str = "",
    paper: Callable[[int, int, int], Any] | None = None,
    resize_memory: Callable[[Any, int], Any] | None = None,
    aliases: Mapping[str, Callable[[Any], tuple[str, Any]]] | None = None,
    replace: bool = False,
    builtin: bool = False,
) -> Entry:
    """Register a model under ``name``; see :class:`Entry` for the arguments.

    ``replace=True`` registers a name again (a notebook cell run twice); the package's own
    models cannot be replaced.

    Raises:
        ValueError: a taken name, or a ``config_type`` that is not a dataclass whose first
            field is ``kind`` (or that has a field named ``module``, which the run's model
            section keeps for ``--model-module``).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    taken = _ENTRIES.get(name)
    if taken is not None and (taken.builtin or not replace):
        raise ValueError(f"model {name!r} is already registered (by "
                         f"{getattr(taken.build, '__qualname__', taken.build)!r})")
    if not callable(build):
        raise ValueError(f"model {name!r}: build must be callable, got {build!r}")
    _check_config_type(name, config_type)
    entry = Entry(name, build, config_type, description, paper, resize_memory,
                  types.MappingProxyType(dict(aliases or {})), builtin)
    _ENTRIES[name] = entry
    return entry


def _check_config_type(name: str, config_type: type) -> None:
    if not dataclasses.is_dataclass(config_type) or not isinstance(config_type, type):
        raise ValueError(f"model {name!r}: config_type must be a dataclass, got {config_type!r}")
    fields = [f.name for f in dataclasses.fields(config_type)]
    if not fields or fields[0] != "kind":
        raise ValueError(f"model {name!r}: the first field of {config_type.__name__} must be "
                         f"'kind', got {fields[:1]}")
    if any(reserved in fields for reserved in RESERVED):
        raise ValueError(f"model {name!r}: {config_type.__name__} may not have a field named "
                         f"{' or '.join(map(repr, RESERVED))}")


def names() -> list[str]:
    """The registered model names, in the order they were registered."""
    return list(_ENTRIES)


def get(name: str) -> Entry:
    """The entry of model ``name``.

    Raises:
        ConfigError: no such model; the message lists the registered ones.
    """
    entry = _ENTRIES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    return entry


def default_config(name: str) -> Any:
    """The config of model ``name`` with every default."""
    return get(name).default_config()


def make(config: Any, input_size: int, output_size: int, *,
         device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """The model ``config`` describes (its ``kind`` picks the entry), for a task of the given
    input and output sizes.

    Raises:
        ConfigError: an unknown kind, a config of another type than the kind's, or sizes that
            the model refuses (its ``ValueError``, in one line).
    """
    entry = get(getattr(config, "kind", None))
    if not isinstance(config, entry.config_type):
        raise ConfigError(f"model {entry.name!r} takes a {entry.config_type.__name__}, got "
                          f"{type(config).__name__}")
    try:
        return entry.build(config, input_size, output_size, device=device, dtype=dtype)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None


def valid_keys(name: str) -> list[str]:
    """The keys of model ``name``'s section of a run config: ``kind``, ``module`` and the
    fields of its config."""
    fields = [f.name for f in dataclasses.fields(get(name).config_type)]
    return [fields[0], *RESERVED, *fields[1:]]


def set_field(config: Any, key: str, value: Any) -> None:
    """Set field ``key`` of a model config (not ``kind``) to ``value``, a command-line string
    or a JSON value, converted and checked; an alias (``fused``) sets the field it names.

    Raises:
        ConfigError: an unknown key (the message names the model and its valid keys), a value
            of the wrong type or out of bounds.
    """
    entry = get(config.kind)
    if key in entry.aliases:
        key, value = entry.aliases[key](value)
    fields = [f.name for f in dataclasses.fields(config)]
    if key not in fields or key == "kind":
        raise ConfigError(f"unknown key 'model.{key}'; valid keys of model {entry.name!r}: "
                          f"{', '.join(valid_keys(entry.name))}")
    assign(config, key, value, f"model.{key}")


def from_dict(data: Mapping[str, Any]) -> Any:
    """A model config from a run's model section (``kind`` and fields; no ``module``).

    A missing ``kind`` is :data:`DEFAULT_MODEL`, missing fields take their defaults, and the
    older flat fields (:data:`LEGACY_FIELDS`) that the kind's config does not have are dropped,
    so every config.json ever written still reads.

    Raises:
        ConfigError: an unknown kind or key, a value of the wrong type or out of bounds.
    """
    kind = data.get("kind", DEFAULT_MODEL)
    if kind not in _ENTRIES:
        raise ConfigError(f"model.kind must be one of {', '.join(names())}; got {kind!r}")
    entry = _ENTRIES[kind]
    config = entry.default_config()
    fields = {f.name for f in dataclasses.fields(config)}
    for key, value in data.items():
        if key == "kind" or (key in LEGACY_FIELDS and key not in fields | set(entry.aliases)):
            continue
        set_field(config, key, value)
    return config


def memory_slots(config: Any) -> int | None:
    """The memory length of a model whose weights fit any length (see
    :attr:`Entry.resize_memory`), else ``None``."""
    return config.memory_slots if get(config.kind).resize_memory is not None else None


def import_module(module: str) -> types.ModuleType:
    """Import a module for the models it registers when imported (``--model-module``).

    Raises:
        ModelModuleError: one line naming the module and the reason, whatever failed: a
            missing module, or an error raised while it ran (the original error is chained).
    """
    try:
        return importlib.import_module(module)
    except Exception as error:  # the module's own code may raise anything; report it in one line
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, ModuleNotFoundError) and error.name and (
            module == error.name or module.startswith(error.name + ".")
        ):
            reason = f"no module named {error.name!r} (is its directory on PYTHONPATH?)"
        raise ModelModuleError(f"cannot import model module {module!r}: {reason}") from error


def with_controller(model_class: type, controllers: Mapping[str, str]) -> Callable[..., Any]:
    """The ``build`` function of models whose registered name fixes the controller
    (``controllers``: name -> ``"lstm"`` or ``"feedforward"``) and whose config's fields after
    ``kind`` are ``model_class``'s keyword arguments."""

    def build(config: Any, input_size: int, output_size: int, *, device: Any = None,
              dtype: Any = None) -> nn.Module:
        sizes = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)[1:]}
        return model_class(input_size, output_size, controller=controllers[config.kind],
                           **sizes, device=device, dtype=dtype)

    build.__doc__ = f":class:`{model_class.__name__}` with the controller the name fixes."
    return build


def resized_memory(config: Any, memory_slots: int) -> Any:
    """A copy of ``config`` with ``memory_slots`` memory rows (checked against the field's
    bounds): the :attr:`Entry.resize_memory` of a model none of whose weights depends on them."""
    resized = dataclasses.replace(config)
    assign(resized, "memory_slots", memory_slots, "memory_slots")
    return resized
