"""Typed configuration of a training run: one dataclass per component, composed as ``RunConfig``.

Every field has a type annotation that is enforced when the config is read from JSON or overridden
from the command line (``--set model.memory_slots=256``). Task parameters live in
``TaskConfig.params`` and are checked against the types of the task's own defaults, then validated
by :func:`ntm.tasks.make`. Bounds sit in the field metadata (``min``: at least, ``gt``: greater
than, ``lt``: less than) so that the declaration is the single source of truth.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError, TaskModuleError

__all__ = [
    "MODEL_KINDS",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "import_task_module",
    "task_defaults",
    "validate_task",
]

ModelKind = Literal["ntm-lstm", "ntm-ff", "lstm"]
MODEL_KINDS: tuple[str, ...] = typing.get_args(ModelKind)

# Training draws its data from seed 2 * seed + 1 (distributed.data_seed), and torch takes seeds
# below 2**64, so seeds stay below 2**63.
SEED_LIMIT = 2**63


def _bounded(default: Any, *, min: float | None = None, gt: float | None = None,
             lt: float | None = None) -> Any:
    """A dataclass field with bounds checked on every assignment through this module."""
    return field(default=default, metadata={"min": min, "gt": gt, "lt": lt})


@dataclass
class ModelConfig:
    """Which model to build and its sizes.

    ``kind`` picks the model: ``"ntm-lstm"`` and ``"ntm-ff"`` are :class:`ntm.NTM` with an LSTM or
    feedforward controller (they use the ``controller_*``, ``memory_*``, head and shift fields);
    ``"lstm"`` is :class:`ntm.baselines.LSTMBaseline` (it uses ``hidden_size`` and ``num_layers``).
    ``fused`` picks the NTM's training path only; the weights are the same either way.
    """

    kind: ModelKind = "ntm-lstm"
    controller_size: int = _bounded(100, min=1)
    controller_layers: int = _bounded(1, min=1)
    memory_slots: int = _bounded(128, min=1)  # N
    memory_width: int = _bounded(20, min=1)  # M
    read_heads: int = _bounded(1, min=1)
    write_heads: int = _bounded(1, min=1)
    shift_range: int = _bounded(1, min=0)  # R: shifts -R..R
    memory_init: Literal["constant", "learned", "random"] = "constant"
    fused: bool = True  # NTM's hand-written backward pass: same math, several times faster
    hidden_size: int = _bounded(256, min=1)  # LSTM baseline only
    num_layers: int = _bounded(3, min=1)  # LSTM baseline only


@dataclass
class TaskConfig:
    """The task: a name known to :func:`ntm.tasks.make` and overrides of its parameters.

    An empty ``params`` means the task's defaults (the paper's training distribution).
    ``module`` names a module that registers the task when imported (``--task-module``); it is
    imported whenever the config is read and ``name`` is not registered yet, so that a run of a
    custom task loads like any other (the module must be importable then too).
    """

    name: str = "copy"
    params: dict[str, Any] = field(default_factory=dict)
    module: str | None = None


@dataclass
class OptimConfig:
    """Optimiser and gradient clipping.

    ``rmsprop`` is :class:`torch.optim.RMSprop` in its centered form with momentum, the variant
    of Graves (2013, eqs. 38-41) that the NTM paper used: ``alpha`` is Graves' decay (0.95) and
    ``momentum`` his 0.9. Graves adds ``eps = 1e-4`` inside the square root, PyTorch adds it
    outside; we keep his value (``eps=None`` means 1e-4 for RMSProp and 1e-8 for Adam). For
    ``adam``, ``momentum`` is beta1 and ``beta2`` the second-moment decay; decays and momentum
    are below 1 (at 1 the averages never forget, above it they diverge). ``clip="value"`` clips
    every gradient component to ``[-clip_value, clip_value]`` (the paper: 10); ``clip="norm"``
    rescales the whole gradient to a norm of at most ``max_norm``. ``lr_half_life`` (training
    sequences; ``None``: a constant rate) halves the learning rate every that many sequences,
    counted from the start of the run, down to ``min_lr`` at the lowest; the rate changes in
    steps, so updates replayed from CUDA graphs are recaptured only when it does.
    """

    name: Literal["rmsprop", "adam"] = "rmsprop"
    lr: float = _bounded(1e-4, gt=0)
    momentum: float = _bounded(0.9, min=0, lt=1)  # Adam's beta1
    alpha: float = _bounded(0.95, gt=0, lt=1)
    eps: float | None = _bounded(None, gt=0)
    centered: bool = True
    beta2: float = _bounded(0.999, gt=0, lt=1)
    clip: Literal["value", "norm", "none"] = "value"
    clip_value: float = _bounded(10.0, gt=0)
    max_norm: float = _bounded(10.0, gt=0)
    lr_half_life: int | None = _bounded(None, min=1)
    min_lr: float = _bounded(0.0, min=0)


@dataclass
class TrainConfig:
    """Length, batching, seeding, logging, checkpointing and placement of a run.

    ``val_seed`` seeds a generator of its own, so the held-out validation set (``val_batches``
    batches of ``val_batch_size``) is the same for every seed and every resumed run.
    ``max_seconds`` (a time budget for each call of ``train``, so also for each resume) and
    ``target_val_cost`` (checked at each validation) stop a run early; leave them ``None`` for
    runs that must be reproducible step for step. ``cuda_graphs`` replays each update on a CUDA
    device from a CUDA graph (:mod:`ntm.cuda_graphs`; single-process runs), many times faster
    than launching its kernels one by one; it changes results by rounding only. ``init`` starts
    from trained weights instead of random ones (fine-tuning): a run directory (its last
    weights, ``model.safetensors``), ``"pretrained:NAME"``, or a ``.safetensors`` file; they
    must fit ``model``. A resumed run loads its own state and ignores it.
    """

    steps: int = _bounded(2000, min=0)
    batch_size: int = _bounded(16, min=1)
    seed: int = _bounded(1, min=0, lt=SEED_LIMIT)
    log_every: int = _bounded(50, min=1)
    val_every: int = _bounded(250, min=1)
    val_batches: int = _bounded(4, min=1)
    val_batch_size: int = _bounded(32, min=1)
    val_seed: int = _bounded(123456789, min=0, lt=SEED_LIMIT)
    checkpoint_every: int = _bounded(500, min=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = _bounded(1, min=1)
    tensorboard: bool = False
    cuda_graphs: bool = True
    max_seconds: float | None = _bounded(None, gt=0)
    target_val_cost: float | None = _bounded(None, min=0)
    init: str | None = None


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        """Build a config from :meth:`to_dict`'s output, checking keys and types.

        Missing keys take their defaults (so older files still load); unknown keys are errors.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        config = cls()
        _check_keys(data, _SECTIONS, "config sections")
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be an object")
            # The task's name decides the types of its parameters, so it goes first, then the
            # module that registers that name.
            for key in sorted(values, key=lambda key: (key != "name", key != "module")):
                _assign(config, section, key, values[key])
        validate_task(config.task)
        _check_learning_rates(config.optim)
        return config

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config is not valid JSON: {error}") from None
        return cls.from_dict(data)


_SECTIONS: dict[str, type] = typing.get_type_hints(RunConfig)


def apply_overrides(config: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Return a copy of ``config`` with ``section.key=value`` overrides applied.

    Values are parsed as the field's type: ``int`` and ``float`` as numbers, ``bool`` as
    ``true``/``false`` (also ``1``/``0``, ``yes``/``no``), optional fields accept ``none``.
    ``task.<param>`` sets a task parameter, typed like the task's default for it.
    ``task.name`` and ``model.kind`` may not change: they picked the preset that ``config``
    came from (:func:`~ntm.training.preset_config`), whose sizes and rates would stay.

    Raises:
        TypeError: ``overrides`` is not a list of strings.
        ConfigError: malformed override, unknown section or key (the message lists the valid
            ones), a value of the wrong type or out of bounds, a changed ``task.name`` or
            ``model.kind``, or task parameters the task rejects.
    """
    items = [] if isinstance(overrides, str) else list(overrides)
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in items):
        raise TypeError(f'overrides must be a list of "section.key=value" strings, '
                        f"got {overrides!r}")
    original, config = config, copy.deepcopy(config)
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. "
                              "model.memory_slots=256")
        _assign(config, section, name, raw.strip())
    _check_preset_choices(original, config)
    validate_task(config.task)
    _check_learning_rates(config.optim)
    return config


def _check_preset_choices(before: RunConfig, after: RunConfig) -> None:
    """Refuse overrides of the task and model kind, which picked the preset of ``before``."""
    if after.task.name != before.task.name:
        raise ConfigError(f"task.name={after.task.name} would keep the preset of task "
                          f"{before.task.name!r}; name the task as the positional TASK instead "
                          f"(ntm train {after.task.name}, or preset_config({after.task.name!r}) "
                          "in Python)")
    if after.model.kind != before.model.kind:
        raise ConfigError(f"model.kind={after.model.kind} would keep the preset of model "
                          f"{before.model.kind!r}; choose the model with --model instead "
                          f"(--model {after.model.kind}, or "
                          f"preset_config(task, {after.model.kind!r}) in Python)")


def _check_learning_rates(optim: OptimConfig) -> None:
    if optim.min_lr > optim.lr:
        raise ConfigError(f"optim.min_lr ({optim.min_lr:g}) must not exceed optim.lr "
                          f"({optim.lr:g}): it is the floor of the decaying rate")


def task_defaults(name: str) -> dict[str, Any]:
    """The parameters of task ``name`` with their default values."""
    from .. import tasks  # imported late: training needs tasks only when a task is named

    try:
        return dict(tasks.make(name).params)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def validate_task(task: TaskConfig) -> None:
    """Raise :class:`ConfigError` unless :func:`ntm.tasks.make` accepts the task config (after
    importing ``task.module``, see :func:`import_task_module`)."""
    from .. import tasks

    import_task_module(task)
    try:
        tasks.make(task.name, **task.params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task {task.name!r}: {error}") from None


def import_task_module(task: TaskConfig) -> None:
    """Import ``task.module`` unless ``task.name`` is registered already (by an earlier import,
    or by a script that defined the task itself).

    Raises:
        TaskModuleError: the module cannot be imported (one line, the cause chained).
    """
    from .. import tasks

    if task.module and task.name not in tasks.names():
        try:
            tasks.import_module(task.module)
        except ImportError as error:
            raise TaskModuleError(str(error)) from error


def _check_keys(given: dict[str, Any], valid: Any, what: str) -> None:
    for key in given:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid {what}: {', '.join(valid)}")


def _assign(config: RunConfig, section: str, name: str, value: Any) -> None:
    """Set ``config.<section>.<name>`` to ``value`` (a string from the command line, or JSON)."""
    if section not in _SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; valid sections: "
                          f"{', '.join(_SECTIONS)}")
    target = getattr(config, section)
    if section == "task" and name == "module":
        target.module = _convert(value, str | None, "task.module") or None
        import_task_module(target)  # registers the task, whose parameters may follow
        return
    if section == "task" and name not in ("name", "params", "module"):
        defaults = task_defaults(target.name)
        if name not in defaults:
            raise ConfigError(f"unknown key 'task.{name}'; valid keys of task {target.name!r}: "
                              f"name, module, {', '.join(defaults)}")
        target.params[name] = _convert(value, _type_of(defaults[name]), f"task.{name}")
        return
    if section == "task" and name == "params":
        if isinstance(value, str):
            raise ConfigError("set task parameters one by one: task.<param>=value")
        if not isinstance(value, dict):
            raise ConfigError(f"task.params expects an object, got {value!r}")
        target.params = {}
        for key, item in value.items():
            _assign(config, "task", key, item)
        return
    fields = {f.name: f for f in dataclasses.fields(target)}
    if name not in fields:
        raise ConfigError(f"unknown key '{section}.{name}'; valid keys of {section}: "
                          f"{', '.join(fields)}")
    hint = typing.get_type_hints(type(target))[name]
    converted = _convert(value, hint, f"{section}.{name}")
    _check_bounds(converted, fields[name].metadata, f"{section}.{name}")
    setattr(target, name, converted)


def _type_of(default: Any) -> Any:
    """The annotation used to check a task parameter: that of its default value."""
    if default is None:
        return Any
    return float if isinstance(default, float) else type(default)


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Convert a command-line string or check a JSON value against the annotation ``hint``."""
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
        return _convert(value, options[0], where)
    expected = hint.__name__ if isinstance(hint, type) else str(hint)
    problem = ConfigError(f"{where} expects {expected}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where} expects bool (true or false), got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise problem
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise problem
    if isinstance(value, hint):
        return value
    raise problem


def _check_bounds(value: Any, metadata: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming the whole valid range unless ``value`` lies in it."""
    if value is None or isinstance(value, (str, bool)):
        return
    low, above, below = metadata.get("min"), metadata.get("gt"), metadata.get("lt")
    if (low, above, below) == (None, None, None):
        return
    if isinstance(value, float) and not math.isfinite(value):  # ints are finite, maybe huge
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if ((low is not None and value < low) or (above is not None and not value > above)
            or (below is not None and not value < below)):
        raise ConfigError(f"{where} must be {_range_text(low, above, below)}, got {value!r}")


def _range_text(low: float | None, above: float | None, below: float | None) -> str:
    """``"at least 0 and less than 1"``: the bounds of a field in words."""
    parts = [f"{word} {bound}" for word, bound in
             (("at least", low), ("greater than", above), ("less than", below))
             if bound is not None]
    return " and ".join(parts)
