"""The DNC's CPU kernel: a whole DNC sequence as one autograd node, compiled from C++
(``csrc/dnc_sequence_cpu.cpp`` and ``csrc/dnc_heads_cpu.h``), with its backward by hand.

Plain autograd records about 160 operations per step of a DNC (autograd nodes, counted at
the default sizes) and keeps an N x N temporary of the link matrix for several of them; at
the NTM's sizes (memory 128 x 20, one read and one write head, an LSTM controller of 100)
that costs 19x the kernel's training step at batch 1 and 6x at batch 32 (README, "Speed").
The kernel runs the same equations (:mod:`ntm.functional.dnc`, in the order of
:meth:`ntm.access.DNCAccess.step`) as loops over one sequence at a time, the controller and
the interface projection as matrix products over the batch. The link of every step is kept
for the backward pass (``[T + 1, B, N, N]``: 86 MiB for 41 steps of 32 sequences in float32);
recomputing it backwards from the next one would divide by ``1 - w[i] - w[j]``, which is 0
where a slot was written whole. The allocation's sort order is a constant for the gradient,
as in the paper and in :func:`ntm.functional.dnc.allocation`.

It runs the configurations of :class:`SupportedDNCAccess`: one write head, any number of
read heads, none of Csordas & Schmidhuber's options; LSTM and feedforward controllers of any
depth; CPU tensors in float32 and float64. Other DNCs list no ``"kernel"`` backend and run on
plain autograd under ``backend="auto"``, as does a DNC traced by ``torch.compile``,
``torch.export`` or ``make_fx`` (the kernel is not a torch operator). Sequences of different
lengths run once per distinct length (the registry's fallback, :mod:`ntm.lengths`). It is
built as the NTM's kernel is (:mod:`ntm.backends.kernel`: once per machine, cached by torch,
one process at a time, a warning and plain autograd where it cannot be built) and switched
off with it (``NTM_CPU_KERNEL=0``, :func:`ntm.backends.kernel.set_enabled`). Its results and
gradients equal plain autograd's to rounding (``tests/test_dnc_kernel.py``,
``tests/test_parity.py``: 1e-10 in float64). No double backward (asking for one raises).
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..access.dnc import CLIP, DNCAccess, DNCTrace
from ..functional.addressing import CARRY_GRAD_BOUND, NORM_EPS
from ..functional.dnc import ALLOCATION_EPS
from . import kernel
from .extension import Extension
from .registry import Carry, SequenceRun

SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCE = SOURCE_DIR / "dnc_sequence_cpu.cpp"  # the translation unit; it includes the headers
HEADERS = ("dnc_heads_cpu.h", "kernel_math.h")
# Passed to the kernel, so that each constant has one definition (the Python modules').
_CONSTANTS = [CLIP, NORM_EPS, ALLOCATION_EPS, CARRY_GRAD_BOUND]
_DTYPES = (torch.float32, torch.float64)

EXTENSION = Extension("the DNC's C++ CPU kernel", "ntm_dnc_cpu", SOURCE,
                      [SOURCE.parent / name for name in HEADERS], fallback="plain autograd")


def unsupported(access) -> str | None:
    """Why the kernel cannot run this access's configuration, or ``None`` if it can."""
    if not isinstance(access, DNCAccess):
        return f"it runs the DNC's access, not {type(access).__name__}"
    if access.write_heads != 1:
        return f"it runs one write head, not {access.write_heads}"
    options = [name for name in ("content_masking", "deallocation", "link_sharpness")
               if getattr(access, name)]
    if options:
        return f"it does not run Csordas & Schmidhuber's options ({', '.join(options)})"
    return None


class _Supported(type):
    def __instancecheck__(cls, access) -> bool:
        return unsupported(access) is None


class SupportedDNCAccess(metaclass=_Supported):
    """The :class:`ntm.access.DNCAccess` configurations the kernel runs (see
    :func:`unsupported`): ``isinstance(access, SupportedDNCAccess)``. The kernel is registered
    for this type, so that a DNC it cannot run lists no ``"kernel"`` backend."""


def unavailable(projected: Tensor) -> str | None:
    """Why a sequence with these inputs cannot run on the kernel, or ``None`` if it can."""
    if not kernel.is_enabled():
        return "the kernel is switched off (NTM_CPU_KERNEL=0 or ntm.kernel.set_enabled(False))"
    if (torch.compiler.is_compiling() or type(projected) is not Tensor
            or torch._C._len_torch_dispatch_stack()):
        # Not an operator that torch.compile, torch.export or make_fx can trace (the NTM's
        # kernel is one): they trace the plain loop instead.
        return "it is not traced by torch.compile, torch.export or make_fx"
    if projected.device.type != "cpu" or projected.dtype not in _DTYPES:
        return (f"it runs on the CPU in float32 and float64, not on {projected.device.type} "
                f"in {projected.dtype}")
    if load() is None:
        return f"it could not be built ({EXTENSION.reason})"
    return None


def load():
    """The compiled extension, building it on first call; ``None`` where it cannot be built."""
    return EXTENSION.load()


def failure() -> str | None:
    """Why the kernel could not be built, or ``None``."""
    return EXTENSION.failure()


class _BufferPool:
    """The forward's buffers of the last few sequences whose graph was freed, for the next
    calls of the same shapes: the first touch of a fresh buffer (a page fault per 4 KiB, the
    link alone is 86 MiB at batch 32) cost more than the rest of a training step (measured:
    40 ms of 113 at batch 32). At most ``size`` sets are kept."""

    def __init__(self, size: int):
        self.size, self.sets, self.lock = size, [], threading.Lock()

    def take(self, key) -> list[Tensor]:
        """A set for ``key`` (removed from the pool), or ``[]``: the kernel allocates."""
        with self.lock:
            for i, (k, _) in enumerate(self.sets):
                if k == key:
                    return self.sets.pop(i)[1]
        return []

    def give(self, key, buffers: list[Tensor]) -> None:
        with self.lock:
            self.sets.append((key, buffers))
            del self.sets[: -self.size]


# Two: a training loop frees one step's graph only after the next step's forward has run.
_pool = _BufferPool(2)


# The C++ forward returns the outputs and reads per step, then these buffers (`Saved` in
# dnc_sequence_cpu.cpp) with the controller's per-layer ones, then its final state.
_MEMORIES, _USAGES, _LINKS, _PRECEDENCES, _READ_WEIGHTS, _WRITE_WEIGHTS, _ALLOCATIONS = range(7)
_ACT, _BUFFERS = 8, 10


class _DNCKernelSequence(torch.autograd.Function):
    """Inputs: ``(sizes, n_state, projected [T,B,G], memory, usage, link, precedence,
    read_weights, write_weights, reads, *state, *layer_weights, bias, interface_weight,
    interface_bias)`` with the access state as :class:`ntm.access.DNCState` has it.

    Outputs: ``(outputs [T,B,C], reads [T,B,R*M], *trace, memory, usage, link, precedence,
    read_weights, write_weights, reads, *state)``, the trace (:class:`DNCTrace`'s fields,
    ``[T, B, ...]``) not differentiable.
    """

    @staticmethod
    def forward(ctx, sizes, n_state, projected, memory, usage, link, precedence, read_weights,
                write_weights, reads, *rest):
        hidden, read_heads, lstm, layers = sizes
        state, layer_weights = rest[:n_state], rest[n_state : n_state + layers]
        bias, interface_weight, interface_bias = rest[n_state + layers :]
        batch, slots = usage.shape
        access = [memory, usage, link.reshape(batch, slots, slots),
                  precedence.reshape(batch, slots), read_weights,
                  write_weights.reshape(batch, slots)]
        key = (tuple(projected.shape), tuple(memory.shape), tuple(read_weights.shape),
               tuple(interface_weight.shape), *(tuple(w.shape) for w in layer_weights),
               projected.dtype)
        results = load().forward(projected.contiguous(), access, reads, list(state),
                                 list(layer_weights), bias, interface_weight, interface_bias,
                                 hidden, read_heads, lstm, _CONSTANTS, _pool.take(key))
        outputs, all_reads = results[:2]
        kept = len(results) - n_state  # the controller's final state comes last
        buffers, final_state = results[2:kept], results[kept:]
        ctx.sizes, ctx.buffers = sizes, buffers
        # Once the graph is freed (after backward, or unused), the next call may reuse them.
        weakref.finalize(ctx, _pool.give, key, buffers)
        ctx.save_for_backward(outputs, interface_weight, *layer_weights)
        trace = _trace(buffers, read_heads)
        ctx.mark_non_differentiable(*trace)
        # Copies, every one (a contiguous() of the transposed memory is a view where N or M
        # is 1): the buffers go back to the pool once the graph is freed, and a detached final
        # state must not change then.
        contiguous = torch.contiguous_format
        final = [buffers[_MEMORIES][-1].transpose(1, 2).clone(memory_format=contiguous),
                 buffers[_USAGES][-1].clone(), buffers[_LINKS][-1].unsqueeze(1).clone(),
                 buffers[_PRECEDENCES][-1].unsqueeze(1).clone(),
                 buffers[_READ_WEIGHTS][-1].clone(),
                 buffers[_WRITE_WEIGHTS][-1].unsqueeze(1).clone(), all_reads[-1].clone()]
        return (outputs, all_reads, *trace, *final, *final_state)

    @staticmethod
    @once_differentiable  # no double backward: a second derivative raises instead of being wrong
    def backward(ctx, grad_outputs, grad_all_reads, *grads):
        hidden, read_heads, lstm, layers = ctx.sizes
        outputs, interface_weight, *layer_weights = ctx.saved_tensors
        grads = grads[len(DNCTrace._fields) :]  # the trace has none
        (grad_memory, grad_usage, grad_link, grad_precedence, grad_read_weights,
         grad_write_weights, grad_reads, *grad_state) = grads
        batch, slots = grad_usage.shape
        access = [grad_memory, grad_usage, grad_link.reshape(batch, slots, slots),
                  grad_precedence.reshape(batch, slots), grad_read_weights.contiguous(),
                  grad_write_weights.reshape(batch, slots)]
        results = load().backward(
            ctx.buffers, outputs, list(layer_weights), interface_weight,
            grad_outputs.contiguous(), grad_all_reads.contiguous(), access, grad_reads,
            list(grad_state), hidden, read_heads, lstm, _CONSTANTS)
        (grad_projected, grad_memory, grad_usage, grad_link, grad_precedence, grad_read_weights,
         grad_write_weights, grad_reads, *rest) = results
        return (None, None, grad_projected, grad_memory, grad_usage, grad_link.unsqueeze(1),
                grad_precedence.unsqueeze(1), grad_read_weights, grad_write_weights.unsqueeze(1),
                grad_reads, *rest)


def _trace(buffers: list[Tensor], read_heads: int) -> list[Tensor]:
    """The :class:`DNCTrace` fields ``[T, B, ...]`` from the forward's buffers (copies)."""
    steps, batch, slots = buffers[_ALLOCATIONS].shape
    act = buffers[_ACT]  # (T, B, P): the read modes are its last 3 R numbers
    modes = act[..., act.size(-1) - 3 * read_heads :].reshape(steps, batch, read_heads, 3)
    return [buffers[_READ_WEIGHTS][1:].clone(), buffers[_WRITE_WEIGHTS][1:].unsqueeze(2).clone(),
            buffers[_USAGES][1:].clone(), buffers[_ALLOCATIONS].unsqueeze(2).clone(),
            modes.clone()]


def run_sequence(cell, projected: Tensor, carry: Carry) -> SequenceRun:
    """Run a :class:`ntm.MemoryCell` with a :class:`SupportedDNCAccess` through the kernel.

    Args:
        cell: the cell whose parameters and sizes to use.
        projected: ``[T, B, gates]``, ``cell.controller.project_input(input)``.
        carry: the cell's loop-form state (:class:`ntm.backends.Carry`).

    Returns:
        :class:`ntm.backends.SequenceRun`.
    """
    controller, access = cell.controller, cell.access
    sizes = (controller.hidden_size, access.read_heads, controller.states_per_layer == 2,
             controller.num_layers)
    state = carry.controller
    results = _DNCKernelSequence.apply(
        sizes, len(state), projected, *carry.access, carry.reads, *state,
        *controller.layer_weights, controller.bias, cell.interface.weight, cell.interface.bias)
    outputs, all_reads, *rest = results
    fields = len(DNCTrace._fields)
    trace = DNCTrace(*rest[:fields])
    final_access = access.State(*rest[fields : fields + 6])
    reads, final_state = rest[fields + 6], tuple(rest[fields + 7 :])
    return SequenceRun(outputs, all_reads, trace, Carry(final_state, final_access, reads))
