"""Scoring a model on a task: cost and bit errors, the generalisation tests and their table.

Reading run directories back (:func:`load_run`, :func:`read_config`, ...) lives in
:mod:`ntm.rundir` and is re-exported here under its older names.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .. import models, tasks
from ..errors import ConfigError
from ..metrics import bit_errors_per_sequence, bits_per_sequence
from ..rundir.build import build_task
from ..rundir.config import RunConfig, apply_overrides
from ..rundir.directory import (
    PRETRAINED_PREFIX,
    load_run,
    read_config,
    read_metrics,
    resolve_run_dir,
    weights_config,
    weights_file,
    weights_model_config,
)

__all__ = [
    "PRETRAINED_PREFIX",
    "batch_logits",
    "eval_report",
    "eval_settings",
    "evaluate",
    "evaluate_batches",
    "generalisation",
    "load_run",
    "read_config",
    "read_metrics",
    "resolve_run_dir",
    "results_table",
    "setting_label",
    "weights_config",
    "weights_file",
    "weights_model_config",
]


def batch_logits(model: nn.Module, batch: tasks.Batch) -> torch.Tensor:
    """``model``'s logits ``[steps, batch, output_size]`` for ``batch.inputs``, given
    ``batch.lengths`` where the batch has them and the model's ``forward`` takes ``lengths=``
    (every model of the package does; a custom model without it gets the padded batch, whose
    padding is not scored either). Zero past each sequence's end with lengths."""
    module = getattr(model, "module", model)  # DistributedDataParallel holds the model
    if batch.lengths is not None and _takes_lengths(type(module)):
        logits, _ = model(batch.inputs, lengths=batch.lengths)
    else:
        logits, _ = model(batch.inputs)
    return logits


@functools.cache
def _takes_lengths(model_type: type) -> bool:
    try:
        return "lengths" in inspect.signature(model_type.forward).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Iterable[tasks.Batch], task: tasks.Task | None = None
) -> dict[str, float]:
    """Mean cost and bit errors per sequence of ``model`` over ``batches``.

    Args:
        model: maps ``inputs [steps, batch, input_size]`` to ``(logits, state)`` (given
            ``lengths=`` too where it takes them: :func:`batch_logits`).
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
            logits = batch_logits(model, moved)
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


def evaluation_config(config: RunConfig) -> RunConfig:
    """``config`` as tests see it: without its opening and curriculum, which shape training
    only, so that a test setting need not fit them (a run that opened on 5-6 items of
    associative recall is still tested on 2). ``config`` is not changed."""
    task = dataclasses.replace(config.task, curriculum=None, opening=None, opening_params={})
    return dataclasses.replace(config, task=task)


def eval_settings(config: RunConfig, overrides: list[str]) -> list[dict[str, Any]] | None:
    """The one test setting that ``task.KEY=VALUE`` overrides describe (``ntm eval --set``),
    as the task parameters that differ from the run's; ``None`` without overrides (the
    default tests).

    Raises:
        ConfigError: an override of anything but a task parameter, or a setting that changes
            the task's input or output size (the model could not take it).
    """
    if not overrides:
        return None
    for item in overrides:
        if not item.startswith("task.") or item.startswith("task.name="):
            raise ConfigError(f"eval takes task parameters only (task.KEY=VALUE), got {item!r}")
    changed = apply_overrides(evaluation_config(config), overrides).task.params
    setting = {key: value for key, value in changed.items()
               if config.task.params.get(key, not value) != value}
    trained, tested = build_task(config.task), build_task(config.task, **setting)
    for what in ("input_size", "output_size"):
        if getattr(trained, what) != getattr(tested, what):
            raise ConfigError(
                f"{' '.join(overrides)} changes the task's {what.replace('_', ' ')} from "
                f"{getattr(trained, what)} to {getattr(tested, what)}, which the model cannot "
                "take; change only the lengths, counts or other parameters that keep it")
    return [setting]


def eval_report(run: str, config: RunConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``ntm eval --json`` prints: the run, its task and model, the memory length it was
    tested with (``None`` for a model without one that can change) and :func:`generalisation`'s
    rows."""
    return {"run": run, "task": config.task.name, "model": config.model.kind,
            "memory_slots": models.memory_slots(config.model), "results": rows}


def results_table(rows: list[dict[str, Any]]) -> str:
    """:func:`generalisation`'s rows as a text table: settings left, numbers right (and the
    optimal estimator's cost where the task has one)."""
    columns = [("setting", "setting"), ("cost", "cost (bits/seq)"),
               ("bit_errors", "bit errors/seq")]
    if any("optimal_cost" in row for row in rows):
        columns.append(("optimal_cost", "optimal cost (bits/seq)"))
    cells = [[title for _, title in columns]]
    cells += [[row[key] if key == "setting" else f"{row[key]:.3f}" for key, _ in columns]
              for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                  for i, (cell, width) in enumerate(zip(line, widths, strict=True)))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
