"""Restarts from fresh weights (``train.restart_after``, ``train.restart_below``).

Some seeds of some tasks settle on a plateau that the others leave early: on repeat copy about
half the LSTM-controller NTM's runs hold short sequences in the controller and never learn to
use the memory within the budget, and whether a run leaves the plateau shows within about
80,000 sequences (RESULTS.md, "Restarts", with what restarts did there: 7 of 8 seeds solved
against 5, with a larger budget). A run that restarts draws new initial weights when an
attempt has gone ``restart_after`` sequences without a validation under ``restart_below`` bits
(since it began, or since its last validation under them), and starts that attempt as a new
run would: a fresh optimiser state, the opening and the curriculum again, the learning rate's
schedule over what is left of the budget. The data stream goes on (so no two attempts see the
same batches), and every validation of every attempt stays in ``metrics.jsonl``; the record of
the validation that ended an attempt carries ``"restart": K``, the number of the attempt that
follows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..rundir.config import TrainConfig

__all__ = ["attempt_validations", "reset_optimizer", "restart_due", "weight_seed"]


def weight_seed(seed: int, attempt: int) -> int:
    """The seed of the initial weights of attempt ``attempt`` (0: the run's first) of a run
    seeded with ``seed``: ``2 * seed`` for the first, as for a run without restarts (odd numbers
    seed the data: :func:`~ntm.training.distributed.data_seed`); an even 64-bit number that
    numpy's :class:`~numpy.random.SeedSequence` derives from ``(seed, attempt)`` for the others,
    so that no attempt reuses the weights of another run's seed.

    >>> weight_seed(3, 0), weight_seed(3, 1) % 2, weight_seed(3, 1) == weight_seed(3, 1)
    (6, 0, True)
    """
    if attempt == 0:
        return 2 * seed
    word = np.random.SeedSequence(seed, spawn_key=(2**32 + attempt,)).generate_state(1, np.uint64)
    return (int(word[0]) >> 2) << 1  # even, and within the 64 bits torch's seeds take


def restart_due(train: TrainConfig, counters: dict[str, Any]) -> bool:
    """Whether the attempt under way should end here, at a validation: restarts are on, the
    run has updates left (a restart at its last would leave fresh weights as its model), and
    the attempt has gone ``train.restart_after`` sequences or more without a validation under
    ``train.restart_below`` bits per sequence: since it began, or since its last validation
    under the bar. A dip under the bar early in an attempt (one seed dipped to 92 bits in its
    opening and went back to 240 to stay) thus does not shield it for the rest of the run, and
    a solved run that collapses and stays collapsed starts again too.

    ``counters``: the run's ``step`` and ``sequences``, ``attempt_start`` (the sequences when
    the attempt began) and ``attempt_validations`` (``[sequences, cost]`` of each of the
    attempt's finite validations).
    """
    if train.restart_after is None or train.restart_below is None:
        return False
    if counters["step"] >= train.steps:
        return False
    last_under = max((seen for seen, cost in counters["attempt_validations"]
                      if cost < train.restart_below), default=counters["attempt_start"])
    return counters["sequences"] - last_under >= train.restart_after


def attempt_validations(records: list[dict[str, Any]], step: int,
                        attempt_start: int) -> list[list[float]]:
    """``[sequences, cost]`` of the finite validations of the attempt that began at
    ``attempt_start`` sequences, from a run's ``metrics.jsonl`` records up to ``step`` (not the
    ``"final"`` record of a piece that ended between two validations, which a resumed run
    drops): the counter :func:`restart_due` reads, for a run saved before the state kept it."""
    return [[r["sequences"], r["val_cost"]] for r in records
            if "val_cost" in r and r["step"] <= step and r["sequences"] > attempt_start
            and not r.get("final")
            and r["val_cost"] is not None and math.isfinite(r["val_cost"])]


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Zero every tensor of the optimiser's state in place: RMSProp and Adam start their
    moments and step counts at zero, so this is a fresh optimiser's state, and the tensors a
    CUDA graph captured stay the ones it updates."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                value.zero_()
            else:
                state[key] = type(value)(0)
