"""Figures in the style of the NTM paper, as pure functions of arrays and records.

Every function takes NumPy arrays (or tensors) and plain dicts, and returns a
:class:`matplotlib.figure.Figure` built without pyplot, so no GUI backend or global state is
involved; :func:`save_figure` writes it as PNG (matplotlib's Agg canvas).
:mod:`ntm.plots.runs` gathers the data of run directories and calls these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "generalisation_figure",
    "learning_curve_figure",
    "link_figure",
    "save_figure",
    "sequence_figure",
    "usage_figure",
    "weightings_figure",
]

_BITS_MAP = "viridis"  # 0 = dark, 1 = bright, as in the paper's bit images
_WEIGHTS_MAP = "gray_r"  # weightings: white 0, black 1 (the paper's Figure 6)


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().to("cpu").float().numpy()
    return np.asarray(values, dtype=float)


def sequence_figure(
    inputs: Any, targets: Any, outputs: Any, *, title: str | None = None
) -> Figure:
    """Inputs, targets and outputs of one sequence, one row of images each, time across.

    Args:
        inputs: ``[steps, input_size]``.
        targets: ``[steps, output_size]``, 0 or 1.
        outputs: ``[steps, output_size]``, probabilities (the sigmoid of the logits).
        title: drawn above the figure.

    Returns:
        A figure with three image axes (channels down, time across, values 0 to 1).
    """
    panels = [("Inputs", _array(inputs)), ("Targets", _array(targets)),
              ("Outputs", _array(outputs))]
    steps = panels[0][1].shape[0]
    heights = [max(panel.shape[1], 1) for _, panel in panels]
    figure = Figure(figsize=(min(2 + steps * 0.12, 20), 1.2 + 0.25 * sum(heights)),
                    layout="constrained")
    axes = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    for axis, (name, values) in zip(axes, panels, strict=True):
        image = axis.imshow(values.T, aspect="auto", interpolation="nearest", cmap=_BITS_MAP,
                            vmin=0.0, vmax=1.0)
        axis.set_ylabel(name)
        axis.set_yticks([])
    axes[-1].set_xlabel("Time")
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    if title:
        figure.suptitle(title)
    return figure


def weightings_figure(
    read_weights: Any, write_weights: Any, *, title: str | None = None
) -> Figure:
    """Write and read weightings over time for one sequence (the paper's Figure 6).

    Args:
        read_weights: ``[steps, read_heads, memory_slots]``.
        write_weights: ``[steps, write_heads, memory_slots]``.
        title: drawn above the figure.

    Returns:
        A figure with one image per head, memory location down and time across.
    """
    writes, reads = _array(write_weights), _array(read_weights)
    slots = _focus(np.concatenate([writes, reads], axis=1))
    panels = [(f"Write weightings, head {h}", w[:, slots]) for h, w in
              enumerate(np.moveaxis(writes, 1, 0))]
    panels += [(f"Read weightings, head {h}", w[:, slots]) for h, w in
               enumerate(np.moveaxis(reads, 1, 0))]
    steps = panels[0][1].shape[0]
    columns = 2 if len(panels) > 2 else len(panels)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(min(2 + steps * 0.08, 10) * columns, 3 * rows),
                    layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (name, weights) in zip(axes, panels, strict=False):  # spare axes are hidden below
        axis.imshow(weights.T, aspect="auto", interpolation="nearest", cmap=_WEIGHTS_MAP,
                    vmin=0.0, vmax=max(float(weights.max()), 1e-8))
        axis.set_title(name)
        axis.set_xlabel("Time")
        axis.set_ylabel("Location")
        ticks = np.linspace(0, len(slots) - 1, min(len(slots), 6)).round().astype(int)
        axis.set_yticks(ticks, [str(slots[tick]) for tick in ticks])
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    return figure


def usage_figure(usage: Any, allocation: Any, *, title: str | None = None) -> Figure:
    """A DNC's memory usage and allocation weightings over time for one sequence.

    Args:
        usage: ``[steps, memory_slots]``, each slot's usage in [0, 1].
        allocation: ``[steps, write_heads, memory_slots]``, where each write head would
            allocate.
        title: drawn above the figure.

    Returns:
        A figure with one image for the usage and one per write head, location down, time
        across.
    """
    used, allocated = _array(usage), _array(allocation)
    panels = [("Usage", used)] + [(f"Allocation weighting, write head {h}", a)
                                  for h, a in enumerate(np.moveaxis(allocated, 1, 0))]
    steps = used.shape[0]
    figure = Figure(figsize=(min(2 + steps * 0.08, 10), 3 * len(panels)), layout="constrained")
    for axis, (name, values) in zip(figure.subplots(len(panels), 1, squeeze=False).ravel(),
                                    panels, strict=True):
        axis.imshow(values.T, aspect="auto", interpolation="nearest", cmap=_WEIGHTS_MAP,
                    vmin=0.0, vmax=max(float(values.max()), 1e-8))
        axis.set_title(name)
        axis.set_xlabel("Time")
        axis.set_ylabel("Location")
    if title:
        figure.suptitle(title)
    return figure


def link_figure(link: Any, *, title: str | None = None) -> Figure:
    """A DNC's temporal link matrices at the end of a sequence, one per write head.

    Args:
        link: ``[write_heads, memory_slots, memory_slots]``; ``link[w, i, j]`` is how much
            slot ``i`` was written right after slot ``j`` by head ``w``.
        title: drawn above the figure.

    Returns:
        A figure with one image per write head over the slots that were linked.
    """
    links = _array(link)
    used = np.flatnonzero((links.max(axis=(0, 1)) > 0.01) | (links.max(axis=(0, 2)) > 0.01))
    slots = np.arange(links.shape[-1]) if used.size == 0 else np.arange(used.min(),
                                                                         used.max() + 1)
    figure = Figure(figsize=(4.5 * len(links), 4.2), layout="constrained")
    for head, axis in enumerate(figure.subplots(1, len(links), squeeze=False).ravel()):
        image = axis.imshow(links[head][np.ix_(slots, slots)], interpolation="nearest",
                            cmap=_WEIGHTS_MAP, vmin=0.0, vmax=1.0,
                            extent=(slots[0] - 0.5, slots[-1] + 0.5, slots[-1] + 0.5,
                                    slots[0] - 0.5))
        axis.set_title(f"Link matrix, write head {head}")
        axis.set_xlabel("Written before (slot j)")
        axis.set_ylabel("Written after (slot i)")
    figure.colorbar(image, ax=list(figure.axes), shrink=0.8)
    if title:
        figure.suptitle(title)
    return figure


def _focus(weights: np.ndarray, threshold: float = 0.01, margin: int = 2) -> np.ndarray:
    """The memory locations worth drawing, in circular order.

    Heads move circularly, so the used locations can wrap from the last slot to the first. We
    drop the longest circular run of locations no head ever weights above ``threshold`` and
    keep the rest (with ``margin`` unused slots either side), starting after that run.

    Args:
        weights: ``[steps, heads, memory_slots]``.

    Returns:
        Slot indices, e.g. ``[120, ..., 127, 0, 1, 2]``.
    """
    slots = weights.shape[-1]
    used = weights.reshape(-1, slots).max(axis=0) > threshold
    if used.all() or not used.any():
        return np.arange(slots)
    # Longest run of unused slots, found on the doubled (unrolled) circle.
    best_start, best_length, start = 0, 0, None
    for index, is_used in enumerate(np.concatenate([used, used])):
        if not is_used and start is None:
            start = index
        if (is_used or index == 2 * slots - 1) and start is not None:
            length = index - start + (not is_used)
            if best_length < length <= slots:
                best_start, best_length = start, length
            start = None
    keep = slots - best_length + 2 * margin
    if keep >= slots:
        return np.arange(slots)
    return (best_start + best_length - margin + np.arange(keep)) % slots


def learning_curve_figure(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str | None = None
) -> Figure:
    """Cost against sequences seen, one colour per run (the paper's Figures 3, 7, 10, 13, 16).

    Args:
        runs: run label -> its ``metrics.jsonl`` records (``sequences``, ``cost`` and, where
            validated, ``val_cost``; ``val_optimal_cost`` draws the optimal estimator's cost;
            ``restart``, on the validation that ended an attempt, a vertical line; ``rewind``,
            on one that sent the run back to its best, a cross on it).
        title: drawn above the axes.

    Returns:
        A figure with one axis: training cost solid, validation cost dashed with markers, a
        dotted vertical line where a run started again from fresh weights
        (``train.restart_after``), so that the jump back up is not read as a collapse, and a
        cross on each validation after which a run rewound (``train.rewind_above``).
    """
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    optimal = None
    for index, (label, records) in enumerate(runs.items()):
        colour = f"C{index % 10}"
        points = [(r["sequences"] / 1000, r["cost"]) for r in records if "cost" in r]
        if points:
            axis.plot(*zip(*points, strict=True), color=colour, label=f"{label} (training)")
        checks = [(r["sequences"] / 1000, r["val_cost"]) for r in records if "val_cost" in r]
        if checks:
            axis.plot(*zip(*checks, strict=True), color=colour, linestyle="--", marker=".",
                      label=f"{label} (validation)")
        restarts = [r["sequences"] / 1000 for r in records if "restart" in r]
        for number, at in enumerate(restarts):
            axis.axvline(at, color=colour, linestyle=":", linewidth=1,
                         label=f"{label} (restart from fresh weights)" if number == 0 else None)
        rewinds = [(r["sequences"] / 1000, r["val_cost"]) for r in records if "rewind" in r]
        if rewinds:
            axis.plot(*zip(*rewinds, strict=True), color=colour, linestyle="none", marker="x",
                      markersize=8, label=f"{label} (rewound to its best)")
        optimal = next((r["val_optimal_cost"] for r in records if "val_optimal_cost" in r),
                       optimal)
    if optimal is not None:
        axis.axhline(optimal, color="black", linestyle=":", label="optimal estimator")
    axis.set_xlabel("Sequences seen (thousands)")
    axis.set_ylabel("Cost per sequence (bits)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(title or "Learning curve")
    return figure


def generalisation_figure(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], *, metric: str = "bit_errors",
    title: str | None = None,
) -> Figure:
    """A score per generalisation setting, one bar group per setting and one bar per run.

    Args:
        runs: run label -> rows with ``setting`` (the x label) and ``metric`` (see
            :func:`ntm.training.generalisation`); rows with ``optimal_cost`` get the optimal
            estimator's cost drawn beside them when ``metric`` is ``"cost"``.
        metric: ``"bit_errors"`` (default) or ``"cost"``.
        title: drawn above the axes.
    """
    settings: list[str] = []
    for rows in runs.values():
        settings += [row["setting"] for row in rows if row["setting"] not in settings]
    figure = Figure(figsize=(max(5, 1.2 * len(settings) * max(len(runs), 1)), 4),
                    layout="constrained")
    axis = figure.subplots()
    width = 0.8 / (len(runs) + (metric == "cost"))
    positions = np.arange(len(settings))
    for index, (label, rows) in enumerate(runs.items()):
        by_setting = {row["setting"]: row for row in rows}
        values = [by_setting[s][metric] if s in by_setting else np.nan for s in settings]
        bars = axis.bar(positions + index * width, values, width, label=label,
                        color=f"C{index % 10}")
        axis.bar_label(bars, fmt="%.3g", fontsize="x-small")  # a zero is a result too
        optimal = [by_setting.get(s, {}).get("optimal_cost", np.nan) for s in settings]
        if metric == "cost" and not np.all(np.isnan(optimal)) and index == 0:
            axis.bar(positions + len(runs) * width, optimal, width, label="optimal estimator",
                     color="lightgray")
    axis.set_xticks(positions + width * (len(runs) - 1) / 2, settings)
    axis.set_xlabel("Setting")
    axis.set_ylabel("Bit errors per sequence" if metric == "bit_errors" else
                    "Cost per sequence (bits)")
    axis.set_ylim(bottom=0)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(title or "Generalisation")
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> str:
    """Write ``figure`` as a PNG at ``path`` (its directory must exist); return the path."""
    figure.savefig(path, dpi=dpi, format="png")
    return os.fspath(path)
