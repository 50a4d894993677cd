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
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .lengths import check_lengths, valid_steps
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
        self, input: Tensor | PackedSequence, state: tuple[Tensor, Tensor] | None = None, *,
        lengths: Tensor | list[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, LSTMState]:
        """Run the baseline over a sequence.

        Args:
            input: ``[steps, batch, input_size]`` (``[batch, steps, input_size]`` if
                ``batch_first``), or a ``torch.nn.utils.rnn.PackedSequence``.
            state: the state returned by a previous call, or ``None`` for zeros.
            lengths: ``[batch]`` integers in ``0..steps`` (a tensor or a list), the length of
                each padded sequence; ``None``: every sequence has all the steps.

        Returns:
            ``(logits, state)``: logits of shape ``[steps, batch, output_size]`` (pre-sigmoid;
            a PackedSequence for a PackedSequence input; zero past each sequence's end) and
            the final :class:`LSTMState`, each sequence's after its own last step.
        """
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must be None for a PackedSequence input, which "
                                 f"carries its own; got {type(lengths).__name__}")
            self._check_input(input.data, input.data.dim() + 1)
            hidden, (h, c) = self.lstm(input, None if state is None else tuple(state))
            logits = self.output(hidden.data)  # (sum of lengths, O)
            return (PackedSequence(logits, hidden.batch_sizes, hidden.sorted_indices,
                                   hidden.unsorted_indices), LSTMState(h, c))
        self._check_input(input, input.dim())
        if lengths is not None:
            steps, batch = input.shape[1::-1] if self.batch_first else input.shape[:2]
            lengths = check_lengths(lengths, batch, steps)
            if steps == 0 or not bool((lengths == steps).all()):  # nn.LSTM refuses 0 steps
                return self._forward_lengths(input, state, lengths)
        hidden, (h, c) = self.lstm(input, None if state is None else tuple(state))
        return self.output(hidden), LSTMState(h, c)

    def _check_input(self, input: Tensor, rank: int) -> None:
        if rank != 3:
            raise ValueError(
                f"input must have 3 dimensions [steps, batch, input_size], got {rank}"
            )
        if input.size(-1) != self.input_size:
            raise ValueError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )
        check_input_dtype(input, self.output.weight.dtype)

    def _forward_lengths(self, input: Tensor, state, lengths: Tensor) -> tuple[Tensor, LSTMState]:
        """Padded ``input`` whose sequences end at ``lengths`` (``[B]`` CPU int64): packed for
        ``nn.LSTM``, which refuses length 0; those sequences keep their state."""
        batch_dim = 0 if self.batch_first else 1
        steps, batch = input.size(1 - batch_dim), input.size(batch_dim)
        h, c = self.initial_state(batch) if state is None else state
        expected = (self.num_layers, batch, self.hidden_size)
        for name, tensor in (("hidden", h), ("cell", c)):
            if tuple(tensor.shape) != expected:
                raise ValueError(f"state.{name} must have shape {expected}, got "
                                 f"{tuple(tensor.shape)}")
        running = (lengths > 0).nonzero().squeeze(1)  # (B',)
        index = running.to(input.device)
        hidden = input.new_zeros(*input.shape[:-1], self.hidden_size)
        if len(running):
            packed = pack_padded_sequence(input.index_select(batch_dim, index), lengths[running],
                                          batch_first=self.batch_first, enforce_sorted=False)
            out, (h_run, c_run) = self.lstm(packed, (h.index_select(1, index),
                                                     c.index_select(1, index)))
            out, _ = pad_packed_sequence(out, batch_first=self.batch_first, total_length=steps)
            hidden = hidden.index_copy(batch_dim, index, out)
            h, c = h.index_copy(1, index, h_run), c.index_copy(1, index, c_run)
        valid = valid_steps(lengths, steps, input.device)  # (T, B)
        valid = (valid.T if self.batch_first else valid).unsqueeze(-1)
        logits = torch.where(valid, self.output(hidden), hidden.new_zeros(()))
        return logits, LSTMState(h, c)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.output_size}, hidden_size={self.hidden_size}"
        text += f", num_layers={self.num_layers}"
        if self.batch_first:
            text += ", batch_first=True"
        return text
