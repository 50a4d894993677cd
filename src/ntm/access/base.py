"""The interface every memory implements under :class:`ntm.MemoryRNN`.

A memory ("access", as in DeepMind's DNC: the heads together with the memory they access) is a
module with its own explicit state. Each step it takes the controller's interface vector,
reads and writes, and returns what it read with its new state. It owns the parameters of its
own (a learned initial memory, say) but not the projection from the controller to the
interface vector, which the core owns: the access only sees ``interface_size`` numbers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


class AccessStep(NamedTuple):
    """What one step of an access returns."""

    reads: Tensor  # [B, read_size], what the core feeds back to the controller and the output
    state: Any  # the access's own state NamedTuple after the step
    trace: Any  # the access's Trace NamedTuple of this step ([B, ...] fields), or None


class MemoryAccess(nn.Module):
    """Base class of the memories: heads and memory with an explicit, returned state.

    A subclass sets ``interface_size`` (controller features it consumes per step) and
    ``read_size`` (features it returns per step), declares ``State`` (a NamedTuple of
    batch-first tensors) and ``Trace`` (a NamedTuple of what :meth:`ntm.MemoryRNN.trace`
    records per step), and implements :meth:`initial_state`, :meth:`state_shapes` and
    :meth:`step`. Nothing is kept on the module between steps.
    """

    interface_size: int
    read_size: int
    State: type = NamedTuple
    Trace: type = NamedTuple
    # How a batch with lengths runs (ntm.lengths). False: sorted by length, the state split as
    # sequences end. True, for an access whose state is large and changed in place (sparse
    # access memory), where sorting and splitting would copy every sequence's memory: once the
    # state holds more than ntm.core.FREEZE_ELEMENTS numbers, in the batch's own order, every
    # sequence taking the steps up to the longest length, an ended one frozen by
    # ``step(..., running=mask)`` (mask ``[B]`` bool, False for the ended), which must then
    # return their state as it was; their reads are thrown away. A registered backend is not
    # used for such a batch: the core's plain loop runs it.
    freezes_ended: bool = False
    # Whether a training update can be replayed from a CUDA graph (ntm.cuda_graphs): a graph
    # records a step's kernels once and replays them, so everything the step computes must run
    # on the device, with shapes and branches fixed by the input's shape. False for an access
    # that works on the host as well (an index, bookkeeping in Python), which a replay would
    # skip: such a model trains eagerly on a GPU.
    graph_capturable: bool = True

    def initial_state(
        self, batch_size: int, *, device=None, dtype=None, generator: torch.Generator | None = None
    ) -> Any:
        """The state before the first step, a ``State`` of ``[batch_size, ...]`` tensors."""
        raise NotImplementedError

    def state_shapes(self, batch_size: int) -> Any:
        """The ``State`` of the shapes (tuples) that :meth:`initial_state` returns."""
        raise NotImplementedError

    def trace_shapes(self, batch_size: int) -> Any:
        """The ``Trace`` of the shapes of one step's fields.

        By default each field is shaped like the state's field of the same name; a ``Trace``
        with other fields overrides this.
        """
        shapes = self.state_shapes(batch_size)
        return self.Trace(**{name: getattr(shapes, name) for name in self.Trace._fields})

    def step(self, interface: Tensor, state: Any, *, record: bool = False) -> AccessStep:
        """One step: read and write.

        Args:
            interface: ``[batch, interface_size]``, the controller's interface vector.
            state: the ``State`` after the previous step.
            record: also return this step's ``Trace`` (else ``trace`` is ``None``).

        An access that sets ``freezes_ended`` also takes ``running`` (``[batch]`` bool or
        ``None``): see ``freezes_ended``.
        """
        raise NotImplementedError

    def forward(self, interface: Tensor, state: Any) -> tuple[Tensor, Any]:
        """``(interface [B, interface_size], state) -> (reads [B, read_size], state)``."""
        reads, state, _ = self.step(interface, state)
        return reads, state

    def check_state(self, state: Any, batch_size: int, dtype: torch.dtype,
                    where: str = "state") -> None:
        """Raise a ValueError naming the first field of ``state`` of the wrong type or shape."""
        expected = self.state_shapes(batch_size)
        if not isinstance(state, type(expected)):
            raise ValueError(f"{where} must be a {type(expected).__name__}, "
                             f"got {type(state).__name__}")
        for name, tensor, shape in zip(expected._fields, state, expected, strict=True):
            if not isinstance(tensor, Tensor):
                raise ValueError(f"{where}.{name} must be a Tensor, got {type(tensor).__name__}")
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"{where}.{name} must have shape {tuple(shape)}, "
                                 f"got {tuple(tensor.shape)}")
            if tensor.dtype != dtype:
                raise ValueError(f"{where}.{name} must have the model's dtype {dtype}, "
                                 f"got {tensor.dtype}")
