"""A length curriculum: a task's longest sequences grow from its shortest to its full length.

A task with a curriculum declares, in its class attribute ``curriculum``, which parameters grow
and from which parameter each starts: copy's ``{"max_length": "min_length"}`` trains at first
on sequences of ``min_length`` only, and its longest sequences reach ``max_length`` once the
curriculum is over. Training with ``task.curriculum=S`` (sequences) grows them linearly over
the first ``S`` training sequences; validation always uses the full task. The stage is a pure
function of the sequences seen, so a resumed run draws what one that never stopped draws.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Task

__all__ = ["curriculum_of", "stage_params"]


def curriculum_of(task: Task) -> dict[str, str]:
    """``{grown parameter: parameter it starts from}`` of ``task`` (empty: no curriculum)."""
    return dict(getattr(task, "curriculum", {}) or {})


def stage_params(task: Task, fraction: float) -> dict[str, Any]:
    """``task.params`` with each grown parameter ``fraction`` (0..1) of the way from its start
    to its full value, rounded down, in whole steps: ``start + floor(fraction * (full - start
    + 1))``, at most ``full``.

    >>> from ntm.tasks import CopyTask
    >>> [stage_params(CopyTask(), f)["max_length"] for f in (0, 0.1, 0.5, 0.99, 1)]
    [1, 3, 11, 20, 20]
    """
    params = task.params
    for grown, start_name in curriculum_of(task).items():
        start, full = params[start_name], params[grown]
        params[grown] = min(full, start + math.floor(fraction * (full - start + 1)))
    return params
