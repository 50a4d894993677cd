"""Rewinds after a spike (``train.rewind_above``, ``train.rewind_factor``).

With 512 sequences per update the LSTM-controller NTM learning copy sometimes takes an
ordinary step across a cliff: the training loss jumps from 0.3 to 1.7 nats in one update and
keeps rising for 16 more, to chance, and the run needs 60 updates or more to learn the task
again, or does not within its budget (RESULTS.md, "Large batches"). No rate, clip, eps or
schedule tried kept every seed clean, so a run can rewind: at a validation that is a spike by
the reliability measure (:mod:`ntm.training.reliability`, with ``rewind_above`` for its 10
bits: once the attempt's best validation is under a fifth of its first, a later one more than
``rewind_above`` bits above that best), the weights and the optimiser's state go back to
where they were at that best validation, except its momentum, which starts again from zero,
and the learning rate is multiplied by ``rewind_factor`` from the next update on, once more
for each rewind, so that the same steps are not taken again. (The momentum at the best holds
the direction the run was moving in when it went on to spike. Neither this nor a version that
restored it kept the runs of RESULTS.md, "Large batches", clean: some spiked again within six
updates of a rewind.) The data stream goes on (the batches after a rewind are new ones),
every validation stays in ``metrics.jsonl`` (the spike still counts in the reliability
measure) and the record of the one that caused a rewind carries ``"rewind": K``, the
attempt's rewinds so far. A validation that scores NaN does not rewind (it is not among the
attempt's validations; the run stops at a NaN loss anyway), and one that ends the attempt
(``train.restart_after``) restarts instead.

The snapshot of the best validation is kept in memory and saved in the training state at each
checkpoint, so a resumed run rewinds where one that never stopped does; the rate's factor,
``rewind_scale`` in the counters, is the product of ``rewind_factor`` at each rewind, so
resuming with another factor changes later rewinds only, and resuming with rewinds off drops
the snapshot and keeps the factor. A restart from fresh weights
(:mod:`ntm.training.restarts`) begins an attempt without a snapshot and with the factor back
at 1.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..rundir.config import TrainConfig
from .reliability import FALL

__all__ = ["MOMENTUM_STATE", "new_best", "restore_snapshot", "rewind_due", "take_snapshot"]

# The optimiser state a rewind zeroes: RMSProp's momentum buffer and Adam's first moment.
MOMENTUM_STATE = ("momentum_buffer", "exp_avg")


def _current(counters: dict[str, Any]) -> list[float] | None:
    """The attempt's validations' costs if the last of them is the one just made (a
    validation that scored NaN is not among them), else None."""
    validations = counters["attempt_validations"]
    if not validations or validations[-1][0] != counters["sequences"]:
        return None
    return [cost for _, cost in validations]


def new_best(counters: dict[str, Any]) -> bool:
    """Whether the validation just made is the best of the attempt so far (its first counts):
    the one a rewind would go back to.

    ``counters``: the run's ``sequences`` and ``attempt_validations`` (``[sequences, cost]`` of
    each of the attempt's finite validations on the schedule of ``train.val_every``).

    >>> new_best({"sequences": 64, "attempt_validations": [[32, 80.0], [64, 9.0]]})
    True
    >>> new_best({"sequences": 96, "attempt_validations": [[32, 80.0], [64, 9.0]]})
    False
    """
    costs = _current(counters)
    return costs is not None and (len(costs) == 1 or costs[-1] < min(costs[:-1]))


def rewind_due(train: TrainConfig, counters: dict[str, Any]) -> bool:
    """Whether the run rewinds at the validation just made: rewinds are on, the run has
    updates left, and that validation is more than ``train.rewind_above`` bits above the best
    of the attempt before it, which is under :data:`~ntm.training.reliability.FALL` of the
    attempt's first validation.

    ``counters``: the run's ``step`` and ``sequences`` and ``attempt_validations``, as for
    :func:`new_best`.

    >>> train = TrainConfig(steps=100, rewind_above=10.0)
    >>> rewind_due(train, {"step": 3, "sequences": 96,
    ...                    "attempt_validations": [[32, 80.0], [64, 9.0], [96, 30.0]]})
    True
    >>> rewind_due(train, {"step": 3, "sequences": 96,  # 9 is not under a fifth of 40
    ...                    "attempt_validations": [[32, 40.0], [64, 9.0], [96, 30.0]]})
    False
    """
    if train.rewind_above is None or counters["step"] >= train.steps:
        return False
    costs = _current(counters)
    if costs is None or len(costs) < 2:
        return False
    best = min(costs[:-1])
    return best < FALL * costs[0] and costs[-1] > best + train.rewind_above


def take_snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copies of ``model``'s weights and ``optimizer``'s state: ``{"model": state dict,
    "optimizer": {index: {name: value}}}``, the optimiser's state by parameter index as in
    :meth:`torch.optim.Optimizer.state_dict`."""
    return {"model": {key: value.detach().clone() for key, value in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()["state"])}


def restore_snapshot(snapshot: dict[str, Any], model: nn.Module,
                     optimizer: torch.optim.Optimizer) -> None:
    """Put ``model``'s weights and ``optimizer``'s state back to ``snapshot``
    (:func:`take_snapshot`) in place (DistributedDataParallel and a CUDA graph hold these
    tensors), with its momentum (:data:`MOMENTUM_STATE`) zeroed; the state of a parameter the
    snapshot has none for is zeroed as a fresh optimiser's. The optimiser's param groups (its
    rate) are left as they are."""
    with torch.no_grad():
        model.load_state_dict(snapshot["model"])
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    saved_state = {int(index): values for index, values in snapshot["optimizer"].items()}
    for index, parameter in enumerate(parameters):
        live, saved = optimizer.state[parameter], saved_state.get(index, {})
        for name, value in live.items():
            if name not in saved and torch.is_tensor(value):
                value.zero_()
        for name, value in saved.items():
            if torch.is_tensor(value) and torch.is_tensor(live.get(name)):
                live[name].copy_(value)
            else:
                live[name] = value.clone() if torch.is_tensor(value) else value
            if name in MOMENTUM_STATE and torch.is_tensor(live[name]):
                live[name].zero_()
