"""From the controller output to head parameters: one projection, one split table.

All heads are projected by a single linear layer. Read heads come first and write heads after
them in every per-head block, so that the addressing of all heads runs as one batched call.
The projection's output is clipped to +-20 (Collier & Beel 2018, who saw no NaN with it; it
bounds the key strength beta and the sharpening gamma) and the activations are applied here
and nowhere else.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Bound on the raw head parameters (Collier & Beel 2018).
CLIP = 20.0
# The order of the activation groups in the projection's output (HeadLayout.blocks).
ACTIVATION_ORDER = ("tanh", "sigmoid", "softplus", "softmax")


class HeadParameters(NamedTuple):
    """The activated head parameters of one step; ``heads = read_heads + write_heads``."""

    keys: Tensor  # k, tanh: [batch, heads, memory_width]
    key_strengths: Tensor  # beta, softplus: [batch, heads]
    gates: Tensor  # g, sigmoid: [batch, heads]
    shift_weights: Tensor  # s, softmax over 2K+1 shifts: [batch, heads, 2K+1]
    sharpening: Tensor  # gamma, 1 + softplus: [batch, heads]
    erase: Tensor  # e, sigmoid: [batch, write_heads, memory_width]
    add: Tensor  # a, tanh: [batch, write_heads, memory_width]


class ActivationParts(NamedTuple):
    """The activated blocks as :meth:`HeadLayout.activate` computed them, for a backward pass."""

    tanh: Tensor  # [batch, tanh_end]: keys, add
    sigmoid: Tensor  # [batch, sigmoid_end - tanh_end]: gates, erase
    softplus_input: Tensor  # [batch, softplus_end - sigmoid_end]: clipped, before softplus


class HeadLayout:
    """How the projection's output splits into head parameters.

    The blocks are ordered by activation, so that each activation is one call on a contiguous
    slice: ``[keys, add | gates, erase | key_strengths, sharpening | shift_weights]``.
    """

    def __init__(self, read_heads: int, write_heads: int, memory_width: int, shift_range: int):
        heads = read_heads + write_heads
        shifts = 2 * shift_range + 1
        self.heads, self.write_heads, self.memory_width, self.shifts = (
            heads,
            write_heads,
            memory_width,
            shifts,
        )
        # (name, width, activation): the one table of the split.
        self.blocks = (
            ("keys", heads * memory_width, "tanh"),
            ("add", write_heads * memory_width, "tanh"),
            ("gates", heads, "sigmoid"),
            ("erase", write_heads * memory_width, "sigmoid"),
            ("key_strengths", heads, "softplus"),
            ("sharpening", heads, "softplus"),
            ("shift_weights", heads * shifts, "softmax"),
        )
        self.size = sum(width for _, width, _ in self.blocks)
        # Where each activation's slice ends, from the table. activate() and the fused path's
        # backward (ntm/fused.py) rely on this order of activations and of blocks within each.
        activations = [activation for _, _, activation in self.blocks]
        if activations != sorted(activations, key=ACTIVATION_ORDER.index):
            raise AssertionError(f"head blocks out of activation order: {activations}")
        ends, offset = {}, 0
        for _, width, activation in self.blocks:
            offset = ends[activation] = offset + width
        self.tanh_end, self.sigmoid_end, self.softplus_end = (
            ends["tanh"], ends["sigmoid"], ends["softplus"])

    def activate(self, raw: Tensor) -> HeadParameters:
        """Clip, activate and split a projection output.

        Args:
            raw: ``[batch, size]``, the projection output.

        Returns:
            :class:`HeadParameters` (views into one activated tensor where possible).
        """
        return self.activate_parts(raw)[0]

    def activate_parts(self, raw: Tensor) -> tuple[HeadParameters, ActivationParts]:
        """:meth:`activate`, also returning the activated blocks whole (the fused backward
        differentiates them as such)."""
        batch = raw.size(0)
        heads, writes, width = self.heads, self.write_heads, self.memory_width
        raw = raw.clamp(-CLIP, CLIP)
        tanh = torch.tanh(raw[:, : self.tanh_end])
        sigmoid = torch.sigmoid(raw[:, self.tanh_end : self.sigmoid_end])
        softplus_input = raw[:, self.sigmoid_end : self.softplus_end]
        softplus = F.softplus(softplus_input)
        shift_logits = raw[:, self.softplus_end :].reshape(batch, heads, self.shifts)
        keys, add = tanh.split([heads * width, writes * width], dim=1)
        gates, erase = sigmoid.split([heads, writes * width], dim=1)
        key_strengths, sharpening = softplus.split([heads, heads], dim=1)
        parameters = HeadParameters(
            keys=keys.reshape(batch, heads, width),
            key_strengths=key_strengths,
            gates=gates,
            shift_weights=torch.softmax(shift_logits, dim=-1),
            sharpening=sharpening + 1.0,
            erase=erase.reshape(batch, writes, width),
            add=add.reshape(batch, writes, width),
        )
        return parameters, ActivationParts(tanh, sigmoid, softplus_input)


class HeadProjection(nn.Module):
    """Linear map from the controller output to the parameters of every head.

    Args:
        controller_size: width of the controller output.
        read_heads, write_heads, memory_width, shift_range: as in :class:`ntm.NTM`.
    """

    def __init__(
        self,
        controller_size: int,
        read_heads: int,
        write_heads: int,
        memory_width: int,
        shift_range: int,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.layout = HeadLayout(read_heads, write_heads, memory_width, shift_range)
        self.linear = nn.Linear(controller_size, self.layout.size, device=device, dtype=dtype)

    def forward(self, controller_output: Tensor) -> HeadParameters:
        """``[batch, controller_size]`` -> :class:`HeadParameters`."""
        return self.layout.activate(self.linear(controller_output))
