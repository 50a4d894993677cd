"""The Differentiable Neural Computer: :class:`ntm.MemoryRNN` with an
:class:`ntm.access.DNCAccess` (Graves et al. 2016, Nature 538).

The state is the core's :class:`ntm.MemoryState`, whose ``access`` field is a
:class:`DNCState` (memory, usage, link, precedence, read and write weightings).
"""

from __future__ import annotations

from torch import nn

from .access.dnc import DNCAccess, DNCState, DNCTrace
from .core import MemoryCell, MemoryRNN

__all__ = ["DNC", "DNCCell", "DNCState", "DNCTrace"]


class DNCCell(MemoryCell):
    """One step of a DNC, like ``torch.nn.LSTMCell`` for ``torch.nn.LSTM``.

    Takes the same arguments as :class:`DNC` except ``batch_first`` and ``backend``.
    ``forward(input [B, I] or [I], state=None) -> (logits [B, O] or [O], MemoryState)``.
    """

    def __init__(self, input_size: int, output_size: int, *, controller: str = "lstm",
                 controller_size: int = 100, controller_layers: int = 1,
                 memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 write_heads: int = 1, content_masking: bool = False,
                 deallocation: bool = False, link_sharpness: bool = False, device=None,
                 dtype=None):
        access = DNCAccess(memory_slots, memory_width, read_heads, write_heads,
                           content_masking=content_masking, deallocation=deallocation,
                           link_sharpness=link_sharpness)
        super().__init__(input_size, output_size, access, controller=controller,
                         controller_size=controller_size, controller_layers=controller_layers,
                         device=device, dtype=dtype)

    # The access's sizes, as NTMCell has them.
    memory_slots = property(lambda self: self.access.memory_slots)
    memory_width = property(lambda self: self.access.memory_width)
    read_heads = property(lambda self: self.access.read_heads)
    write_heads = property(lambda self: self.access.write_heads)


class DNC(MemoryRNN):
    """A Differentiable Neural Computer over sequences, used like ``torch.nn.LSTM``.

    Args:
        input_size: channels of the input ``I``.
        output_size: channels of the output ``O``.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_size: width ``C`` of each controller layer.
        controller_layers: number of controller layers ``L``.
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a memory row.
        read_heads: read heads ``R``; each reads by content, or forward or backward along
            the order of writes (its read modes).
        write_heads: write heads ``W`` (the paper has 1); each allocates in turn and keeps
            its own precedence and link.
        content_masking: learned masks on the keys and the rows they are compared with
            (Csordas & Schmidhuber 2019).
        deallocation: freed rows are wiped, not only marked free (Csordas & Schmidhuber 2019).
        link_sharpness: a learned exponent per read head sharpens the forward and backward
            weightings (Csordas & Schmidhuber 2019).
        batch_first: input and output as ``[B, T, *]`` instead of ``[T, B, *]``.
        device, dtype: factory arguments for the parameters.
        backend: ``"auto"`` (the fastest that can run the input), ``"kernel"`` or
            ``"autograd"``. ``"kernel"`` (:mod:`ntm.backends.dnc_kernel`) runs a whole sequence
            as one node compiled from C++ with a hand-written backward pass: CPU, float32 and
            float64, one write head and none of the three options above; about 20x faster per
            training step than ``"autograd"`` at batch 1 and 5x at batch 32 (README, "Speed").
            A DNC it cannot run has no ``"kernel"`` backend, and ``"auto"`` records every
            operation with autograd, the reference (which also allows double backward).

    ``forward(input, state=None) -> (logits, state)``: ``input [T, B, I]`` (or ``[T, I]``
    unbatched), ``logits [T, B, O]`` before any output activation, ``state`` a
    :class:`ntm.MemoryState` whose ``access`` is a :class:`DNCState`. Running ``T`` steps at
    once equals running them in two calls that pass the state along.

    Example:
        >>> import torch, ntm
        >>> model = ntm.DNC(9, 8, memory_slots=16, memory_width=4, read_heads=2)
        >>> logits, state = model(torch.zeros(5, 3, 9))
        >>> tuple(logits.shape), tuple(state.access.link.shape), tuple(state.reads.shape)
        ((5, 3, 8), (3, 1, 16, 16), (3, 8))
    """

    def __init__(self, input_size: int, output_size: int, *, controller: str = "lstm",
                 controller_size: int = 100, controller_layers: int = 1,
                 memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 write_heads: int = 1, content_masking: bool = False,
                 deallocation: bool = False, link_sharpness: bool = False,
                 batch_first: bool = False, device=None, dtype=None, backend: str = "auto"):
        nn.Module.__init__(self)
        cell = DNCCell(input_size, output_size, controller=controller,
                       controller_size=controller_size, controller_layers=controller_layers,
                       memory_slots=memory_slots, memory_width=memory_width,
                       read_heads=read_heads, write_heads=write_heads,
                       content_masking=content_masking, deallocation=deallocation,
                       link_sharpness=link_sharpness, device=device, dtype=dtype)
        self._attach(cell, batch_first=batch_first, backend=backend)
