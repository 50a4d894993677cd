"""Sparse access memory: :class:`ntm.MemoryRNN` with an :class:`ntm.access.SparseAccess`
(Rae et al. 2016, NeurIPS, "Scaling Memory-Augmented Neural Networks with Sparse Reads and
Writes").

The state is the core's :class:`ntm.MemoryState`, whose ``access`` field is a
:class:`SparseState`. The access changes the memory in place and its backward pass goes row
by row (:func:`ntm.functional.sparse.write_and_read_`) on the core's plain step loop: no
backend is registered. ``backend="autograd"`` runs the reference instead, the memory copied at
every step and every operation recorded by autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import backends
from .access.sparse import SparseAccess, SparseState, SparseTrace
from .core import MemoryCell, MemoryRNN

__all__ = ["SAM", "SAMCell", "SparseState", "SparseTrace"]


class SAMCell(MemoryCell):
    """One step of a SAM, like ``torch.nn.LSTMCell`` for ``torch.nn.LSTM``.

    Takes the same arguments as :class:`SAM` except ``batch_first`` and ``backend``.
    ``forward(input [B, I] or [I], state=None) -> (logits [B, O] or [O], MemoryState)``.
    Without gradients the memory of ``state`` is changed in place.
    """

    def __init__(self, input_size: int, output_size: int, *, controller: str = "lstm",
                 controller_size: int = 100, controller_layers: int = 1,
                 memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 sparse_reads: int = 4, index: str = "auto", device=None, dtype=None):
        access = SparseAccess(memory_slots, memory_width, read_heads, sparse_reads, index)
        super().__init__(input_size, output_size, access, controller=controller,
                         controller_size=controller_size, controller_layers=controller_layers,
                         device=device, dtype=dtype)

    # The access's sizes, as NTMCell has them.
    memory_slots = property(lambda self: self.access.memory_slots)
    memory_width = property(lambda self: self.access.memory_width)
    read_heads = property(lambda self: self.access.read_heads)
    sparse_reads = property(lambda self: self.access.sparse_reads)
    index = property(lambda self: self.access.index)


class SAM(MemoryRNN):
    """Sparse access memory over sequences, used like ``torch.nn.LSTM``.

    Args:
        input_size: channels of the input ``I``.
        output_size: channels of the output ``O``.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_size: width ``C`` of each controller layer.
        controller_layers: number of controller layers ``L``.
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a memory row.
        read_heads: read heads ``R``.
        sparse_reads: rows ``K`` each read head reads (the paper's 4 or 8).
        index: ``"exact"`` (``torch.topk`` over every row), ``"faiss"`` (faiss-cpu's
            approximate index, kept up to date as rows change) or ``"auto"`` (faiss from
            :data:`ntm.access.sparse_index.FAISS_CROSSOVER` slots on, where installed).
        batch_first: input and output as ``[B, T, *]`` instead of ``[T, B, *]``.
        device, dtype: factory arguments for the parameters.
        backend: ``"auto"`` (the memory changed in place, the backward pass over the rows
            each step changed) or ``"autograd"`` (the memory copied at each step and every
            operation recorded: the reference).

    ``forward(input, state=None) -> (logits, state)``: ``input [T, B, I]`` (or ``[T, I]``
    unbatched), ``logits [T, B, O]`` before any output activation, ``state`` a
    :class:`ntm.MemoryState` whose ``access`` is a :class:`SparseState`. Running ``T`` steps at
    once equals running them in two calls that pass the state along. The memory of a state
    passed in, and its access counters (``last_access``, ``oldest``), are changed in place
    (except by ``backend="autograd"`` with gradients): clone them to keep them. A batch with
    ``lengths=`` keeps its order, its ended sequences frozen (:mod:`ntm.lengths`).

    Time and memory per step do not grow with ``memory_slots`` beyond the index's search and
    ``O(sqrt N)`` for the least used row; the backward pass keeps ``O(T K M)``.

    Example:
        >>> import torch, ntm
        >>> model = ntm.SAM(9, 8, memory_slots=64, memory_width=4, read_heads=2)
        >>> logits, state = model(torch.zeros(5, 3, 9))
        >>> tuple(logits.shape), tuple(state.access.read_rows.shape), tuple(state.reads.shape)
        ((5, 3, 8), (3, 2, 4), (3, 8))
    """

    def __init__(self, input_size: int, output_size: int, *, controller: str = "lstm",
                 controller_size: int = 100, controller_layers: int = 1,
                 memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 sparse_reads: int = 4, index: str = "auto", batch_first: bool = False,
                 device=None, dtype=None, backend: str = "auto"):
        nn.Module.__init__(self)
        cell = SAMCell(input_size, output_size, controller=controller,
                       controller_size=controller_size, controller_layers=controller_layers,
                       memory_slots=memory_slots, memory_width=memory_width,
                       read_heads=read_heads, sparse_reads=sparse_reads, index=index,
                       device=device, dtype=dtype)
        self._attach(cell, batch_first=batch_first, backend=backend)

    def _sequence(self, projected: Tensor, carry: backends.Carry, record: bool,
                  running: list[Tensor | None] | None = None) -> backends.SequenceRun:
        """The core's loop (the memory changed in place), or, for ``backend="autograd"``
        where gradients are recorded, the reference: the same loop with the memory copied
        at each step."""
        if self.backend == backends.AUTOGRAD and torch.is_grad_enabled() and len(projected):
            return self._loop(projected, carry, record, running, in_place=False)
        return super()._sequence(projected, carry, record, running)
