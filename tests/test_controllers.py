"""Controllers against torch.nn.LSTMCell (LSTM) and a NumPy re-computation (feedforward).

Our LSTM stores its gates in the order (input, forget, output, candidate) and splits layer 0's
weight into ``input_weight`` (on the external input) and ``layer_weights[0]`` (on
``[reads, previous hidden]``), with one bias per layer. ``torch.nn.LSTMCell`` orders its gates
(input, forget, candidate, output) and has two biases; the mapping is written out in
:func:`lstm_cells`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ntm.controllers import CONTROLLERS, FeedforwardController, LSTMController


def reorder_gates(tensor: torch.Tensor, hidden: int) -> torch.Tensor:
    """Rows (i, f, o, g) -> (i, f, g, o)."""
    i, f, o, g = tensor.split(hidden, dim=0)
    return torch.cat([i, f, g, o], dim=0)


def lstm_cells(controller: LSTMController, reads_size: int) -> list[nn.LSTMCell]:
    """One nn.LSTMCell per layer, holding the controller's weights."""
    hidden = controller.hidden_size
    cells = []
    for layer, weight in enumerate(controller.layer_weights):
        below = reads_size if layer == 0 else hidden
        input_part = weight[:, :below]  # on [reads] (layer 0) or the layer below
        if layer == 0:  # the external input comes first in the cell's input [x, reads]
            input_part = torch.cat([controller.input_weight, input_part], dim=1)
        cell = nn.LSTMCell(input_part.size(1), hidden, dtype=weight.dtype)
        with torch.no_grad():
            cell.weight_ih.copy_(reorder_gates(input_part, hidden))
            cell.weight_hh.copy_(reorder_gates(weight[:, below:], hidden))
            cell.bias_ih.copy_(reorder_gates(controller.bias[layer], hidden))
            cell.bias_hh.zero_()
        cells.append(cell)
    return cells


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_step_equals_lstm_cell(layers) -> None:
    torch.manual_seed(layers)
    input_size, reads_size, hidden, batch = 5, 6, 7, 3
    controller = LSTMController(input_size, reads_size, hidden, layers, dtype=torch.float64)
    cells = lstm_cells(controller, reads_size)
    state = tuple(torch.randn(batch, hidden, dtype=torch.float64) for _ in range(2 * layers))
    reference_state = [(state[2 * i], state[2 * i + 1]) for i in range(layers)]
    for _ in range(3):  # a few steps, carrying the state
        x = torch.randn(batch, input_size, dtype=torch.float64)
        reads = torch.randn(batch, reads_size, dtype=torch.float64)
        output, state = controller.step(controller.project_input(x), reads, state)
        below = torch.cat([x, reads], dim=1)
        for layer, cell in enumerate(cells):
            reference_state[layer] = cell(below, reference_state[layer])
            below = reference_state[layer][0]
        torch.testing.assert_close(output, below)
        assert len(state) == 2 * layers
        for layer in range(layers):  # state is (hidden_0, cell_0, hidden_1, cell_1, ...)
            torch.testing.assert_close(state[2 * layer], reference_state[layer][0])
            torch.testing.assert_close(state[2 * layer + 1], reference_state[layer][1])


def test_project_input_over_a_sequence_equals_per_step() -> None:
    torch.manual_seed(0)
    controller = LSTMController(4, 3, 5, 2, dtype=torch.float64)
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    all_steps = controller.project_input(x)
    assert all_steps.shape == (6, 2, 20)
    for t in range(6):
        torch.testing.assert_close(all_steps[t], controller.project_input(x[t]))
    expected = x @ controller.input_weight.T + controller.bias[0]
    torch.testing.assert_close(all_steps, expected)


def np_feedforward(x, reads, input_weight, bias, layer_weights) -> np.ndarray:
    """h_0 = tanh(W_x x + W_r r + b_0); h_l = tanh(W_l h_{l-1} + b_l), by explicit sums."""
    batch = x.shape[0]
    hidden = bias.shape[1]
    h = np.zeros((batch, hidden))
    for b in range(batch):
        for u in range(hidden):
            total = bias[0, u]
            total += sum(input_weight[u, k] * x[b, k] for k in range(x.shape[1]))
            total += sum(layer_weights[0][u, k] * reads[b, k] for k in range(reads.shape[1]))
            h[b, u] = math.tanh(total)
    for layer in range(1, len(layer_weights)):
        below, h = h, np.zeros((batch, hidden))
        for b in range(batch):
            for u in range(hidden):
                total = bias[layer, u] + sum(
                    layer_weights[layer][u, k] * below[b, k] for k in range(hidden)
                )
                h[b, u] = math.tanh(total)
    return h


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_feedforward_step_matches_numpy(layers) -> None:
    torch.manual_seed(layers)
    input_size, reads_size, hidden, batch = 4, 6, 5, 3
    controller = FeedforwardController(input_size, reads_size, hidden, layers, dtype=torch.float64)
    x = torch.randn(batch, input_size, dtype=torch.float64)
    reads = torch.randn(batch, reads_size, dtype=torch.float64)
    state = controller.initial_state(batch, dtype=torch.float64)
    assert state == ()
    output, new_state = controller.step(controller.project_input(x), reads, state)
    assert new_state == ()
    expected = np_feedforward(
        x.numpy(),
        reads.numpy(),
        controller.input_weight.detach().numpy(),
        controller.bias.detach().numpy(),
        [w.detach().numpy() for w in controller.layer_weights],
    )
    np.testing.assert_allclose(output.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


def test_parameter_shapes() -> None:
    lstm = LSTMController(9, 20, 100, 2)
    assert lstm.input_weight.shape == (400, 9)
    assert lstm.bias.shape == (2, 400)
    assert [tuple(w.shape) for w in lstm.layer_weights] == [(400, 120), (400, 200)]
    feedforward = FeedforwardController(9, 20, 100, 2)
    assert feedforward.input_weight.shape == (100, 9)
    assert feedforward.bias.shape == (2, 100)
    assert [tuple(w.shape) for w in feedforward.layer_weights] == [(100, 20), (100, 100)]


@pytest.mark.parametrize("kind", ["lstm", "feedforward"])
def test_initialisation_is_uniform_in_the_lstm_bound(kind) -> None:
    torch.manual_seed(0)
    controller = CONTROLLERS[kind](9, 20, 64, 2)
    bound = 1.0 / math.sqrt(64)
    for name, parameter in controller.named_parameters():
        assert parameter.abs().max().item() <= bound, name
        assert parameter.abs().max().item() > 0.9 * bound, name  # not left at zero


def test_initial_state_is_zero_on_the_requested_dtype() -> None:
    state = LSTMController(3, 4, 5, 2).initial_state(6, dtype=torch.float64)
    assert len(state) == 4
    for t in state:
        assert t.shape == (6, 5) and t.dtype == torch.float64 and torch.all(t == 0)


@pytest.mark.parametrize("kind", ["lstm", "feedforward"])
def test_zero_layers_is_rejected(kind) -> None:
    with pytest.raises(ValueError, match="controller_layers must be at least 1, got 0"):
        CONTROLLERS[kind](3, 4, 5, 0)


def test_registry_names() -> None:
    assert CONTROLLERS == {"lstm": LSTMController, "feedforward": FeedforwardController}
