"""The paper's stacked-LSTM baseline (Graves et al. 2014, section 4).

The baseline is a stack of LSTM layers followed by one linear layer to logits (the sigmoid is left
to the loss, as for :class:`ntm.NTM`). It is built on :class:`torch.nn.LSTM`, so it runs the fused
kernels where they exist. The paper's parameter counts (Tables 1-3) are a little higher than ours;
the paper does not say how its layers were wired (Graves 2013 feeds the input to every layer and
every layer to the output), so we keep the plain stack and report our counts beside theirs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .model import check_input_dtype

__all__ = ["LSTMBaseline", "LSTMState", "lstm_baseline_parameter_count"]


class LSTMState(NamedTuple):
    """The recurrent state of :class:`LSTMBaseline`, the same pair as :class:`torch.nn.LSTM`'s.

    Attributes:
        hidden: ``[num_layers, batch, hidden_size]`` hidden state of each layer (``h``).
        cell: ``[num_layers, batch, hidden_size]`` cell state of each layer (``c``).
    """

    hidden: Tensor
    cell: Tensor


def lstm_baseline_parameter_count(
    input_size: int, output_size: int, hidden_size: int = 256, num_layers: int = 3
) -> int:
    """Number of trainable parameters of an :class:`LSTMBaseline`.

    Each layer has four gates with input and recurrent weights and two biases (PyTorch's
    convention): ``4 H (I_l + H) + 8 H``, where ``I_l`` is ``input_size`` for the first layer and
    ``H`` after it; the output layer adds ``O (H + 1)``.
    """
    count = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size
        count += 4 * hidden_size * (layer_input + hidden_size) + 8 * hidden_size
    return count + output_size * (hidden_size + 1)


class LSTMBaseline(nn.Module):
    """Stacked LSTM with a linear output layer: the baseline of the NTM paper.

    Args:
        input_size: channels of the input, ``I``.
        output_size: channels of the output logits, ``O``.
        hidden_size: units per LSTM layer (paper: 128 to 512, Tables 1-3).
        num_layers: stacked LSTM layers (paper: 3).
        batch_first: if ``True``, inputs and outputs are ``[batch, steps, channels]``
            (the state stays ``[num_layers, batch, hidden_size]``, as in :class:`torch.nn.LSTM`).
        device, dtype: factory arguments for the parameters.

    Shapes (``batch_first=False``):
        input: ``[steps, batch, input_size]``; logits: ``[steps, batch, output_size]``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        hidden_size: int = 256,
        num_layers: int = 3,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("output_size", output_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.lstm = nn.LSTM(
            input_size, hidden_size, num_layers, batch_first=batch_first, **factory
        )
        self.output = nn.Linear(hidden_size, output_size, **factory)

    def initial_state(self, batch_size: int) -> LSTMState:
        """Zero state for ``batch_size`` sequences on the parameters' device and dtype."""
        weight = self.output.weight
        zeros = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return LSTMState(zeros, zeros.clone())

    def forward(
        self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, LSTMState]:
        """Run the baseline over a sequence.

        Args:
            input: ``[steps, batch, input_size]`` (``[batch, steps, input_size]`` if
                ``batch_first``).
            state: the state returned by a previous call, or ``None`` for zeros.

        Returns:
            ``(logits, state)``: logits of shape ``[steps, batch, output_size]`` (pre-sigmoid)
            and the final :class:`LSTMState`.
        """
        if input.dim() != 3:
            raise ValueError(
                f"input must have 3 dimensions [steps, batch, input_size], got {input.dim()}"
            )
        if input.size(-1) != self.input_size:
            raise ValueError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )
        check_input_dtype(input, self.output.weight.dtype)
        hidden, (h, c) = self.lstm(input, None if state is None else tuple(state))
        return self.output(hidden), LSTMState(h, c)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.output_size}, hidden_size={self.hidden_size}"
        text += f", num_layers={self.num_layers}"
        if self.batch_first:
            text += ", batch_first=True"
        return text
