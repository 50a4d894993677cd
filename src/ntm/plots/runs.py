"""Figures of run directories: what ``ntm plot`` and ``ntm demo`` draw.

Each function reads runs (:mod:`ntm.rundir`), scores them where the figure needs it
(:func:`ntm.training.generalisation`) and draws with :mod:`ntm.plots.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import tasks
from ..errors import RunDirError
from ..rundir import PRETRAINED_PREFIX, RunConfig, build_task, load_run, read_config, read_metrics
from ..training.evaluate import generalisation, setting_label
from .figures import (
    generalisation_figure,
    learning_curve_figure,
    link_figure,
    save_figure,
    sequence_figure,
    usage_figure,
    weightings_figure,
)

__all__ = ["curve_records", "draw_curves", "draw_runs", "example", "run_labels"]


def draw_runs(runs: Sequence[str], out: str | Path, *, batches: int, batch_size: int,
              best: bool = False, tests: Mapping[str, list[dict]] | None = None) -> list[str]:
    """Draw every figure of ``runs`` into ``out``; return the files written.

    Each run gets a test sequence (and, for a model with ``trace``, its weightings); all share
    one learning-curve figure (runs without records have no curve) and one generalisation
    figure. Every run is read before anything is written, so a bad one leaves no half-drawn
    folder.

    Args:
        runs: run directories or ``"pretrained:NAME"``.
        out: the figure directory (created).
        batches, batch_size: sequences scored per generalisation setting.
        best: draw the weights of each run's best validation.
        tests: generalisation rows already computed, by run label (see :func:`run_labels`).

    Raises:
        RunDirError: a missing or corrupt run.
    """
    out, labels = Path(out), run_labels(runs)
    loaded = [load_run(run, best=best) for run in runs]
    records = [read_metrics(run) for run in runs]
    out.mkdir(parents=True, exist_ok=True)
    tests, written = dict(tests or {}), []
    for label, (model, config) in zip(labels, loaded, strict=True):
        if label not in tests:
            tests[label] = generalisation(model, config, batches=batches, batch_size=batch_size)
        prefix = "" if len(runs) == 1 else f"{label}-"
        written += _draw_example(model, config, out, prefix)
    curves = {label: rows for label, rows in zip(labels, records, strict=True) if rows}
    if curves:  # a run stopped before its first record has no curve
        written.append(save_figure(learning_curve_figure(curves), out / "learning_curve.png"))
    scored = any("optimal_cost" in row for rows in tests.values() for row in rows)
    figure = generalisation_figure(tests, metric="cost" if scored else "bit_errors")
    written.append(save_figure(figure, out / "generalisation.png"))
    return written


def _draw_example(model: nn.Module, config: RunConfig, out: Path, prefix: str) -> list[str]:
    """The sequence figure of one run (and its weightings, where the model has them)."""
    shown = example(model, config)
    name = f"{config.task.name}, {config.model.kind}"
    figure = sequence_figure(shown["inputs"], shown["targets"], shown["outputs"],
                             title=f"{name} ({shown['setting']})")
    written = [save_figure(figure, out / f"{prefix}sequence.png")]
    if "read_weights" in shown:
        figure = weightings_figure(shown["read_weights"], shown["write_weights"], title=name)
        written.append(save_figure(figure, out / f"{prefix}weightings.png"))
    if "usage" in shown:  # the DNC's allocation and temporal links
        figure = usage_figure(shown["usage"], shown["allocation"], title=name)
        written.append(save_figure(figure, out / f"{prefix}usage.png"))
        figure = link_figure(shown["link"], title=name)
        written.append(save_figure(figure, out / f"{prefix}links.png"))
    return written


def draw_curves(runs: Sequence[str], out: str | Path) -> str:
    """Draw the learning curves of ``runs`` into ``out/learning_curve.png``; return its path.

    Only ``config.json`` and ``metrics.jsonl`` are read (no weights, nothing evaluated). Each
    run is labelled by its directory and model, and the title names the task when the runs
    share one, so that a figure comparing models reads like the paper's.

    Raises:
        RunDirError: a missing or corrupt run, or one without records.
    """
    configs = [read_config(run) for run in runs]  # resolves pretrained: names too
    curves = {}
    for run, label, config in zip(runs, run_labels(runs), configs, strict=True):
        kind = config.model.kind
        named = label == kind or label.endswith(f"-{kind}")  # e.g. pretrained-copy-ntm-ff
        curves[label if named else f"{label} ({kind})"] = curve_records(run)
    task_names = {config.task.name for config in configs}
    title = f"Learning curves: {task_names.pop()}" if len(task_names) == 1 else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(learning_curve_figure(curves, title=title), out / "learning_curve.png")


def curve_records(run: str) -> list[dict[str, Any]]:
    """The metrics records of ``run``.

    Raises:
        RunDirError: it has none to draw (or no ``metrics.jsonl``).
    """
    records = read_metrics(run)
    if not records:
        raise RunDirError(f"{run} has no metrics records yet (it logs every train.log_every "
                          "steps), so there is no learning curve to draw")
    return records


def run_labels(runs: Sequence[str]) -> list[str]:
    """Short, distinct names for runs: the directory names, made unique by their parents.

    A sweep's ``OUT/seedS`` is named ``OUT-seedS``: ``seedS`` alone says nothing in a legend.

    >>> run_labels(["runs/copy-ntm-lstm-seed1", "runs/copy-sweep/seed3", "pretrained:copy"])
    ['copy-ntm-lstm-seed1', 'copy-sweep-seed3', 'pretrained-copy']
    """
    def name(run: str) -> str:
        if run.startswith(PRETRAINED_PREFIX):
            return run.replace(":", "-")
        path = Path(run).resolve()
        is_seed = path.name.startswith("seed") and path.name[4:].isdigit()
        return f"{path.parent.name}-{path.name}" if is_seed else path.name

    names = [name(run) for run in runs]
    if len(set(names)) < len(names):
        names = [str(run).replace("/", "-").replace(":", "-").strip("-.") for run in runs]
    return names


@torch.no_grad()
def example(model: nn.Module, config: RunConfig) -> dict[str, Any]:
    """One test sequence of the run's task (its first generalisation setting) with the model's
    outputs.

    Returns:
        ``setting`` (its label), ``inputs [steps, input_size]``, ``targets`` and ``outputs``
        ``[steps, output_size]`` (probabilities; unscored steps zero, as in the paper's
        figures) and, for a model with ``trace``, the first sequence's ``read_weights`` and
        ``write_weights`` ``[steps, heads, memory_slots]``; for a DNC also ``usage [steps,
        memory_slots]``, ``allocation [steps, write_heads, memory_slots]`` and the final
        ``link [write_heads, memory_slots, memory_slots]``.
    """
    settings = [s for s in tasks.GENERALISATION.get(config.task.name, []) if s]
    setting = settings[0] if settings else {}
    batch = build_task(config.task, **setting).sample(1, generator=torch.Generator().manual_seed(0))
    inputs = batch.inputs.to(next(model.parameters()).device)
    shown: dict[str, Any] = {"setting": setting_label(setting)}
    if hasattr(model, "trace"):
        logits, state, trace = model.trace(inputs)
        heads = getattr(trace, "access", trace)  # the core's MemoryTrace nests the access's
        for field in ("read_weights", "write_weights", "usage", "allocation"):
            if field in heads._fields:
                shown[field] = getattr(heads, field)[:, 0].cpu()
        link = getattr(getattr(state, "access", None), "link", None)
        if link is not None:
            shown["link"] = link[0].cpu()  # (write_heads, N, N) at the end of the sequence
    else:
        logits, _ = model(inputs)
    mask = batch.mask[:, 0, None].float()  # (T, 1)
    shown.update(inputs=batch.inputs[:, 0], targets=batch.targets[:, 0] * mask,
                 outputs=torch.sigmoid(logits[:, 0]).cpu() * mask)
    return shown
