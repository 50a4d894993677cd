"""Tests of the stacked-LSTM baseline (ntm.baselines)."""

import re

import pytest
import torch

from ntm.baselines import LSTMBaseline, LSTMState, lstm_baseline_parameter_count


def _model(**kwargs):
    torch.manual_seed(0)
    return LSTMBaseline(9, 8, hidden_size=16, num_layers=2, **kwargs)


def test_shapes_time_major_and_batch_first():
    model = _model()
    logits, state = model(torch.randn(5, 3, 9))
    assert logits.shape == (5, 3, 8)
    assert isinstance(state, LSTMState)
    assert state.hidden.shape == state.cell.shape == (2, 3, 16)

    batch_first = _model(batch_first=True)
    inputs = torch.randn(3, 5, 9)
    logits_bf, _ = batch_first(inputs)
    assert logits_bf.shape == (3, 5, 8)
    # Same weights, transposed input: the same logits, transposed.
    torch.testing.assert_close(logits_bf, model(inputs.transpose(0, 1))[0].transpose(0, 1))


def test_running_in_two_calls_equals_one_call():
    model = _model()
    inputs = torch.randn(7, 2, 9)
    whole, whole_state = model(inputs)
    first, state = model(inputs[:3])
    second, split_state = model(inputs[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(split_state.cell, whole_state.cell)


def test_initial_state_is_zero_and_equals_no_state():
    model = _model()
    state = model.initial_state(4)
    assert state.hidden.shape == (2, 4, 16) and not state.hidden.any() and not state.cell.any()
    inputs = torch.randn(3, 4, 9)
    torch.testing.assert_close(model(inputs, state)[0], model(inputs)[0])


@pytest.mark.parametrize(("sizes", "paper"), [((9, 8, 256, 3), 1_352_969),
                                              ((10, 9, 512, 3), 5_312_007)])
def test_parameter_count_matches_formula(sizes, paper):
    input_size, output_size, hidden, layers = sizes
    formula = lstm_baseline_parameter_count(input_size, output_size, hidden, layers)
    assert formula == 4 * hidden * (input_size + hidden) + 8 * hidden + (layers - 1) * (
        4 * hidden * 2 * hidden + 8 * hidden) + output_size * (hidden + 1)
    model = LSTMBaseline(input_size, output_size, hidden_size=hidden, num_layers=layers,
                         device="meta")
    assert sum(p.numel() for p in model.parameters()) == formula
    assert abs(formula - paper) / paper < 0.03  # close to the paper's; not forced to match


def test_bad_input_size_says_expected_and_got():
    with pytest.raises(ValueError, match="Expected 9, got 7"):
        _model()(torch.zeros(2, 1, 7))
    with pytest.raises(ValueError, match="3 dimensions"):
        _model()(torch.zeros(2, 9))


def test_dtype_and_repr():
    model = LSTMBaseline(3, 2, hidden_size=4, num_layers=1, dtype=torch.float64)
    logits, state = model(torch.zeros(2, 1, 3, dtype=torch.float64))
    assert logits.dtype == state.hidden.dtype == torch.float64
    assert "hidden_size=4" in repr(model) and "num_layers=1" in repr(model)


def test_gradients_flow():
    model = _model()
    logits, _ = model(torch.randn(4, 2, 9))
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_input_of_another_dtype_says_both_and_the_fix():
    message = (
        "input has dtype torch.float64 but the model's parameters are torch.float32; "
        "convert the model with model.double() or the input with input.float()"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        _model()(torch.zeros(2, 1, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match=re.escape("convert the input with input.float()")):
        _model()(torch.zeros(2, 1, 9, dtype=torch.int64))
