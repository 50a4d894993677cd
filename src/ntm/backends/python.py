"""The fast path: a whole sequence as one autograd node, with backpropagation through time by hand.

Plain autograd records about 260 tensor operations per time step of an NTM and, in its
backward pass, forms one outer product per step for every weight matrix. On a CPU, at the
small sizes of the paper's models, that per-operation overhead is nearly all of the time
(README, "Speed"). This module runs the same math (it calls the pure functions of
:mod:`ntm.addressing` and :mod:`ntm.memory` for the forward pass) with autograd switched off,
keeps what the backward pass needs, and computes the gradients step by step by hand, with the
weight gradients accumulated over the whole sequence in one matrix product each.

Measured at batch 1 (copy, LSTM controller 100, memory 128 x 20): about 76 tensor operations
per time step forward and about 140 backward, 1.5x faster than plain autograd per training step.
The equations of every backward step are written next to the code. The result matches plain
autograd to rounding (tests/test_fused.py checks 1e-10 in float64, gradients included). The
node has no double backward (asking for one raises); use ``NTM(..., fused=False)`` for that.

On a CPU, :mod:`ntm.kernel` runs the same node compiled from C++ where it can be built; this
module's node serves GPUs, other dtypes, and machines without a compiler.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..access.ntm import NTMAccessState, NTMAccessTrace
from ..functional.addressing import (
    CARRY_GRAD_BOUND,
    LOG_FLOOR,
    content_weights_parts,
    interpolate,
    sharpen_parts,
    shift,
    shift_windows,
)
from ..functional.memory import read, write
from ..heads import CLIP
from .registry import Carry, SequenceRun


class Spec(NamedTuple):
    """The sizes a sequence run needs (taken from an :class:`ntm.NTMCell`)."""

    lstm: bool
    layers: int
    hidden: int  # C
    read_heads: int  # R
    write_heads: int  # W
    width: int  # M
    layout: object  # heads.HeadLayout
    # Per step, how many of the batch (sorted longest first) still run; () for all. Only the
    # C++ kernel takes them (ntm/backends/kernel.py); this module's node runs every step.
    batch_sizes: tuple[int, ...] = ()


# The derivatives of the activations are ATen's own backward kernels, the ones autograd calls:
# one operation each instead of three or four, and bit for bit what plain autograd computes.
_aten = torch.ops.aten


def _softmax_backward(probabilities: Tensor, grad: Tensor) -> Tensor:
    """``d(logits)`` of ``p = softmax(logits)`` along the last axis: ``p * (g - sum(g * p))``."""
    return _aten._softmax_backward_data(grad, probabilities, -1, probabilities.dtype)


def _tanh_backward(output: Tensor, grad: Tensor) -> Tensor:
    """``d(x)`` of ``y = tanh(x)``: ``g * (1 - y^2)``."""
    return _aten.tanh_backward(grad, output)


def _sigmoid_backward(output: Tensor, grad: Tensor) -> Tensor:
    """``d(x)`` of ``y = sigmoid(x)``: ``g * y * (1 - y)``."""
    return _aten.sigmoid_backward(grad, output)


class _StepSaved(NamedTuple):
    """What the backward pass of one step needs from its forward pass."""

    controller: (
        list  # per layer: LSTM (joined, gates, candidate, cell, tanh_cell); else (joined, hidden)
    )
    output: Tensor  # (B, C)
    raw: Tensor  # (B, P) head parameters before the clip
    tanh: Tensor  # activated [keys, add]
    sig: Tensor  # activated [gates, erase]
    softplus_input: Tensor  # clipped [strengths, sharpening] before softplus
    shift_weights: Tensor  # (B, H, 2K+1)
    memory: Tensor  # (B, N, M) before the step
    previous: Tensor  # (B, H, N) weights of the step before
    key_inv_norm: Tensor  # (B, H, 1)
    row_inv_norm: Tensor  # (B, 1, N)
    similarity: Tensor  # (B, H, N)
    strengths: Tensor  # (B, H)
    content: Tensor  # (B, H, N)
    gated: Tensor  # (B, H, N)
    shifted: Tensor  # (B, H, N)
    log_shifted: Tensor  # (B, H, N)
    sharpening: Tensor  # (B, H)
    focus: Tensor  # (B, H, N)


# -- forward -------------------------------------------------------------------------------------


def _controller_forward(spec: Spec, projected: Tensor, reads: Tensor, state, weights, bias):
    """One controller step; returns ``(output, new_state, saved)``. See controllers.py."""
    below, new_state, saved = reads, [], []
    size = spec.hidden
    for layer in range(spec.layers):
        offset = projected if layer == 0 else bias[layer]
        if spec.lstm:
            hidden, cell = state[2 * layer], state[2 * layer + 1]
            joined = torch.cat([below, hidden], dim=1)
            gates = torch.addmm(offset, joined, weights[layer].t())
            sig = torch.sigmoid(gates[:, : 3 * size])
            candidate = torch.tanh(gates[:, 3 * size :])
            input_gate, forget_gate, output_gate = sig.chunk(3, 1)
            new_cell = torch.addcmul(forget_gate * cell, input_gate, candidate)
            tanh_cell = torch.tanh(new_cell)
            below = output_gate * tanh_cell
            new_state += [below, new_cell]
            saved.append((joined, sig, candidate, cell, tanh_cell))
        else:
            joined = below
            below = torch.tanh(torch.addmm(offset, joined, weights[layer].t()))
            saved.append((joined, below))
    return below, tuple(new_state), saved


def _step_forward(spec: Spec, projected, carry, weights, bias, head_weight, head_bias):
    """One NTM step (the math of ``MemoryCell._step`` with ``NTMAccess.step``), keeping what
    the backward step needs."""
    memory, previous, reads, state = carry
    output, state, controller_saved = _controller_forward(
        spec, projected, reads, state, weights, bias
    )
    raw = torch.addmm(head_bias, output, head_weight.t())
    # The same functions as the plain path (NTMAccess.step), keeping their intermediates.
    p, (tanh, sig, softplus_input) = spec.layout.activate_parts(raw)
    content, similarity, key_inv_norm, row_inv_norm = content_weights_parts(
        memory, p.keys, p.key_strengths)  # (B, H, N)
    gated = interpolate(content, previous, p.gates)
    shifted = shift(gated, p.shift_weights)
    focus, log_shifted = sharpen_parts(shifted, p.sharpening)  # (B, H, N)
    shift_weights, strengths, sharpening = p.shift_weights, p.key_strengths, p.sharpening
    writes = spec.write_heads
    read_weights, write_weights = focus.split([spec.read_heads, writes], dim=1)
    new_reads = read(memory, read_weights).flatten(1)  # (B, R * M)
    new_memory = write(memory, write_weights, p.erase, p.add)
    saved = _StepSaved(
        controller_saved, output, raw, tanh, sig, softplus_input, shift_weights, memory,
        previous, key_inv_norm, row_inv_norm, similarity, strengths, content, gated, shifted,
        log_shifted, sharpening, focus,
    )  # fmt: skip
    return (new_memory, focus, new_reads, state), output, saved


# -- backward ------------------------------------------------------------------------------------


def _write_backward(memory, write_weights, erase, add, grad_new):
    """Gradients of ``M' = M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T``.

    Returns ``(d_memory, d_write_weights [B, W, N], d_erase, d_add)``.
    """
    columns = write_weights.transpose(1, 2)  # (B, N, W)
    grad_add = torch.bmm(write_weights, grad_new)  # da_h = sum_n w_h(n) dM'(n)
    grad_weights = torch.bmm(add, grad_new.transpose(1, 2))  # (B, W, N): from the add term
    grad_kept = grad_new * memory  # d(prod) = dM' * M
    if write_weights.size(1) == 1:
        kept = 1.0 - torch.bmm(columns, erase)
        grad_factors = grad_kept.unsqueeze(1)  # (B, 1, N, M)
    else:
        factors = 1.0 - write_weights.unsqueeze(-1) * erase.unsqueeze(-2)  # (B, W, N, M)
        kept = factors.prod(dim=1)
        # d factor_h = d(prod) * prod_{j != h} factor_j, by prefix and suffix products (a
        # factor can be exactly 0, so dividing the product by it is not safe).
        ones = torch.ones_like(factors[:, :1])
        before = torch.cat([ones, factors[:, :-1]], dim=1).cumprod(dim=1)
        after = torch.cat([factors[:, 1:], ones], dim=1).flip(1).cumprod(dim=1).flip(1)
        grad_factors = grad_kept.unsqueeze(1) * before * after
    # factor_h = 1 - w_h e_h^T: dw_h = -d factor_h e_h, de_h = -w_h^T d factor_h.
    grad_weights = grad_weights - torch.matmul(grad_factors, erase.unsqueeze(-1)).squeeze(-1)
    grad_erase = -torch.matmul(write_weights.unsqueeze(-2), grad_factors).squeeze(-2)
    return grad_new * kept, grad_weights, grad_erase, grad_add


def _step_backward(spec: Spec, saved, grads, weights, head_weight):
    """Backward of one step.

    Args:
        grads: ``(d_memory', d_focus, d_reads, d_state, d_output)``: the gradients reaching
            this step's outputs (from the next step and from the output layer).

    Returns:
        ``((d_memory, d_previous, d_reads_previous, d_state_previous), d_projected,
        d_raw, per-layer (d_gates, joined))``.
    """
    grad_memory_new, grad_focus, grad_reads, grad_state, grad_output = grads
    grad_memory, grad_focus, grad_erase, grad_add = _memory_backward(
        spec, saved, grad_memory_new, grad_focus, grad_reads)
    grad_memory, grad_previous, grad_heads = _address_backward(spec, saved, grad_memory,
                                                              grad_focus)
    grad_raw = _activation_backward(saved, *grad_heads, grad_erase, grad_add)
    grad_output = torch.addmm(grad_output, grad_raw, head_weight)
    grad_below, new_grad_state, layer_grads = _controller_backward(
        spec, saved.controller, grad_output, grad_state, weights)
    # Bounded as by addressing.bound_gradient on the carried state in the plain path.
    bound = CARRY_GRAD_BOUND
    carry_grads = (grad_memory.clamp_(-bound, bound), grad_previous,
                   grad_below.clamp(-bound, bound),
                   tuple(grad.clamp(-bound, bound) for grad in new_grad_state))
    return carry_grads, layer_grads[0][0], grad_raw, layer_grads


def _head_parts(spec: Spec, saved):
    """``(keys [B, H, M], add, gates [B, H], erase)`` from the activated blocks."""
    batch, heads, writes, width = (saved.output.size(0), spec.layout.heads, spec.write_heads,
                                   spec.width)
    keys, add = saved.tanh.split([heads * width, writes * width], dim=1)
    gates, erase = saved.sig.split([heads, writes * width], dim=1)
    return keys.reshape(batch, heads, width), add, gates, erase


def _memory_backward(spec: Spec, saved, grad_memory_new, grad_focus, grad_reads):
    """Write then read (both from the memory before the step).

    Returns ``(d_memory, d_focus, d_erase, d_add)``; ``d_focus`` includes the read and write
    weightings' gradients from the memory.
    """
    _, add, _, erase = _head_parts(spec, saved)
    memory, batch, writes, width = saved.memory, saved.output.size(0), spec.write_heads, spec.width
    read_weights, write_weights = saved.focus.split([spec.read_heads, writes], dim=1)
    grad_memory, grad_write_weights, grad_erase, grad_add = _write_backward(
        memory, write_weights, erase.reshape(batch, writes, width),
        add.reshape(batch, writes, width), grad_memory_new,
    )  # fmt: skip
    grad_reads = grad_reads.reshape(batch, spec.read_heads, width)
    grad_read_weights = torch.bmm(grad_reads, memory.transpose(1, 2))  # dr M^T
    grad_memory = torch.baddbmm(grad_memory, read_weights.transpose(1, 2), grad_reads)
    grad_focus = grad_focus + torch.cat([grad_read_weights, grad_write_weights], dim=1)
    return grad_memory, grad_focus, grad_erase, grad_add


def _address_backward(spec: Spec, saved, grad_memory, grad_focus):
    """Sharpen, shift, interpolation and content addressing, backwards.

    Returns ``(d_memory, d_previous, (d_keys, d_gates, d_strengths, d_sharpening,
    d_shift_weights))``.
    """
    focus, shifted, sharpening = saved.focus, saved.shifted, saved.sharpening
    # Sharpen: w = softmax(gamma * log(max(w_s, floor))).
    grad_logits = _softmax_backward(focus, grad_focus)
    grad_sharpening = (grad_logits * saved.log_shifted).sum(-1)
    # where, not a product with the mask: a huge value masked out must not become inf * 0.
    grad_shifted = torch.where(
        shifted >= LOG_FLOOR, grad_logits * sharpening.unsqueeze(-1) / shifted.clamp_min(LOG_FLOOR),
        0.0,
    )
    # Shift: the adjoint of a circular convolution is the correlation, i.e. the shift with
    # the weights reversed; ds(k) = sum_i dw_s(i) w_g(i - (k - K)).
    grad_gated = shift(grad_shifted, saved.shift_weights.flip(-1))
    windows = shift_windows(saved.gated, (spec.layout.shifts - 1) // 2)  # (B, H, 2K+1, N)
    grad_shift_weights = torch.matmul(windows, grad_shifted.unsqueeze(-1)).squeeze(-1).flip(-1)
    # Interpolation: w_g = w_prev + g (w_c - w_prev).
    keys, _, gates, _ = _head_parts(spec, saved)
    grad_content = grad_gated * gates.unsqueeze(-1)
    # Bounded as by addressing.bound_gradient in the plain path.
    grad_previous = (grad_gated - grad_content).clamp_(-CARRY_GRAD_BOUND, CARRY_GRAD_BOUND)
    grad_gates = (grad_gated * (saved.content - saved.previous)).sum(-1)
    grad_memory, grad_keys, grad_strengths = _content_backward(saved, keys, grad_memory,
                                                               grad_content)
    return grad_memory, grad_previous, (grad_keys, grad_gates, grad_strengths,
                                        grad_sharpening, grad_shift_weights)


def _content_backward(saved, keys, grad_memory, grad_content):
    """Content: w_c = softmax(beta * K), K = dot * |k|^-1 * |M(i)|^-1 (with NORM_EPS).

    Returns ``(d_memory, d_keys, d_strengths)``.
    """
    similarity, key_inv_norm, row_inv_norm = (saved.similarity, saved.key_inv_norm,
                                              saved.row_inv_norm)
    memory = saved.memory
    grad_scaled = _softmax_backward(saved.content, grad_content)
    grad_strengths = (grad_scaled * similarity).sum(-1)
    grad_similarity = grad_scaled * saved.strengths.unsqueeze(-1)
    grad_dot = grad_similarity * key_inv_norm * row_inv_norm
    # d rsqrt(x + eps)/dx = -rsqrt^3 / 2 and d|k|^2/dk = 2k, so d key = -kn^3 k sum(...).
    weighted = grad_similarity * similarity  # = dK * dot * kn * mn
    key_coef = weighted.sum(-1, keepdim=True) * key_inv_norm.pow(2)  # (B, H, 1)
    row_coef = weighted.sum(1) * row_inv_norm.squeeze(1).pow(2)  # (B, N)
    grad_keys = torch.bmm(grad_dot, memory) - key_coef * keys
    grad_memory = torch.baddbmm(grad_memory, grad_dot.transpose(1, 2), keys)
    grad_memory = grad_memory - row_coef.unsqueeze(-1) * memory
    return grad_memory, grad_keys, grad_strengths


def _activation_backward(saved, grad_keys, grad_gates, grad_strengths, grad_sharpening,
                         grad_shift_weights, grad_erase, grad_add):
    """The activations, then the clip (its gradient passes where -CLIP <= raw <= CLIP).

    Returns ``d_raw [B, P]``.
    """
    grad_shift_logits = _softmax_backward(saved.shift_weights, grad_shift_weights)
    grad_tanh = _tanh_backward(saved.tanh,
                               torch.cat([grad_keys.flatten(1), grad_add.flatten(1)], 1))
    grad_sig = _sigmoid_backward(saved.sig, torch.cat([grad_gates, grad_erase.flatten(1)], dim=1))
    grad_softplus = _aten.softplus_backward(
        torch.cat([grad_strengths, grad_sharpening], dim=1), saved.softplus_input, 1.0, 20.0
    )
    grad_clipped = torch.cat(
        [grad_tanh, grad_sig, grad_softplus, grad_shift_logits.flatten(1)], dim=1
    )
    return torch.where(saved.raw.abs() <= CLIP, grad_clipped, 0.0)


def _controller_backward(spec: Spec, controller_saved, grad_output, grad_state, weights):
    """The controller, top layer down.

    Returns ``(d_reads_previous, d_state_previous, per-layer (d_gates, joined))``.
    """
    grad_below, layer_grads = grad_output, [None] * spec.layers
    new_grad_state = list(grad_state)
    size = spec.hidden
    for layer in reversed(range(spec.layers)):
        if spec.lstm:
            joined, sig_gates, candidate, cell, tanh_cell = controller_saved[layer]
            input_gate, forget_gate, output_gate = sig_gates.chunk(3, 1)
            grad_hidden = grad_below + grad_state[2 * layer]
            grad_cell = grad_state[2 * layer + 1] + _tanh_backward(
                tanh_cell, grad_hidden * output_gate
            )
            grad_sig_gates = torch.cat(
                [grad_cell * candidate, grad_cell * cell, grad_hidden * tanh_cell], dim=1
            )
            grad_gates_layer = torch.cat(
                [
                    _sigmoid_backward(sig_gates, grad_sig_gates),
                    _tanh_backward(candidate, grad_cell * input_gate),
                ],
                dim=1,
            )
            grad_joined = torch.mm(grad_gates_layer, weights[layer])
            inputs = joined.size(1) - size
            new_grad_state[2 * layer] = grad_joined[:, inputs:]
            new_grad_state[2 * layer + 1] = grad_cell * forget_gate
            grad_below = grad_joined[:, :inputs]
        else:
            joined, hidden = controller_saved[layer]
            grad_gates_layer = _tanh_backward(hidden, grad_below)
            grad_below = torch.mm(grad_gates_layer, weights[layer])
        layer_grads[layer] = (grad_gates_layer, joined)
    return grad_below, new_grad_state, layer_grads


# -- the autograd node ---------------------------------------------------------------------------


class _FusedSequence(torch.autograd.Function):
    """Inputs: ``(spec, n_state, projected [T,B,G], memory, weights, reads, *state,
    *layer_weights, bias, head_weight, head_bias)``.

    Outputs: ``(outputs [T,B,C], reads [T,B,R*M], focus [T,B,H,N], memory, weights, reads,
    *state)``.
    """

    @staticmethod
    def forward(ctx, spec, n_state, projected, memory, focus, reads, *rest):
        if spec.batch_sizes:
            raise ValueError("the Python node runs every sequence to the last step; "
                             "batch_sizes are for the C++ kernel's node")
        state = rest[:n_state]
        layer_weights = rest[n_state : n_state + spec.layers]
        bias, head_weight, head_bias = rest[n_state + spec.layers :]
        carry = (memory, focus, reads, state)
        outputs, all_reads, all_focus, saved = [], [], [], []
        for projected_step in projected.unbind(0):
            carry, output, step_saved = _step_forward(
                spec, projected_step, carry, layer_weights, bias, head_weight, head_bias
            )
            outputs.append(output)
            all_reads.append(carry[2])
            all_focus.append(carry[1])
            saved.append(step_saved)
        ctx.spec, ctx.n_state, ctx.saved = spec, n_state, saved
        ctx.save_for_backward(*layer_weights, head_weight)
        focus_stack = torch.stack(all_focus)
        ctx.mark_non_differentiable(focus_stack)
        # The final state's tensors may also sit in ctx.saved (the last weights, the top
        # layer's hidden state is the last output): returning those very tensors would make
        # them point to this node and the node to them, a cycle that is never freed.
        memory, focus, reads, state = carry
        memory, focus, reads = memory.clone(), focus.clone(), reads.clone()
        state = tuple(t.clone() for t in state)
        return (torch.stack(outputs), torch.stack(all_reads), focus_stack, memory, focus, reads,
                *state)  # fmt: skip

    @staticmethod
    @once_differentiable  # no double backward: a second derivative raises instead of being wrong
    def backward(ctx, grad_outputs, grad_all_reads, _grad_focus, grad_memory, grad_focus,
                 grad_reads, *grad_state):  # fmt: skip
        spec, saved = ctx.spec, ctx.saved
        *layer_weights, head_weight = ctx.saved_tensors

        def zeros_like_or(grad, like):
            return torch.zeros_like(like) if grad is None else grad

        last, steps = saved[-1], len(saved)
        memory0 = last.memory
        factory = {"dtype": memory0.dtype, "device": memory0.device}
        batch = memory0.size(0)
        if grad_outputs is None:  # the loss did not use the controller outputs
            grad_outputs = torch.zeros(steps, batch, spec.hidden, **factory)
        if grad_all_reads is None:
            grad_all_reads = torch.zeros(steps, batch, spec.read_heads * spec.width, **factory)
        grad_memory = zeros_like_or(grad_memory, memory0)
        grad_focus = zeros_like_or(grad_focus, last.focus)
        grad_reads_carry = zeros_like_or(grad_reads, grad_all_reads[0])
        state_like = (
            [last.controller[layer][3] for layer in range(spec.layers)] if spec.lstm else []
        )
        grad_state = tuple(zeros_like_or(g, state_like[i // 2]) for i, g in enumerate(grad_state))
        grad_projected, grad_raws = [None] * steps, [None] * steps
        layer_grads = [[None] * steps for _ in range(spec.layers)]
        for t in reversed(range(steps)):
            step_grads = (
                grad_memory, grad_focus, grad_reads_carry + grad_all_reads[t], grad_state,
                grad_outputs[t],
            )  # fmt: skip
            carry_grads, grad_projected[t], grad_raws[t], per_layer = _step_backward(
                spec, saved[t], step_grads, layer_weights, head_weight
            )
            grad_memory, grad_focus, grad_reads_carry, grad_state = carry_grads
            for layer in range(spec.layers):
                layer_grads[layer][t] = per_layer[layer]
        # Weight gradients: one matrix product over all steps and sequences each.
        grad_layer_weights = []
        grad_bias = torch.zeros(spec.layers, layer_weights[0].size(0), **factory)
        for layer in range(spec.layers):
            gates = torch.cat([g for g, _ in layer_grads[layer]])  # (T*B, G)
            joined = torch.cat([j for _, j in layer_grads[layer]])  # (T*B, in)
            grad_layer_weights.append(torch.mm(gates.t(), joined))
            if layer > 0:
                grad_bias[layer] = gates.sum(0)
        raws = torch.cat(grad_raws)  # (T*B, P)
        outputs = torch.cat([s.output for s in saved])  # (T*B, C)
        grad_head_weight = torch.mm(raws.t(), outputs)
        grad_head_bias = raws.sum(0)
        return (None, None, torch.stack(grad_projected), grad_memory, grad_focus,
                grad_reads_carry, *grad_state, *grad_layer_weights, grad_bias, grad_head_weight,
                grad_head_bias)  # fmt: skip


def run_sequence(cell, projected: Tensor, carry, node=None,
                 batch_sizes: tuple[int, ...] = ()) -> SequenceRun:
    """Run a :class:`ntm.MemoryCell` with an :class:`ntm.access.NTMAccess` through one node.

    Args:
        cell: the cell whose parameters and sizes to use.
        projected: ``[T, B, gates]``, ``cell.controller.project_input(input)``.
        carry: the cell's loop-form state (:class:`ntm.core.Carry`).
        node: the autograd Function to run: this module's (the default) or the C++ kernel's
            (:class:`ntm.backends.kernel.KernelSequence`), which takes the same inputs.
        batch_sizes: for the kernel's node only: per step, how many sequences of the batch
            (sorted longest first) run; each ends with its own state, zeros past its end.

    Returns:
        :class:`ntm.backends.SequenceRun`.
    """
    controller, access = cell.controller, cell.access
    spec = Spec(
        lstm=controller.states_per_layer == 2,
        layers=controller.num_layers,
        hidden=controller.hidden_size,
        read_heads=access.read_heads,
        write_heads=access.write_heads,
        width=access.memory_width,
        layout=access.layout,
        batch_sizes=tuple(batch_sizes),
    )
    state, (memory, read_weights, write_weights), reads = carry
    focus = torch.cat([read_weights, write_weights], dim=1)  # (B, R + W, N)
    results = (node or _FusedSequence).apply(
        spec, len(state), projected, memory, focus, reads, *state, *controller.layer_weights,
        controller.bias, cell.interface.weight, cell.interface.bias,
    )  # fmt: skip
    outputs, all_reads, all_focus, memory, focus, reads, *state = results
    heads = [access.read_heads, access.write_heads]
    trace = NTMAccessTrace(*all_focus.split(heads, dim=2))
    final = Carry(tuple(state), NTMAccessState(memory, *focus.split(heads, dim=1)), reads)
    return SequenceRun(outputs, all_reads, trace, final)
