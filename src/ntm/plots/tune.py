"""The figure of a search (``ntm tune``): each trial's best validation cost against each searched
key, coloured by the seeds it solved."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .figures import save_figure

__all__ = ["FIGURE_FILE", "draw_trials", "trials_figure"]

FIGURE_FILE = "trials.png"


def trials_figure(results: Sequence[Any], space: Sequence[Any], target: float) -> Figure:
    """One panel per searched key: every trial's best validation cost (bits per sequence, log
    scale) against its value of the key, its colour the fraction of its seeds that solved the
    task, the target a dashed line. ``results`` are :class:`ntm.training.tune.TrialResult`,
    ``space`` the :class:`ntm.training.tune.Dimension` searched."""
    figure = Figure(figsize=(4.2 * len(space), 3.6), layout="constrained")
    axes = figure.subplots(1, len(space), squeeze=False)[0]
    ran = [r for r in results if r.best_cost is not None]
    for ax, dimension in zip(axes, space, strict=True):
        values = [r.values.get(dimension.key) for r in ran]
        if dimension.kind == "choice":
            positions = {choice: i for i, choice in enumerate(dimension.choices)}
            xs = [positions.get(str(value), -1) for value in values]
            ax.set_xticks(range(len(dimension.choices)), dimension.choices)
        else:
            xs = values
            if dimension.kind == "loguniform":  # the whole searched range, labelled by decade
                ax.set_xscale("log")
                ax.set_xlim(dimension.low / 1.25, dimension.high * 1.25)
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                margin = (dimension.high - dimension.low) * 0.05
                ax.set_xlim(dimension.low - margin, dimension.high + margin)
        points = ax.scatter(xs, [max(r.best_cost, 1e-4) for r in ran],
                            c=[r.solved / max(r.seeds, 1) for r in ran], cmap="viridis",
                            vmin=0, vmax=1, edgecolors="black", linewidths=0.5, zorder=3)
        for x, r in zip(xs, ran, strict=True):
            ax.annotate(str(r.number), (x, max(r.best_cost, 1e-4)), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        ax.axhline(target, color="gray", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel(dimension.key)
        ax.set_ylabel("best validation cost (bits per sequence)")
        ax.grid(True, which="major", alpha=0.3)
    if ran:
        figure.colorbar(points, ax=axes.tolist(), label="fraction of its seeds solved")
    figure.suptitle(f"{len(results)} trials; number: the trial; dashed: the target {target:g}")
    return figure


def draw_trials(results: Sequence[Any], space: Sequence[Any], out: str | os.PathLike[str],
                target: float) -> str:
    """Draw :func:`trials_figure` into ``out/trials.png``; returns its path."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return save_figure(trials_figure(results, space, target), Path(out) / FIGURE_FILE)
