"""Fast paths for a memory's training step, registered per access type.

A backend runs a whole sequence of a :class:`ntm.MemoryRNN` (controller, interface projection
and access) as one autograd node with a hand-written backward pass. ``"autograd"``, the plain
step loop that records every operation, is always there and is the reference every backend
is checked against (tests/test_parity.py). A model's ``backend=`` picks one:

- ``"auto"``: the first registered backend (they are registered fastest first) that can run
  the input at hand; ``"autograd"`` where none can.
- a backend's name: that one; an input it cannot run (another device, dtype) is an error.
- ``"autograd"``: the plain loop.

Backends run only when gradients are needed: without them (evaluation, ``torch.no_grad``)
every model runs the plain loop, which is the cheaper one when nothing is kept for a backward
pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor

AUTO, AUTOGRAD = "auto", "autograd"


class Carry(NamedTuple):
    """A cell's state as the step loop (and a backend) keeps it: controller layers unpacked."""

    controller: tuple[Tensor, ...]  # per layer (B, C): LSTM (hidden_0, cell_0, hidden_1, ...)
    access: Any  # the access's State
    reads: Tensor  # (B, read_size)


class SequenceRun(NamedTuple):
    """What a backend returns for a sequence of ``T`` steps."""

    outputs: Tensor  # [T, B, controller_size], the controller's outputs
    reads: Tensor  # [T, B, read_size], what the access read at each step
    trace: Any  # the access's Trace with [T, B, ...] fields
    carry: Any  # the cell's loop-form state after the last step


class Backend(NamedTuple):
    """A registered fast path.

    ``run(cell, projected [T, B, gates], carry) -> SequenceRun``; ``unavailable(projected)``
    says in a few words why it cannot run these inputs, or returns ``None`` where it can.
    ``packed`` (optional) runs sequences of different lengths in one go, as a PackedSequence:
    ``packed(cell, projected, carry, batch_sizes) -> SequenceRun`` with the batch sorted
    longest first and ``batch_sizes[t]`` (not increasing, ``T`` of them) the sequences still
    running at step ``t``; outputs, reads and trace zero past each end, and the carry each
    sequence's after its own last step. Without it, a batch with ``lengths`` runs ``run``
    once per distinct length, on the sequences not yet ended (see :mod:`ntm.lengths`).
    """

    name: str
    access_type: type
    run: Callable[..., SequenceRun]
    unavailable: Callable[[Tensor], str | None]
    packed: Callable[..., SequenceRun] | None = None


_REGISTRY: list[Backend] = []


def register(name: str, access_type: type, run: Callable[..., SequenceRun],
             unavailable: Callable[[Tensor], str | None] = lambda projected: None, *,
             packed: Callable[..., SequenceRun] | None = None) -> None:
    """Register a fast path of ``access_type``; the earlier registered is preferred by auto.
    ``packed``: see :class:`Backend`."""
    if name in (AUTO, AUTOGRAD):
        raise ValueError(f"backend name {name!r} is reserved")
    if any(b.name == name and b.access_type is access_type for b in _REGISTRY):
        raise ValueError(f"backend {name!r} is already registered for {access_type.__name__}")
    _REGISTRY.append(Backend(name, access_type, run, unavailable, packed))


def registered() -> list[Backend]:
    """Every registered backend, of every access type, in the order of registration."""
    return list(_REGISTRY)


def backends_for(access: Any) -> list[Backend]:
    """The backends registered for ``access``'s type (or a base class of it), preferred first."""
    return [b for b in _REGISTRY if isinstance(access, b.access_type)]


def choices(access: Any) -> list[str]:
    """Every valid ``backend=`` for a model with this access."""
    return [AUTO, *(b.name for b in backends_for(access)), AUTOGRAD]


def check_choice(backend: Any, access: Any) -> None:
    """Raise a ValueError unless ``backend`` is a valid choice for ``access``."""
    valid = choices(access)
    if backend not in valid:
        raise ValueError(f"backend must be one of {valid} for {type(access).__name__}, "
                         f"got {backend!r}")


def choose(backend: str, access: Any, projected: Tensor) -> Backend | None:
    """The backend that runs ``projected`` (``[T, B, gates]``), or ``None`` for the plain loop.

    Raises:
        ValueError: ``backend`` names a backend that cannot run these inputs.
    """
    if backend == AUTOGRAD:
        return None
    for candidate in backends_for(access):
        if backend == AUTO:
            if candidate.unavailable(projected) is None:
                return candidate
        elif candidate.name == backend:
            reason = candidate.unavailable(projected)
            if reason is not None:
                raise ValueError(f"backend {backend!r} cannot run this input: {reason}; "
                                 "use backend='auto' to fall back by itself")
            return candidate
    return None
