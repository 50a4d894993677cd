"""Controllers: the network that reads the input and the previous read vectors.

A controller step takes the projected external input (precomputed for the whole sequence at
once, since it does not depend on the recurrence), the previous read vectors and its own
state, and returns its output and new state. The state is a tuple of ``[batch, size]``
tensors, one entry per layer (feedforward) or two (LSTM: hidden, cell); :class:`ntm.NTM`
packs it into ``[layers, batch, size]`` tensors in its public state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Controller(nn.Module):
    """Shared structure: layer 0 sees ``[input, reads]``; later layers see the layer below.

    The external input's part of layer 0 is a separate weight so that it can be applied to all
    time steps in one matrix product (:meth:`project_input`).
    """

    gates_per_unit = 1
    states_per_layer = 0

    def __init__(self, input_size, reads_size, hidden_size, num_layers, *, device=None, dtype=None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"controller_layers must be at least 1, got {num_layers}")
        factory = {"device": device, "dtype": dtype}
        gates = self.gates_per_unit * hidden_size
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.input_weight = nn.Parameter(torch.empty(gates, input_size, **factory))
        self.bias = nn.Parameter(torch.empty(num_layers, gates, **factory))
        # Layer 0's weight on [reads, own previous hidden] (LSTM) or [reads] (feedforward);
        # layer l > 0's weight on [layer below, own previous hidden] or [layer below].
        recurrent = hidden_size if self.states_per_layer else 0
        self.layer_weights = nn.ParameterList(
            [
                nn.Parameter(
                    torch.empty(
                        gates, (reads_size if layer == 0 else hidden_size) + recurrent, **factory
                    )
                )
                for layer in range(num_layers)
            ]
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(hidden_size), as ``torch.nn.LSTM``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def project_input(self, inputs: Tensor) -> Tensor:
        """Layer 0's input term and bias for every step: ``[..., input] -> [..., gates]``."""
        return torch.nn.functional.linear(inputs, self.input_weight, self.bias[0])

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> tuple[Tensor, ...]:
        """Zero state: ``states_per_layer * num_layers`` tensors of ``[batch, hidden]``."""
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros,) * (self.states_per_layer * self.num_layers)


class LSTMController(Controller):
    """A stack of LSTM layers (gates ordered input, forget, output, candidate)."""

    gates_per_unit = 4
    states_per_layer = 2

    def step(self, projected_input: Tensor, reads: Tensor, state: tuple[Tensor, ...]):
        """One step.

        Args:
            projected_input: ``[batch, 4 * hidden]`` from :meth:`project_input`.
            reads: ``[batch, read_heads * memory_width]``, the previous read vectors.
            state: ``(hidden_0, cell_0, hidden_1, cell_1, ...)``, each ``[batch, hidden]``.

        Returns:
            ``(output [batch, hidden], new state)``.
        """
        size = self.hidden_size
        below, new_state = reads, []
        for layer, weight in enumerate(self.layer_weights):
            hidden, cell = state[2 * layer], state[2 * layer + 1]
            offset = projected_input if layer == 0 else self.bias[layer]
            gates = torch.addmm(offset, torch.cat([below, hidden], dim=1), weight.t())
            input_gate, forget_gate, output_gate = torch.sigmoid(gates[:, : 3 * size]).chunk(3, 1)
            candidate = torch.tanh(gates[:, 3 * size :])
            cell = torch.addcmul(forget_gate * cell, input_gate, candidate)
            hidden = output_gate * torch.tanh(cell)
            new_state += [hidden, cell]
            below = hidden
        return below, tuple(new_state)


class FeedforwardController(Controller):
    """A stack of tanh layers; it keeps no state (memory is its only recurrence)."""

    def step(self, projected_input: Tensor, reads: Tensor, state: tuple[Tensor, ...]):
        """One step; see :meth:`LSTMController.step` (``state`` is the empty tuple)."""
        hidden = torch.tanh(torch.addmm(projected_input, reads, self.layer_weights[0].t()))
        for layer in range(1, self.num_layers):
            hidden = torch.tanh(
                torch.addmm(self.bias[layer], hidden, self.layer_weights[layer].t())
            )
        return hidden, state


CONTROLLERS = {"lstm": LSTMController, "feedforward": FeedforwardController}
