"""The CPU kernel: the fused path's sequence node compiled from C++ (``csrc/``, three files).

:mod:`ntm.fused` already runs a whole sequence as one autograd node, but in Python it still
issues about 216 small tensor operations per time step, and on a CPU their overhead is most of
the time. The kernel runs the same equations as loops over one sequence at a time (the batch
split over torch's intra-op threads) with matrix products from ATen, so a step costs a few
microseconds of overhead instead of hundreds.

It is compiled once per machine, on first use (:mod:`ntm.backends.extension`: a C++ compiler
is needed; about 30 s; one process builds at a time). Where it cannot be built, or another
process's build is waited for longer than ``NTM_KERNEL_BUILD_WAIT`` seconds (300),
:mod:`ntm.fused`'s Python node is used instead, with one warning. ``NTM_CPU_KERNEL=0`` (or
``false``, ``off``, ``no``) in the environment, or :func:`set_enabled`, turns the kernel
off. The two give the same numbers to rounding (``tests/test_fused.py`` runs every test on
both: 1e-10 in float64, gradients included).

Its forward and backward are also the torch operators ``torch.ops.ntm.sequence_forward`` and
``torch.ops.ntm.sequence_backward`` (with fake implementations and the autograd formula), so
that ``torch.compile(model, fullgraph=True)`` and ``torch.export.export`` take the kernel in
whole (``tests/test_kernel_op.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..functional.addressing import CARRY_GRAD_BOUND, LOG_FLOOR, NORM_EPS
from ..heads import CLIP

# build_owner, BuildWaitTimeout and the two bounds lived here before: older imports keep working.
from .extension import (  # noqa: F401
    BUILD_WAIT_SECONDS,
    STALE_LOCK_SECONDS,
    BuildWaitTimeout,
    Extension,
    build_owner,
)

SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCE = SOURCE_DIR / "sequence_cpu.cpp"  # the one translation unit; it includes the headers
# Passed to the kernel, so that each constant has one definition (the Python modules').
_CONSTANTS = [CLIP, NORM_EPS, LOG_FLOOR, CARRY_GRAD_BOUND]
_DTYPES = (torch.float32, torch.float64)

EXTENSION = Extension("the C++ CPU kernel", "ntm_sequence_cpu", SOURCE,
                      [SOURCE_DIR / "heads_cpu.h", SOURCE_DIR / "kernel_math.h"],
                      fallback="the slower Python fused path")
_enabled = os.environ.get("NTM_CPU_KERNEL", "1").strip().lower() not in ("0", "false", "off", "no")


def set_enabled(enabled: bool) -> None:
    """Use the kernel for CPU sequences (the default) or the Python fused node."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    """Whether CPU sequences may use the kernel (it may still fail to build)."""
    return _enabled


def load():
    """The compiled extension, building it on first call; ``None`` where it cannot be built."""
    return EXTENSION.load()


def failure() -> str | None:
    """Why the kernel could not be built, or ``None``."""
    return EXTENSION.failure()


def status() -> str:
    """One line for reports: whether the fused path's CPU sequences run on the kernel."""
    if not _enabled:
        return "off (the Python fused node)"
    if EXTENSION.module is not None:
        return "C++ kernel (ntm.kernel)"
    if EXTENSION.reason is not None:
        return f"not built, the Python fused node: {EXTENSION.reason}"
    return "not loaded yet"


def applies(projected: Tensor) -> bool:
    """Whether a sequence with these inputs runs on the kernel."""
    return unavailable(projected) is None


def unavailable(projected: Tensor) -> str | None:
    """Why a sequence with these inputs cannot run on the kernel, or ``None`` if it can."""
    if not _enabled:
        return "the kernel is switched off (NTM_CPU_KERNEL=0 or ntm.kernel.set_enabled(False))"
    if projected.device.type != "cpu" or projected.dtype not in _DTYPES:
        return (f"it runs on the CPU in float32 and float64, not on {projected.device.type} "
                f"in {projected.dtype}")
    if not _built():
        return f"it could not be built ({EXTENSION.reason})"
    return None


# torch.compile calls this instead of tracing it: it may build (and takes a lock), and once it
# has answered, the answer does not change.
@torch.compiler.assume_constant_result
def _built() -> bool:
    """Whether the extension is there, building it on the first call."""
    return load() is not None


# -- the kernel as torch operators -------------------------------------------------------------
#
# The extension's forward and backward are the custom operators ntm::sequence_forward and
# ntm::sequence_backward, each with a fake implementation (shapes only) and the forward with
# its autograd formula: torch.compile(fullgraph=True) and torch.export see one operator where
# a pybind11 call used to stop them. Only tensors, lists of tensors and numbers cross an
# operator's schema, so the sizes go as numbers instead of a Spec. Registering builds
# nothing: the implementations load the extension on their first call.
#
# Outside compile and export, KernelSequence calls the same implementations and the same
# autograd formula from a plain autograd.Function: a Python custom operator's dispatch
# (pytree flattening of its lists, filling in its defaults) costs about five times the C++
# call of a small sequence, and would be paid twice per training step.

# The C++ forward returns, after the final state, its per-step buffers (`Saved` in
# sequence_cpu.cpp): _PREVIOUS of them, then the input focus made contiguous, then the layers'.
# That one is the input itself, which an operator may not return: it is dropped from the
# outputs, and the backward is given the input instead.
_PREVIOUS = 10


def _loaded():
    """The extension, built on first use; a RuntimeError where it cannot be built."""
    module = EXTENSION.module if EXTENSION.module is not None else load()
    if module is None:
        raise RuntimeError(f"ntm: the C++ CPU kernel could not be built ({EXTENSION.reason})")
    return module


def _forward(projected: Tensor, memory: Tensor, focus: Tensor, reads: Tensor,
             state: list[Tensor], layer_weights: list[Tensor], bias: Tensor,
             head_weight: Tensor, head_bias: Tensor, hidden: int, read_heads: int,
             write_heads: int, shifts: int, lstm: bool,
             constants: list[float], batch_sizes: list[int]) -> list[Tensor]:
    """An NTM sequence on the kernel, forward (``torch.ops.ntm.sequence_forward``).

    Args:
        projected: ``[T, B, G]``, the controller's projected input (``G``: ``4C`` LSTM, ``C``).
        memory: ``[B, N, M]``. focus: ``[B, H, N]``, the read then the write weights.
        reads: ``[B, R * M]``. state: LSTM ``(hidden, cell)`` per layer, each ``[B, C]``;
            feedforward none.
        layer_weights: per layer ``[G, inputs]``. bias: ``[L, G]`` (row 0 unused).
        head_weight: ``[P, C]``. head_bias: ``[P]``.
        hidden, read_heads, write_heads, shifts, lstm: ``C``, ``R``, ``W``, ``2K + 1`` and
            the controller's kind.
        constants: ``[CLIP, NORM_EPS, LOG_FLOOR, CARRY_GRAD_BOUND]``.
        batch_sizes: ``[]`` (every sequence runs every step), or per step how many of the
            batch run (not increasing; the batch sorted longest first, as a PackedSequence's):
            outputs, reads and focus past a sequence's end are zero, and its final state is
            the one after its own last step.

    Returns:
        ``[outputs [T, B, C], reads [T, B, R*M], focus [T, B, H, N], memory, focus, reads,
        *state, *saved]``: the final state, then what the backward needs
        (:func:`forward_shapes`).
    """
    results = _loaded().forward(
        projected.contiguous(), memory, focus, reads, state,
        [w.contiguous() for w in layer_weights], bias, head_weight.contiguous(), head_bias,
        hidden, read_heads, write_heads, shifts, lstm, constants, batch_sizes,
    )  # fmt: skip
    del results[6 + len(state) + _PREVIOUS]
    final = results[3]
    if final.size(1) == 1 or final.size(2) == 1:
        # N or M is 1: the transposed last memory is contiguous as it is, so the kernel
        # returns a view of the saved memories, and an operator's outputs may not alias.
        results[3] = final.clone()
    return results


def forward_shapes(projected: Tensor, memory: Tensor, focus: Tensor, state: list[Tensor],
                   layer_weights: list[Tensor], head_weight: Tensor, hidden: int,
                   read_heads: int, lstm: bool) -> list[tuple]:
    """The shape of every tensor ``torch.ops.ntm.sequence_forward`` returns, in order."""
    steps, batch = projected.shape[:2]
    slots, width = memory.shape[1:]
    heads, params = focus.size(1), head_weight.size(0)
    # memories before each step (transposed), raw and activated head parameters, key and row
    # inverse norms, then similarity, content, gated, shifted and log(shifted).
    per_step = [(width, slots), (params,), (params,), (heads,), (slots,), *[(heads, slots)] * 5]
    for weight in layer_weights:  # joined; LSTM sig, candidate, cell, tanh(cell); else hidden
        per_step += [(weight.size(1),), *([(3 * hidden,), *[(hidden,)] * 3] if lstm
                                          else [(hidden,)])]
    final = [(batch, slots, width), (batch, heads, slots), (batch, read_heads * width),
             *[(batch, hidden)] * len(state)]
    sequence = [(steps, batch, hidden), (steps, batch, read_heads * width),
                (steps, batch, heads, slots)]
    return [*sequence, *final, *((steps, batch, *shape) for shape in per_step)]


def _forward_fake(projected, memory, focus, reads, state, layer_weights, bias, head_weight,
                  head_bias, hidden, read_heads, write_heads, shifts, lstm, constants,
                  batch_sizes):
    shapes = forward_shapes(projected, memory, focus, state, layer_weights, head_weight, hidden,
                            read_heads, lstm)
    return [projected.new_empty(shape) for shape in shapes]


def _backward(saved: list[Tensor], previous: Tensor, all_focus: Tensor, outputs: Tensor,
              layer_weights: list[Tensor], head_weight: Tensor, grad_outputs: Tensor,
              grad_all_reads: Tensor, grad_memory: Tensor, grad_focus: Tensor,
              grad_reads: Tensor, grad_state: list[Tensor], hidden: int, read_heads: int,
              write_heads: int, shifts: int, lstm: bool,
              constants: list[float], batch_sizes: list[int]) -> list[Tensor]:
    """An NTM sequence on the kernel, backward (``torch.ops.ntm.sequence_backward``).

    Args:
        saved: what the forward returned after the final state.
        previous: its input ``focus``. all_focus, outputs: its focus and outputs per step.
        layer_weights, head_weight, hidden ... batch_sizes: as given to it.
        grad_outputs ... grad_state: the gradients of its first ``6 + len(state)`` outputs
            (but the focus per step, which has none), zeros where there are none.

    Returns:
        ``[d projected, d memory, d focus, d reads, *d state, *d layer_weights, d bias,
        d head_weight, d head_bias]``.
    """
    saved = [*saved[:_PREVIOUS], previous.contiguous(), *saved[_PREVIOUS:]]
    return _loaded().backward(
        saved, all_focus.contiguous(), outputs, [w.contiguous() for w in layer_weights],
        head_weight.contiguous(), grad_outputs.contiguous(), grad_all_reads.contiguous(),
        grad_memory.contiguous(), grad_focus.contiguous(), grad_reads.contiguous(),
        [grad.contiguous() for grad in grad_state], hidden, read_heads, write_heads, shifts,
        lstm, constants, batch_sizes,
    )  # fmt: skip


def _backward_fake(saved, previous, all_focus, outputs, layer_weights, head_weight,
                   grad_outputs, grad_all_reads, grad_memory, grad_focus, grad_reads,
                   grad_state, hidden, read_heads, write_heads, shifts, lstm, constants,
                   batch_sizes):
    steps, batch = outputs.shape[:2]
    gates = layer_weights[0].size(0)
    like = [grad_memory, grad_focus, grad_reads, *grad_state, *layer_weights]
    return [outputs.new_empty(steps, batch, gates), *(t.new_empty(t.shape) for t in like),
            outputs.new_empty(len(layer_weights), gates), head_weight.new_empty(head_weight.shape),
            head_weight.new_empty(head_weight.size(0))]


sequence_forward = torch.library.custom_op("ntm::sequence_forward", _forward, mutates_args=(),
                                           device_types="cpu")
sequence_backward = torch.library.custom_op("ntm::sequence_backward", _backward,
                                            mutates_args=(), device_types="cpu")
sequence_forward.register_fake(_forward_fake)
sequence_backward.register_fake(_backward_fake)
_forward_op = torch.ops.ntm.sequence_forward.default
_backward_op = torch.ops.ntm.sequence_backward.default


# -- the autograd formula (the operator's, and the eager node's) -------------------------------


def _setup_context(ctx, inputs, output):
    """The operator's: keep what the backward needs (``inputs`` and ``output`` of
    :func:`_forward`); the backward runs ``ntm::sequence_backward``."""
    _keep(ctx, inputs, output, _backward_op)
    ctx.mark_non_differentiable(*output[6 + ctx.n_state :])
    # None, not zeros, for the gradients nobody asked for: every saved buffer is an output of
    # the operator, and zeros for each would cost more than the rest of the call.
    ctx.set_materialize_grads(False)


def _keep(ctx, inputs, output, backward) -> None:
    _, _, focus, _, state, layer_weights, _, head_weight, _, *sizes = inputs
    ctx.n_state, ctx.layers, ctx.sizes, ctx.backward_fn = (len(state), len(layer_weights),
                                                           sizes, backward)
    saved = output[6 + ctx.n_state :]
    ctx.save_for_backward(output[0], output[2], focus, head_weight, *layer_weights, *saved)
    ctx.mark_non_differentiable(output[2])  # the focus per step: a trace, not a result


def _op_backward(ctx, grads):
    """The operator's backward. ``grads``: one per output, ``None`` where there is none."""
    n_state, layers = ctx.n_state, ctx.layers
    flat = _backward_flat(ctx, *grads[: 6 + n_state])
    state, weights = flat[4 : 4 + n_state], flat[4 + n_state : 4 + n_state + layers]
    # Grouped as the inputs are; the sizes (constants, batch sizes) have none. An empty list
    # (batch_sizes of a batch that runs every step) is a container of no leaves to autograd's
    # check of this structure, and must come back as one; a list of numbers is one leaf.
    return (*flat[:4], list(state), list(weights), *flat[4 + n_state + layers :],
            *[[] if size == [] else None for size in ctx.sizes])  # fmt: skip


@once_differentiable  # no double backward: a second derivative raises instead of being wrong
def _backward_flat(ctx, grad_outputs, grad_all_reads, _grad_all_focus, grad_memory, grad_focus,
                   grad_reads, *grad_state):  # fmt: skip
    """The gradients of the forward's tensor inputs, flat, from those of its first outputs."""
    outputs, all_focus, previous, head_weight, *rest = ctx.saved_tensors
    layer_weights, saved = rest[: ctx.layers], rest[ctx.layers :]
    hidden, read_heads = ctx.sizes[:2]
    steps, batch = outputs.shape[:2]
    width, slots = saved[0].shape[2:]  # the memories, [T, B, M, N]
    factory = {"dtype": outputs.dtype, "device": outputs.device}

    def given_or_zeros(grad, *shape):
        return torch.zeros(shape, **factory) if grad is None else grad

    return tuple(ctx.backward_fn(
        list(saved), previous, all_focus, outputs, list(layer_weights), head_weight,
        given_or_zeros(grad_outputs, steps, batch, hidden),
        given_or_zeros(grad_all_reads, steps, batch, read_heads * width),
        given_or_zeros(grad_memory, batch, slots, width),
        given_or_zeros(grad_focus, *previous.shape),
        given_or_zeros(grad_reads, batch, read_heads * width),
        [given_or_zeros(grad, batch, hidden) for grad in grad_state],
        *ctx.sizes,
    ))  # fmt: skip


sequence_forward.register_autograd(_op_backward, setup_context=_setup_context)


def _op_inputs(spec, n_state, projected, memory, focus, reads, rest) -> tuple:
    """KernelSequence's inputs as the operator takes them."""
    layers = n_state + spec.layers
    return (projected, memory, focus, reads, list(rest[:n_state]), list(rest[n_state:layers]),
            *rest[layers:], spec.hidden, spec.read_heads, spec.write_heads, spec.layout.shifts,
            spec.lstm, _CONSTANTS, list(spec.batch_sizes))  # fmt: skip


class _KernelSequence(torch.autograd.Function):
    """The eager node: the operators' implementations and formula, without their dispatch."""

    @staticmethod
    def forward(ctx, spec, n_state, projected, memory, focus, reads, *rest):
        inputs = _op_inputs(spec, n_state, projected, memory, focus, reads, rest)
        results = _forward(*inputs)
        _keep(ctx, inputs, results, _backward)
        return tuple(results[: 6 + n_state])

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, *_backward_flat(ctx, *grads))


class KernelSequence:
    """:class:`ntm.fused._FusedSequence` with its forward and backward in C++.

    ``KernelSequence.apply`` takes the same inputs and gives the same outputs: ``(spec,
    n_state, projected [T,B,G], memory, weights, reads, *state, *layer_weights, bias,
    head_weight, head_bias)`` to ``(outputs [T,B,C], reads [T,B,R*M], focus [T,B,H,N],
    memory, weights, reads, *state)``. Under torch.compile or torch.export, and for tensors
    or modes that trace (fake tensors, make_fx), it is one ``torch.ops.ntm.sequence_forward``;
    otherwise the same implementation and formula without the operator's dispatch.
    """

    @staticmethod
    def apply(spec, n_state, projected, memory, focus, reads, *rest):
        if (torch.compiler.is_compiling() or type(projected) is not Tensor
                or torch._C._len_torch_dispatch_stack()):
            results = _forward_op(*_op_inputs(spec, n_state, projected, memory, focus, reads,
                                              rest))
            return tuple(results[: 6 + n_state])
        return _KernelSequence.apply(spec, n_state, projected, memory, focus, reads, *rest)
