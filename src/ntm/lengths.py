"""Variable-length batches: the ``lengths`` of a padded batch, checked, and the run's plan.

A batch of ``B`` sequences padded at the end to ``T`` steps comes with ``lengths [B]``, the
number of steps of each. A model given them (``model(input, lengths=...)``, or a
``torch.nn.utils.rnn.PackedSequence``) returns zeros past each sequence's end and each
sequence's state after its own last step, as ``torch.nn.LSTM`` does with packed input.

The recurrent core runs such a batch as :func:`plan` lays it out: sorted by length, longest
first, so that the sequences not yet ended are a prefix of the batch at every step. A backend
that runs packed batches (the C++ kernel: ``packed=`` in :func:`ntm.backends.register`) takes
the whole batch with the number of sequences running at each step; any other backend, and
plain autograd, run once per time segment between consecutive distinct lengths, on the
sequences not yet ended. Either way the batch shrinks as sequences finish and a sequence
leaves it with its final state; split runs equal one run (the state is explicit), so this
equals running each sequence alone.

An access whose state is large and changed in place (sparse access memory:
``MemoryAccess.freezes_ended``, a state of more than ``ntm.core.FREEZE_ELEMENTS`` numbers) runs
otherwise: sorting the batch and splitting its state would copy every sequence's memory. The
batch keeps its order and every sequence takes the steps up to the longest length; past its
end a sequence is frozen (the access's ``step(..., running=mask)`` leaves its state as it
was, the core keeps its controller state and reads, its outputs are zero), which equals
running it alone too.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["Plan", "Segment", "check_lengths", "map_tensors", "plan", "valid_steps"]


def check_lengths(lengths: Any, batch_size: int, steps: int) -> Tensor:
    """``lengths`` as a CPU int64 tensor ``[batch_size]``, each in ``0..steps``.

    Args:
        lengths: a ``[B]`` integer tensor (any device) or a list or tuple of ints.
        batch_size: ``B``, the input's batch size.
        steps: ``T``, the input's (padded) number of steps.

    Raises:
        ValueError: one line naming what was expected and what came.
    """
    if isinstance(lengths, Tensor):
        if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
            raise ValueError(f"lengths must hold integers. Expected an integer tensor, got "
                             f"dtype {lengths.dtype}")
        values = lengths.detach().to("cpu", torch.int64)
    elif isinstance(lengths, (list, tuple)):
        values = torch.tensor([_integer(value, index) for index, value in enumerate(lengths)],
                              dtype=torch.int64).reshape(-1 if lengths else 0)
    else:
        raise ValueError(f"lengths must be a [B] integer tensor or list, got "
                         f"{type(lengths).__name__}")
    if tuple(values.shape) != (batch_size,):
        raise ValueError(f"lengths must have one entry per sequence. Expected shape "
                         f"[{batch_size}], got {list(values.shape)}")
    outside = ((values < 0) | (values > steps)).nonzero()
    if len(outside):
        index = int(outside[0, 0])
        raise ValueError(f"lengths must lie in 0..{steps} (the input's steps). Expected "
                         f"0 <= lengths[{index}] <= {steps}, got {int(values[index])}")
    return values


def _integer(value: Any, index: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"lengths must hold integers. Expected an int at index {index}, got "
                         f"{value!r}")
    try:
        return operator.index(value)  # ints and NumPy integers; not 2.0
    except TypeError:
        raise ValueError(f"lengths must hold integers. Expected an int at index {index}, got "
                         f"{value!r}") from None


class Segment(NamedTuple):
    """Steps ``start..stop-1`` of the sequences ``0..active-1`` (in the plan's order); after
    it, those from ``ending`` on have ended and leave the batch."""

    start: int
    stop: int
    active: int
    ending: int


class Plan(NamedTuple):
    """How a batch with ``lengths`` runs: see :func:`plan`."""

    order: Tensor  # [B] int64: the batch sorted by length, longest first (stable)
    restore: Tensor  # [B] int64: the inverse permutation, back to the input's order
    segments: list[Segment]  # in time order; the first may be empty (length-0 sequences)


def plan(lengths: Tensor) -> Plan:
    """The segments of a run of sequences of ``lengths`` (``[B]`` int64, CPU).

    Sorted longest first, the sequences of length at least ``l`` are a prefix of the batch.
    Between consecutive distinct lengths ``l_{k-1} < l_k`` the prefix of those with length
    at least ``l_k`` runs steps ``l_{k-1}..l_k - 1``; then the sequences of length exactly
    ``l_k`` end. Sequences of length 0 end before any step, in a segment of no steps.

    >>> [tuple(s) for s in plan(torch.tensor([2, 0, 5, 2])).segments]
    [(0, 0, 4, 3), (0, 2, 3, 1), (2, 5, 1, 0)]
    >>> plan(torch.tensor([2, 0, 5, 2])).order.tolist()
    [2, 0, 3, 1]
    """
    order = torch.sort(lengths, descending=True, stable=True).indices
    restore = torch.empty_like(order)
    restore[order] = torch.arange(len(order))
    segments, start, active = [], 0, len(lengths)
    for length in sorted(set(lengths.tolist())):
        ending = int((lengths > length).sum())
        segments.append(Segment(start, length, active, ending))
        start, active = length, ending
    return Plan(order, restore, segments)


def valid_steps(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """``[steps, B]`` bool on ``device``: True where ``t < lengths[b]``."""
    lengths = lengths.to(device)
    return torch.arange(steps, device=device).unsqueeze(1) < lengths


def map_tensors(tree: Any, function) -> Any:
    """Apply ``function`` to every tensor of ``tree`` (nested tuples and NamedTuples)."""
    if isinstance(tree, Tensor):
        return function(tree)
    fields = [map_tensors(field, function) for field in tree]
    return type(tree)(*fields) if hasattr(tree, "_fields") else type(tree)(fields)


def join_tensors(trees: list, function) -> Any:
    """``function([t_1, t_2, ...])`` for the tensors at each place of ``trees`` (all alike)."""
    first = trees[0]
    if isinstance(first, Tensor):
        return function(list(trees))
    fields = [join_tensors([tree[i] for tree in trees], function) for i in range(len(first))]
    return type(first)(*fields) if hasattr(first, "_fields") else type(first)(fields)
