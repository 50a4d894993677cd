"""Scoring a model on a task, and reading back run directories."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import tasks
from ..metrics import bit_errors_per_sequence, bits_per_sequence
from .build import build_model, build_task
from .checkpoint import BEST_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, load_weights
from .config import ModelConfig, RunConfig, apply_overrides
from .errors import ConfigError, RunDirError

__all__ = [
    "PRETRAINED_PREFIX",
    "evaluate",
    "evaluate_batches",
    "generalisation",
    "load_run",
    "read_config",
    "read_metrics",
    "resolve_run_dir",
    "setting_label",
    "weights_file",
    "weights_model_config",
]

PRETRAINED_PREFIX = "pretrained:"


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Iterable[tasks.Batch], task: tasks.Task | None = None
) -> dict[str, float]:
    """Mean cost and bit errors per sequence of ``model`` over ``batches``.

    Args:
        model: maps ``inputs [steps, batch, input_size]`` to ``(logits, state)``.
        batches: CPU or device batches; they are moved to the model's device.
        task: if it has ``optimal_bits_per_sequence(batch)`` (ngrams), the optimal estimator's
            cost on the same batches is reported as ``optimal_cost``.

    Returns:
        ``{"cost": bits per sequence, "bit_errors": bit errors per sequence}`` plus
        ``"optimal_cost"`` where the task has an optimal estimator; means over batches.
    """
    device = next(model.parameters()).device
    optimal = getattr(task, "optimal_bits_per_sequence", None)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"cost": 0.0, "bit_errors": 0.0}
    count = 0
    try:
        for batch in batches:
            moved = batch.to(device)
            logits, _ = model(moved.inputs)
            totals["cost"] += bits_per_sequence(logits, moved.targets, moved.mask).item()
            totals["bit_errors"] += bit_errors_per_sequence(
                logits, moved.targets, moved.mask
            ).item()
            if optimal is not None:
                totals["optimal_cost"] = totals.get("optimal_cost", 0.0) + optimal(batch)
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate needs at least one batch")
    return {key: value / count for key, value in totals.items()}


def evaluate(
    model: nn.Module,
    task: tasks.Task,
    batches: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Score ``model`` on ``batches`` fresh batches of ``batch_size`` sequences of ``task``.

    Returns:
        ``{"cost", "bit_errors"}`` per sequence (and ``"optimal_cost"`` for ngrams); see
        :func:`evaluate_batches`.
    """
    return evaluate_batches(
        model, (task.sample(batch_size, generator=generator) for _ in range(batches)), task
    )


def setting_label(params: dict[str, Any]) -> str:
    """A short name for a parameter override: ``{"min_length": 10, "max_length": 10}`` is
    ``"length=10"``; ``{}`` is ``"training"`` (the training distribution)."""
    if not params:
        return "training"
    parts = []
    for key, value in params.items():
        if key.startswith("max_") and params.get("min_" + key[4:]) == value:
            continue  # shown with its min_ twin
        if key.startswith("min_") and params.get("max_" + key[4:]) == value:
            key = key[4:]
        parts.append(f"{key}={value}")
    return " ".join(parts)


def generalisation(
    model: nn.Module,
    config: RunConfig,
    *,
    settings: list[dict[str, Any]] | None = None,
    batches: int = 4,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Score ``model`` on the training distribution and the task's generalisation tests.

    Args:
        model: the trained model.
        config: the run's config (its task and task parameters).
        settings: task-parameter overrides to test; ``None`` means the training distribution
            followed by :data:`ntm.tasks.GENERALISATION` for the task.
        batches, batch_size: sequences scored per setting.
        seed: each setting draws from its own generator seeded with ``seed``, so every row is
            reproducible on its own.

    Returns:
        One dict per setting: ``setting`` (label), ``params`` (the overrides), ``cost``,
        ``bit_errors`` and, for ngrams, ``optimal_cost``.
    """
    if settings is None:
        settings = [{}] + [s for s in tasks.GENERALISATION.get(config.task.name, []) if s]
    rows = []
    for overrides in settings:
        task = build_task(config.task, **overrides)
        generator = torch.Generator().manual_seed(seed)
        scores = evaluate(model, task, batches, batch_size, generator)
        rows.append({"setting": setting_label(overrides), "params": overrides, **scores})
    return rows


def resolve_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The directory of a run; ``"pretrained:TASK"`` names a run shipped with the package.

    Raises:
        RunDirError: the directory (or the pretrained run) does not exist.
    """
    text = os.fspath(run_dir)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX):]
        try:
            from .. import pretrained  # shipped weights, optional
        except ImportError:
            raise RunDirError("pretrained runs are not available in this installation") from None
        try:
            return Path(pretrained.run_dir(name))
        except (KeyError, ValueError) as error:
            reason = error.args[0] if error.args else ""  # str(KeyError) adds quotes
            raise RunDirError(f"no pretrained run {name!r}; {reason}") from None
    path = Path(text)
    if path.is_file():
        raise RunDirError(f"{text} is a file, not a run directory; give the directory that "
                          "holds it (with config.json), e.g. "
                          f"{path.parent if str(path.parent) != '.' else 'runs/NAME'}")
    if not path.is_dir():
        raise RunDirError(f"run directory {text} does not exist")
    return path


def weights_file(source: str | os.PathLike[str]) -> Path:
    """The weights ``source`` names: a weights file (``.safetensors``), or the last weights
    (``model.safetensors``) of a run directory or of ``"pretrained:NAME"``.

    Raises:
        RunDirError: no such file, run directory or pretrained run.
    """
    text = os.fspath(source)
    if _is_bare_weights(text):
        return Path(text)
    path = resolve_run_dir(text) / MODEL_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {text} a run directory?")
    return path


def weights_model_config(source: str | os.PathLike[str]) -> ModelConfig | None:
    """The model config that comes with the weights ``source`` names (see :func:`weights_file`):
    its run directory's or pretrained run's, or ``None`` for a bare weights file.

    Raises:
        RunDirError: no such run directory or pretrained run, or its config is missing.
    """
    text = os.fspath(source)
    return None if _is_bare_weights(text) else read_config(text).model


def _is_bare_weights(source: str) -> bool:
    """An existing file is a weights file; anything else names a run (directory or pretrained).

    Raises:
        RunDirError: ``source`` ends in ``.safetensors`` but no such file exists.
    """
    if Path(source).is_file():
        return True
    if source.endswith(".safetensors"):
        raise RunDirError(f"weights file {source} does not exist")
    return False


def read_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    """The :class:`RunConfig` saved in a run directory."""
    path = resolve_run_dir(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {run_dir} a run directory?")
    try:
        return RunConfig.from_json(path.read_text(encoding="utf-8"))
    except (ConfigError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} is corrupt: {error}") from None


def load_run(
    run_dir: str | os.PathLike[str], *, best: bool = False,
    device: torch.device | str | None = None, memory_slots: int | None = None,
) -> tuple[nn.Module, RunConfig]:
    """Load a trained model and its config from a run directory, in eval mode.

    Args:
        run_dir: a directory written by :func:`ntm.training.train`, or ``"pretrained:TASK"``.
        best: load the weights of the best validation (``best.safetensors``) instead of the
            last ones (``model.safetensors``).
        device: where to put the model; ``None`` means CUDA if the run asked for it (or for
            ``auto``) and it is available, else the CPU.
        memory_slots: give the NTM a memory of this many slots instead of the one it trained
            with (the returned config says so). No weight depends on the memory's length, so a
            model that ran out of memory on long sequences can be tested with more; a learned
            initial memory (``model.memory_init=learned``) is the exception: only its own size
            is accepted.

    Raises:
        RunDirError: missing or corrupt directory, or weights that do not fit the config.
        ConfigError: ``memory_slots`` for a model that has no memory, another size for one
            that learned its initial memory, or too few slots for its shifts.
    """
    path = resolve_run_dir(run_dir)
    config = read_config(path)
    if memory_slots is not None:
        config = _with_memory_slots(config, memory_slots)
    if device is None:
        wants_cuda = config.train.device in ("auto", "cuda")
        device = "cuda" if wants_cuda and torch.cuda.is_available() else "cpu"
    task = build_task(config.task)
    model = build_model(config.model, task.input_size, task.output_size, device=device)
    load_weights(model, path / (BEST_FILE if best else MODEL_FILE))
    return model.eval(), config


def _with_memory_slots(config: RunConfig, memory_slots: int) -> RunConfig:
    """``config`` with ``memory_slots`` memory rows, if its model's weights allow that."""
    model = config.model
    if model.kind == "lstm":
        raise ConfigError("memory_slots applies to an NTM (ntm-lstm, ntm-ff), not to the "
                          "LSTM baseline, which has no memory")
    if model.memory_init == "learned" and memory_slots != model.memory_slots:
        raise ConfigError("memory_slots cannot change for a model that learned its initial "
                          "memory (model.memory_init=learned): that memory is a weight of "
                          f"{model.memory_slots} rows")
    return apply_overrides(config, [f"model.memory_slots={memory_slots}"])


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` in a run directory, in order."""
    path = resolve_run_dir(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunDirError(f"{path}, line {number}, is not valid JSON") from None
    return records
