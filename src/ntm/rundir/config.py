"""Typed configuration of a run: one dataclass per component, composed as ``RunConfig``.

Every field has a type annotation that is enforced when the config is read from JSON or overridden
from the command line (``--set model.memory_slots=256``); bounds sit in the field metadata (see
:mod:`ntm.fields`). The model's config is the dataclass its registry entry names
(:mod:`ntm.models`), so ``model.*`` keys are checked against the chosen model. Task parameters
live in ``TaskConfig.params`` and are checked against the types of the task's own defaults, then
validated by :func:`ntm.tasks.make`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import models
from ..errors import ConfigError
from ..fields import assign, bounded, convert, type_of
from .build import import_model_module, import_task_module, task_defaults, validate_task

__all__ = [
    "SECTIONS",
    "SEED_LIMIT",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
]

# Training draws its data from seed 2 * seed + 1 (distributed.data_seed), and torch takes seeds
# below 2**64, so seeds stay below 2**63.
SEED_LIMIT = 2**63

SECTIONS = ("model", "task", "optim", "train")


class _ModelConfigType(type):
    """Makes ``ModelConfig(kind=..., **fields)`` return the kind's own config, and every
    registered model's config an instance of ``ModelConfig``."""

    def __call__(cls, kind: str = models.DEFAULT_MODEL, **fields: Any) -> Any:
        return models.from_dict({"kind": kind, **fields})

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls.__subclasscheck__(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return any(issubclass(subclass, models.get(name).config_type)
                   for name in models.names())


class ModelConfig(metaclass=_ModelConfigType):
    """The older spelling of a model's config, from when one flat dataclass held every model's
    fields.

    ``ModelConfig(kind="ntm-lstm", memory_slots=64)`` returns the kind's own config (here an
    :class:`ntm.models.NTMConfig`); fields of other models (``hidden_size`` for an NTM) are
    dropped and ``fused`` is read as ``backend``, as in a ``config.json`` of that time. Every
    registered model's config is an instance of it. New code names the config of its model.

    >>> ModelConfig(kind="lstm", hidden_size=64, memory_slots=16)
    LSTMConfig(kind='lstm', hidden_size=64, num_layers=3)
    """


@dataclass
class TaskConfig:
    """The task: a name known to :func:`ntm.tasks.make` and overrides of its parameters.

    An empty ``params`` means the task's defaults (the paper's training distribution).
    ``module`` names a module that registers the task when imported (``--task-module``); it is
    imported whenever the config is read and ``name`` is not registered yet, so that a run of a
    custom task loads like any other (the module must be importable then too). ``curriculum``
    (training sequences; ``None``: none) grows the task's longest training sequences linearly
    from its shortest to its full length over that many sequences (:mod:`ntm.tasks.curriculum`;
    copy, repeat copy and associative recall have one); validation uses the full task.
    ``harden_below`` (bits per sequence; ``None``: from the start) holds back the task's
    training-only parameters (associative recall's ``near_items``) until the first validation
    under it: the training data follows them from the next update on. ``opening`` (training
    sequences; ``None``: none) draws the first that many training sequences from the task with
    ``opening_params`` on top of ``params`` (the DNC's repeat copy opens on lengths 6-10 only,
    which its LSTM cannot hold, so that it learns to use its memory); validation uses the task
    without them; ``task.opening=none`` clears both. An opening and a curriculum do not
    combine.
    """

    name: str = "copy"
    params: dict[str, Any] = field(default_factory=dict)
    module: str | None = None
    curriculum: int | None = None
    harden_below: float | None = None
    opening: int | None = None
    opening_params: dict[str, Any] = field(default_factory=dict)


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
    rescales the whole gradient to a norm of at most ``max_norm``; ``clip="value+norm"`` does
    the first, then the second (RESULTS.md, "Training that stays solved": on copy it led every
    seed to a solution without hard batches, and lets a run that falls recover).

    The learning rate's schedule, all counted in training sequences from the start of the run:
    ``warmup`` sequences of a linear rise to ``lr``; then ``schedule``: ``"constant"``, or a
    ``"cosine"`` or ``"linear"`` decay to ``min_lr`` at the run's last step (``train.steps``);
    ``lr_half_life`` (``None``: never) also halves the rate every that many sequences, down to
    ``min_lr``. ``drop_below`` (bits per sequence; ``None``: never) multiplies the rate by
    ``drop_factor`` for the rest of the run from the first validation under it on (what keeps
    a solved copy run from collapsing, replayed in tests/test_collapse_replay.py). The rate
    changes in steps (at most 100 over a decay, 10 over a warm-up), so updates replayed from
    CUDA graphs are recaptured only when it does. Every update's rate is in metrics.jsonl.

    ``skip_above`` (``None``: never) skips an update whose gradient, before any clip, has a
    norm more than that many times the median of the last ``skip_window`` updates' norms, or
    one that is not finite (:func:`ntm.training.optim.outlier_gradient`): the weights and the
    optimiser's state stay as they were, and the run draws its next batch. Until
    ``skip_window`` norms have been measured (the first updates of a run, of each attempt
    after a restart, or after resuming with a larger window) only non-finite gradients are
    skipped; a rewind takes the window back with the weights. The records of metrics.jsonl
    count the skipped updates (``"skipped"``). The decision reads the norm on the host, so
    such a run trains eagerly on a GPU (no CUDA graphs).
    """

    name: Literal["rmsprop", "adam"] = "rmsprop"
    lr: float = bounded(1e-4, gt=0)
    momentum: float = bounded(0.9, min=0, lt=1)  # Adam's beta1
    alpha: float = bounded(0.95, gt=0, lt=1)
    eps: float | None = bounded(None, gt=0)
    centered: bool = True
    beta2: float = bounded(0.999, gt=0, lt=1)
    clip: Literal["value", "norm", "value+norm", "none"] = "value"
    clip_value: float = bounded(10.0, gt=0)
    max_norm: float = bounded(10.0, gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup: int = bounded(0, min=0)
    lr_half_life: int | None = bounded(None, min=1)
    min_lr: float = bounded(0.0, min=0)
    drop_below: float | None = bounded(None, gt=0)
    drop_factor: float = bounded(0.1, gt=0)
    skip_above: float | None = bounded(None, gt=1)
    skip_window: int = bounded(100, min=1, max=10_000)  # kept in the state file's header


@dataclass
class TrainConfig:
    """Length, batching, seeding, logging, checkpointing and placement of a run.

    ``val_seed`` seeds a generator of its own, so the held-out validation set (``val_batches``
    batches of ``val_batch_size``) is the same for every seed and every resumed run.
    ``max_seconds`` (a time budget for each call of ``train``, so also for each resume) and
    ``target_val_cost`` (checked at each validation) stop a run early; leave them ``None`` for
    runs that must be reproducible step for step. ``cuda_graphs`` replays each update on a CUDA
    device from a CUDA graph (:mod:`ntm.cuda_graphs`; single-process runs), many times faster
    than launching its kernels one by one; it changes results by rounding only (a model that a
    graph cannot capture, the DNC and sparse access memory, trains eagerly whatever it says).
    ``init`` starts from trained weights instead of random ones (fine-tuning): a run directory
    (its last weights, ``model.safetensors``), ``"pretrained:NAME"``, or a ``.safetensors``
    file; they must fit ``model``. A resumed run loads its own state and ignores it.
    ``restart_after`` and ``restart_below`` (both or neither) restart a run from fresh weights
    when an attempt has gone ``restart_after`` sequences without a validation under
    ``restart_below`` bits per sequence, since it began or since its last validation under
    them (:mod:`ntm.training.restarts`); ``train.steps`` bounds all attempts together.
    ``rewind_above`` (bits per sequence; ``None``: never) rewinds a run after a spike: at a
    validation more than that above the best of the attempt so far, once that best is under
    a fifth of the attempt's first validation, the weights and the optimiser's state go back
    to where they were at that best (its momentum zeroed), and the learning rate is multiplied
    by ``rewind_factor`` from then on, once more for every rewind (:mod:`ntm.training.rewinds`).
    """

    steps: int = bounded(2000, min=0)
    batch_size: int = bounded(16, min=1)
    seed: int = bounded(1, min=0, lt=SEED_LIMIT)
    log_every: int = bounded(50, min=1)
    val_every: int = bounded(250, min=1)
    val_batches: int = bounded(4, min=1)
    val_batch_size: int = bounded(32, min=1)
    val_seed: int = bounded(123456789, min=0, lt=SEED_LIMIT)
    checkpoint_every: int = bounded(500, min=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = bounded(1, min=1)
    tensorboard: bool = False
    cuda_graphs: bool = True
    max_seconds: float | None = bounded(None, gt=0)
    target_val_cost: float | None = bounded(None, min=0)
    init: str | None = None
    restart_after: int | None = bounded(None, min=1)
    restart_below: float | None = bounded(None, gt=0)
    rewind_above: float | None = bounded(None, gt=0)
    rewind_factor: float = bounded(0.5, gt=0, max=1)


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory.

    ``model`` is the config of a registered model (:class:`ntm.models.NTMConfig`,
    :class:`ntm.models.LSTMConfig`, ...), its ``kind`` naming the model. ``model_module`` names
    a module that registers that model when imported (``--model-module``), as
    ``task.module`` does for the task; ``config.json`` keeps it as ``model.module``.
    """

    model: Any = field(default_factory=lambda: models.default_config(models.DEFAULT_MODEL))
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_module: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy: one object per section."""
        return {"model": {**dataclasses.asdict(self.model), "module": self.model_module},
                **{section: dataclasses.asdict(getattr(self, section))
                   for section in SECTIONS[1:]}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        """Build a config from :meth:`to_dict`'s output, checking keys and types.

        Missing keys take their defaults and the older flat model fields that the model does
        not have are dropped (so older files still load); unknown keys are errors.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        _check_keys(data, SECTIONS, "config sections")
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be an object")
        config = cls()
        if "model" in data:
            config.model_module, config.model = _read_model(data["model"])
        for section in SECTIONS[1:]:
            values = data.get(section, {})
            # The task's name decides the types of its parameters, so it goes first, then the
            # module that registers that name.
            for key in sorted(values, key=lambda key: (key != "name", key != "module")):
                _assign(config, section, key, values[key])
        validate_task(config.task)
        _check_learning_rates(config.optim)
        _check_restarts(config.train)
        return config

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config is not valid JSON: {error}") from None
        return cls.from_dict(data)


def _read_model(values: dict[str, Any]) -> tuple[str | None, Any]:
    """The module and the model config of a run's model section (its module imported first,
    since it registers the kind)."""
    module = convert(values.get("module"), str | None, "model.module") or None
    import_model_module(module, values.get("kind"))
    return module, models.from_dict({k: v for k, v in values.items() if k != "module"})


def apply_overrides(config: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Return a copy of ``config`` with ``section.key=value`` overrides applied.

    Values are parsed as the field's type: ``int`` and ``float`` as numbers, ``bool`` as
    ``true``/``false`` (also ``1``/``0``, ``yes``/``no``), optional fields accept ``none``.
    ``model.<key>`` sets a field of the chosen model's config (``model.module``: the module
    that registers it). ``task.<param>`` sets a task parameter, typed like the task's default
    for it. ``task.name`` and ``model.kind`` may not change: they picked the preset that
    ``config`` came from (:func:`~ntm.training.preset_config`), whose sizes and rates would stay.

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
    _check_restarts(config.train)
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


def _check_restarts(train: TrainConfig) -> None:
    if (train.restart_after is None) != (train.restart_below is None):
        raise ConfigError("train.restart_after and train.restart_below go together: set both "
                          "(sequences, bits per sequence) or neither")
    if train.restart_after is not None and train.init is not None:
        raise ConfigError("train.restart_after draws fresh weights, which would discard "
                          f"train.init={train.init}; use one or the other (fine-tuning: "
                          "--set train.restart_after=none --set train.restart_below=none)")


def _check_keys(given: dict[str, Any], valid: Any, what: str) -> None:
    for key in given:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid {what}: {', '.join(valid)}")


def _assign(config: RunConfig, section: str, name: str, value: Any) -> None:
    """Set ``config.<section>.<name>`` to ``value`` (a string from the command line, or JSON)."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; valid sections: "
                          f"{', '.join(SECTIONS)}")
    if section == "model":
        _assign_model(config, name, value)
    elif section == "task":
        _assign_task(config.task, name, value)
    else:
        target = getattr(config, section)
        fields = [f.name for f in dataclasses.fields(target)]
        if name not in fields:
            raise ConfigError(f"unknown key '{section}.{name}'; valid keys of {section}: "
                              f"{', '.join(fields)}")
        assign(target, name, value, f"{section}.{name}")


def _assign_model(config: RunConfig, name: str, value: Any) -> None:
    """``model.module``, ``model.kind`` (a new kind starts from its defaults) or a field of the
    model's config."""
    if name == "module":
        config.model_module = convert(value, str | None, "model.module") or None
        import_model_module(config.model_module)  # registers the model, whose keys may follow
    elif name == "kind":
        if value not in models.names():
            raise ConfigError(f"model.kind must be one of {', '.join(models.names())}; "
                              f"got {value!r}")
        if value != config.model.kind:
            config.model = models.default_config(value)
    else:
        models.set_field(config.model, name, value)


def _assign_task(task: TaskConfig, name: str, value: Any) -> None:
    """``task.name``, ``task.module``, ``task.params`` (an object) or one task parameter."""
    if name == "module":
        task.module = convert(value, str | None, "task.module") or None
        import_task_module(task)  # registers the task, whose parameters may follow
    elif name == "name":
        task.name = convert(value, str, "task.name")
    elif name == "curriculum":
        task.curriculum = convert(value, int | None, "task.curriculum")
        if task.curriculum is not None and task.curriculum < 1:
            raise ConfigError(f"task.curriculum must be at least 1 (sequences) or none, "
                              f"got {task.curriculum}")
    elif name == "harden_below":
        task.harden_below = convert(value, float | None, "task.harden_below")
        if task.harden_below is not None and not task.harden_below > 0:
            raise ConfigError(f"task.harden_below must be above 0 (bits per sequence) or none, "
                              f"got {task.harden_below}")
    elif name == "opening":
        task.opening = convert(value, int | None, "task.opening")
        if task.opening is not None and task.opening < 1:
            raise ConfigError(f"task.opening must be at least 1 (sequences) or none, "
                              f"got {task.opening}")
        if task.opening is None:  # none: no opening, so that one override turns it off
            task.opening_params = {}
    elif name in ("params", "opening_params"):
        if isinstance(value, str):
            raise ConfigError(f"set task parameters one by one: task.{_PREFIX[name]}<param>=value")
        if not isinstance(value, dict):
            raise ConfigError(f"task.{name} expects an object, got {value!r}")
        setattr(task, name, {})
        for key, item in value.items():
            _assign_task(task, _PREFIX[name] + key, item)
    else:
        params, prefix = ((task.opening_params, "opening_params.")
                          if name.startswith("opening_params.") else (task.params, ""))
        param = name.removeprefix(prefix)
        defaults = task_defaults(task.name)
        if param not in defaults:
            raise ConfigError(f"unknown key 'task.{name}'; valid keys of task {task.name!r}: "
                              f"name, module, curriculum, harden_below, opening, "
                              f"opening_params.<param>, {', '.join(defaults)}")
        params[param] = convert(value, type_of(defaults[param]), f"task.{name}")


# How one parameter of each object of task parameters is named in an override.
_PREFIX = {"params": "", "opening_params": "opening_params."}


def __getattr__(name: str) -> Any:
    if name == "MODEL_KINDS":  # the older constant: the registered models, now
        return tuple(models.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

