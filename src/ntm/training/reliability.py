"""Whether a run solved its task and stayed solved: the measure of the reliability studies.

A run **collapses** (spikes) when, once the best validation cost so far has fallen below
:data:`FALL` (20%) of the run's first validation cost, a later validation is more than
:data:`RISE_BITS` (10) bits per sequence above that best. Consecutive validations above it are
one collapse; the run may come back down and collapse again. A run **stays solved** when its
last validation is under the task's target (it trained to the end of its budget, rather than
stopping at its first validation under the target, which hides collapses).

Validation costs are read from ``metrics.jsonl`` records (``val_cost``); records without one
are skipped. A run with an opening (``task.opening``) validates on the task while it trains on
other data; the collapses that start then still count, and are also counted apart. A run that
restarts from fresh weights (``train.restart_after``) opens again in each attempt, which
begins after the validation that carries ``"restart"``. A run that rewinds after a spike
(``train.rewind_above``) keeps the spike's validation, which carries ``"rewind"``: it counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FALL", "RISE_BITS", "Reliability", "collapses", "reliability"]

FALL = 0.2  # the best cost must have fallen below this fraction of the first validation's
RISE_BITS = 10.0  # then a validation this many bits above the best so far is a collapse


def collapses(val_costs: Sequence[float], *, fall: float = FALL,
              rise: float = RISE_BITS) -> list[int]:
    """The indices of the validations that start a collapse, in order.

    Args:
        val_costs: one run's validation costs in bits per sequence, in order. A NaN cost is
            a collapse where one can happen (worse than any number).
        fall, rise: the definition's 20% and 10 bits.

    >>> collapses([100.0, 50.0, 10.0, 30.0, 25.0, 5.0, 5.5, 40.0])
    [3, 7]
    >>> collapses([100.0, 90.0, 150.0])  # never fell under 20 bits: no collapse yet
    []
    """
    starts: list[int] = []
    if not val_costs:
        return starts
    first, best, spiking = val_costs[0], math.inf, False
    for index, cost in enumerate(val_costs):
        armed = best < fall * first
        above = not cost <= best + rise  # NaN counts as above
        if armed and above and not spiking:
            starts.append(index)
        spiking = armed and above
        if cost < best:
            best = cost
    return starts


@dataclass(frozen=True)
class Reliability:
    """How one run went, by the measure of the reliability studies.

    Attributes:
        solved: its last validation is under the target.
        first_solved_sequences: the training sequences at its first validation under the
            target (None if never).
        first_solved_seconds: the training seconds then.
        collapses: how many times it collapsed.
        collapse_steps: the step of each collapse's first validation.
        best_val_cost, last_val_cost: its lowest and its last validation cost.
        validations: how many validations it made.
        collapses_in_opening: how many of its collapses started during an opening (at a
            validation at most ``opening`` training sequences after the run, or an attempt
            after a restart, began).
        restarts: how many times it started again from fresh weights
            (``train.restart_after``; its sequences to solve count every attempt's).
        rewinds: how many times it went back to its best validation after a spike
            (``train.rewind_above``).
        skipped: how many of its updates were skipped (``optim.skip_above``).
    """

    solved: bool
    first_solved_sequences: int | None
    first_solved_seconds: float | None
    collapses: int
    collapse_steps: tuple[int, ...]
    best_val_cost: float | None
    last_val_cost: float | None
    validations: int
    collapses_in_opening: int = 0
    restarts: int = 0
    rewinds: int = 0
    skipped: int = 0


def reliability(records: Iterable[Mapping[str, Any]], target: float, *,
                opening: int | None = None) -> Reliability:
    """The :class:`Reliability` of a run from its ``metrics.jsonl`` records; ``opening``:
    the training sequences of its opening (``task.opening``; ``None``: none).

    >>> records = [{"step": 50, "sequences": 1600, "seconds": 4.0, "val_cost": 80.0},
    ...            {"step": 100, "sequences": 3200, "seconds": 8.0, "val_cost": 0.05},
    ...            {"step": 150, "sequences": 4800, "seconds": 12.0, "val_cost": 30.0},
    ...            {"step": 200, "sequences": 6400, "seconds": 16.0, "val_cost": 0.01}]
    >>> result = reliability(records, target=0.1)
    >>> result.solved, result.first_solved_sequences, result.collapses, result.collapse_steps
    (True, 3200, 1, (150,))
    """
    records = list(records)
    scored = [record for record in records if record.get("val_cost") is not None]
    costs = [float(record["val_cost"]) for record in scored]
    first = next((record for record, cost in zip(scored, costs, strict=True) if cost < target),
                 None)
    starts = collapses(costs)
    finite = [cost for cost in costs if math.isfinite(cost)]
    # Each attempt opens again (ntm.training.restarts): from 0 and from each restart on.
    attempts = [0] + [int(record["sequences"]) for record in scored if "restart" in record]

    def in_opening(sequences: int) -> bool:
        return any(start < sequences <= start + (opening or 0) for start in attempts)

    return Reliability(
        solved=bool(costs) and costs[-1] < target,
        first_solved_sequences=None if first is None else int(first["sequences"]),
        first_solved_seconds=None if first is None else float(first["seconds"]),
        collapses=len(starts),
        collapse_steps=tuple(int(scored[index]["step"]) for index in starts),
        best_val_cost=min(finite) if finite else None,
        last_val_cost=costs[-1] if costs else None,
        validations=len(costs),
        collapses_in_opening=sum(in_opening(int(scored[index]["sequences"]))
                                 for index in starts),
        restarts=sum("restart" in record for record in scored),
        rewinds=sum("rewind" in record for record in scored),
        skipped=sum(int(record.get("skipped", 0)) for record in records),
    )
