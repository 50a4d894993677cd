"""NTM and NTMCell: gradients, state handling, equivalences, validation, training smoke test.

Sizes are small on purpose (memory 16 x 8, controller 16; tiny float64 models for gradcheck)
so that the file runs in seconds on two cores. ``NTM`` has two paths when gradients are on,
the fused sequence node (default) and the plain autograd loop (``fused=False``); the tests
that exercise gradients or the recurrence run on both.
"""

from __future__ import annotations

import doctest
import re

import pytest
import torch
from torch.func import functional_call

import ntm.model
from ntm import NTM, NTMCell, NTMState, NTMTrace
from ntm.addressing import address
from ntm.memory import read, write

SMALL = {"memory_slots": 16, "memory_width": 8, "controller_size": 16}
# Tiny float64 models for gradcheck: N = 5 > 2R, M = 3, C = 4.
TINY = {"memory_slots": 5, "memory_width": 3, "controller_size": 4, "dtype": torch.float64}
FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])


def small_ntm(seed: int = 0, **overrides) -> NTM:
    torch.manual_seed(seed)
    return NTM(9, 8, **{**SMALL, **overrides})


def state_fields(state: NTMState) -> list[torch.Tensor]:
    return [*state[:4], *state.controller]


def assert_states_close(a: NTMState, b: NTMState, **tolerances) -> None:
    assert len(a.controller) == len(b.controller)
    for name, x, y in zip(
        [*NTMState._fields[:4], *(f"controller[{i}]" for i in range(len(a.controller)))],
        state_fields(a),
        state_fields(b),
        strict=True,
    ):
        torch.testing.assert_close(x, y, **tolerances, msg=lambda m, name=name: f"{name}: {m}")


def random_state(cell: NTMCell, batch: int, seed: int) -> NTMState:
    """A valid, non-trivial state: random memory, reads, controller; weightings that sum to 1."""
    g = torch.Generator().manual_seed(seed)
    shapes = cell.expected_state_shapes(batch)
    dtype = cell.initial_reads.dtype

    def normal(shape):
        return torch.randn(shape, generator=g, dtype=dtype)

    return NTMState(
        normal(shapes.memory),
        torch.softmax(normal(shapes.read_weights), -1),
        torch.softmax(normal(shapes.write_weights), -1),
        normal(shapes.read_vectors) * 0.5,
        tuple(normal(s) * 0.5 for s in shapes.controller),
    )


# -- gradcheck (float64, tiny) ----------------------------------------------------------------


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_gradcheck_cell_wrt_input_and_state(controller) -> None:
    torch.manual_seed(0)
    cell = NTMCell(3, 2, controller=controller, **TINY)
    start = random_state(cell, batch=2, seed=1)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    leaves = [t.clone().requires_grad_() for t in state_fields(start)]

    def step(x, *fields):
        state = NTMState(*fields[:4], tuple(fields[4:]))
        logits, new = cell(x, state)
        return (logits, *state_fields(new))

    assert torch.autograd.gradcheck(step, (x, *leaves))


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_gradcheck_cell_wrt_parameters_over_two_steps(controller) -> None:
    torch.manual_seed(0)
    cell = NTMCell(3, 2, controller=controller, memory_init="learned", **TINY)
    names = [name for name, _ in cell.named_parameters()]
    assert "access.initial_memory" in names and "initial_reads" in names
    x = torch.randn(2, 2, 3, dtype=torch.float64)

    def two_steps(*parameters):
        values = dict(zip(names, parameters, strict=True))
        logits_1, state = functional_call(cell, values, (x[0],))  # state from initial_state
        logits_2, state = functional_call(cell, values, (x[1], state))
        return logits_1, logits_2, state.memory

    parameters = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    assert torch.autograd.gradcheck(two_steps, parameters)


@FUSED
def test_gradcheck_ntm_over_three_steps_wrt_input_and_parameters(fused) -> None:
    torch.manual_seed(0)
    model = NTM(3, 2, read_heads=2, write_heads=1, memory_init="learned", fused=fused, **TINY)
    names = [name for name, _ in model.named_parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)

    def run(x, *parameters):
        logits, state = functional_call(model, dict(zip(names, parameters, strict=True)), (x,))
        return logits, state.memory, state.read_vectors

    parameters = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(run, (x, *parameters))


@FUSED
@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_gradcheck_ntm_wrt_a_given_state(controller, fused) -> None:
    torch.manual_seed(0)
    model = NTM(3, 2, controller=controller, write_heads=2, fused=fused, **TINY)
    start = random_state(model.cell, batch=2, seed=3)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    leaves = [t.clone().requires_grad_() for t in state_fields(start)]

    def run(x, *fields):
        logits, new = model(x, NTMState(*fields[:4], tuple(fields[4:])))
        return (logits, *state_fields(new))

    assert torch.autograd.gradcheck(run, (x, *leaves))


@FUSED
def test_backward_twice_with_retain_graph_doubles_the_gradient(fused) -> None:
    # Any retained graph may be differentiated more than once (gradcheck does it too).
    model = small_ntm(fused=fused)
    logits, _ = model(torch.randn(4, 2, 9))
    loss = logits.square().sum()
    loss.backward(retain_graph=True)
    once = [p.grad.clone() for p in model.parameters()]
    loss.backward()
    for first, parameter in zip(once, model.parameters(), strict=True):
        torch.testing.assert_close(parameter.grad, 2 * first)


# -- equivalences -----------------------------------------------------------------------------


def reference_step(cell: NTMCell, x: torch.Tensor, state: NTMState):
    """One step re-derived in the order of the module docstring (Collier & Beel 2018): the
    controller sees [input, previous reads]; every head is addressed against the memory as it
    was before this step; the read heads read that memory; then the write heads write; the
    output layer sees [controller output, this step's reads]. The pure functions and the head
    split it calls are tested on their own in test_addressing, test_memory and test_heads."""
    c = cell.controller
    reads = state.read_vectors.flatten(1)
    below = torch.cat([x, reads], dim=1)
    new_controller = []
    for layer in range(c.num_layers):
        weight = c.layer_weights[layer]
        if layer == 0:
            weight = torch.cat([c.input_weight, weight], dim=1)
        if cell.controller_kind == "lstm":
            hidden, cell_state = state.controller[0][layer], state.controller[1][layer]
            gates = torch.cat([below, hidden], dim=1) @ weight.T + c.bias[layer]
            i, f, o, g = gates.chunk(4, dim=1)  # input, forget, output, candidate
            cell_state = torch.sigmoid(f) * cell_state + torch.sigmoid(i) * torch.tanh(g)
            below = torch.sigmoid(o) * torch.tanh(cell_state)
            new_controller.append((below, cell_state))
        else:
            below = torch.tanh(below @ weight.T + c.bias[layer])
    p = cell.access.layout.activate(below @ cell.interface.weight.T + cell.interface.bias)
    previous = torch.cat([state.read_weights, state.write_weights], dim=1)
    weights = address(
        state.memory, previous, p.keys, p.key_strengths, p.gates, p.shift_weights, p.sharpening
    )
    read_weights, write_weights = weights[:, : cell.read_heads], weights[:, cell.read_heads :]
    read_vectors = read(state.memory, read_weights)  # the memory before this step's write
    memory = write(state.memory, write_weights, p.erase, p.add)
    features = torch.cat([below, read_vectors.flatten(1)], dim=1)
    logits = features @ cell.output.weight.T + cell.output.bias
    controller = ()
    if new_controller:
        controller = tuple(torch.stack(t) for t in zip(*new_controller, strict=True))
    return logits, NTMState(memory, read_weights, write_weights, read_vectors, controller)


@pytest.mark.parametrize(
    "overrides",
    [
        {"controller": "lstm", "controller_layers": 2, "read_heads": 2, "write_heads": 1},
        {"controller": "feedforward", "controller_layers": 2, "read_heads": 1, "write_heads": 2},
    ],
)
def test_a_cell_step_equals_the_re_derived_step(overrides) -> None:
    torch.manual_seed(0)
    cell = NTMCell(9, 8, **SMALL, **overrides, dtype=torch.float64)
    state = random_state(cell, batch=3, seed=2)
    x = torch.randn(3, 9, dtype=torch.float64)
    for _ in range(3):
        logits, new_state = cell(x, state)
        expected_logits, expected_state = reference_step(cell, x, state)
        torch.testing.assert_close(logits, expected_logits, rtol=1e-12, atol=1e-12)
        assert_states_close(new_state, expected_state, rtol=1e-12, atol=1e-12)
        state, x = new_state, torch.randn(3, 9, dtype=torch.float64)


@FUSED
@pytest.mark.parametrize("memory_init", ["constant", "learned", "random"])
@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_running_at_once_equals_running_in_two_calls(controller, memory_init, fused) -> None:
    model = small_ntm(
        fused=fused,
        controller=controller,
        memory_init=memory_init,
        read_heads=2,
        write_heads=2,
        controller_layers=2,
        dtype=torch.float64,
    )
    x = torch.randn(7, 3, 9, dtype=torch.float64)
    start = None
    if memory_init == "random":  # random memory is drawn afresh per call: fix it explicitly
        start = model.initial_state(3, generator=torch.Generator().manual_seed(5))
    logits, state = model(x, start)
    first, middle = model(x[:3], start)
    second, end = model(x[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), logits, rtol=1e-12, atol=1e-12)
    assert_states_close(end, state, rtol=1e-12, atol=1e-12)


def test_random_memory_is_drawn_per_call_and_reproducible_with_a_generator() -> None:
    model = small_ntm(memory_init="random")
    a = model.initial_state(2, generator=torch.Generator().manual_seed(1)).memory
    b = model.initial_state(2, generator=torch.Generator().manual_seed(1)).memory
    c = model.initial_state(2).memory
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each sequence gets its own memory
    assert 0.4 < a.std().item() < 0.6  # N(0, 0.5^2)


@pytest.mark.parametrize(
    "overrides",
    [
        {"controller": "lstm", "controller_layers": 2},
        {"controller": "feedforward", "read_heads": 2, "write_heads": 3, "shift_range": 2},
    ],
)
@FUSED
def test_stepping_an_ntm_cell_with_the_ntm_parameters_equals_the_ntm(overrides, fused) -> None:
    model = small_ntm(fused=fused, **overrides)
    cell = NTMCell(9, 8, **SMALL, **overrides)
    cell.load_state_dict(model.cell.state_dict())
    x = torch.randn(6, 2, 9)
    logits, state, trace = model.trace(x)
    step_state = None
    for t in range(6):
        step_logits, step_state = cell(x[t], step_state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-6)
        # The trace holds the weightings and read vectors of the state after each step.
        torch.testing.assert_close(trace.read_weights[t], step_state.read_weights)
        torch.testing.assert_close(trace.write_weights[t], step_state.write_weights)
        torch.testing.assert_close(trace.read_vectors[t], step_state.read_vectors)
    assert_states_close(step_state, state, rtol=1e-5, atol=1e-6)


def test_no_grad_gives_the_same_numbers() -> None:
    model = small_ntm(read_heads=2)
    x = torch.randn(5, 2, 9)
    logits, state = model(x)
    with torch.no_grad():
        plain_logits, plain_state = model(x)
    assert not plain_logits.requires_grad
    torch.testing.assert_close(plain_logits, logits.detach())
    assert_states_close(
        plain_state,
        NTMState(*(t.detach() for t in state[:4]), tuple(t.detach() for t in state.controller)),
    )


@FUSED
def test_an_empty_sequence_returns_the_state_it_was_given(fused) -> None:
    model = small_ntm(fused=fused, read_heads=2)
    start = model.initial_state(3)
    logits, state = model(torch.zeros(0, 3, 9), start)
    assert logits.shape == (0, 3, 8)
    assert_states_close(state, start)


def test_trace_of_an_empty_sequence() -> None:
    model = small_ntm(read_heads=2)
    _, _, trace = model.trace(torch.zeros(0, 3, 9))
    assert trace.read_weights.shape == (0, 3, 2, 16)
    assert trace.write_weights.shape == (0, 3, 1, 16)
    assert trace.read_vectors.shape == (0, 3, 2, 8)


def test_batch_first_equals_time_major() -> None:
    model = small_ntm()
    model_bf = NTM(9, 8, **SMALL, batch_first=True)
    model_bf.load_state_dict(model.state_dict())
    x = torch.randn(5, 3, 9)  # (T, B, I)
    logits, state = model(x)
    logits_bf, state_bf = model_bf(x.transpose(0, 1).contiguous())
    assert logits_bf.shape == (3, 5, 8)
    torch.testing.assert_close(logits_bf, logits.transpose(0, 1))
    assert_states_close(state_bf, state)  # the state is batch-major either way
    _, _, trace_bf = model_bf.trace(x.transpose(0, 1))
    assert trace_bf.read_weights.shape == (5, 3, 1, 16)  # the trace stays time-major


def test_batch_elements_are_independent() -> None:
    model = small_ntm(read_heads=2, write_heads=2)
    x = torch.randn(5, 3, 9)
    logits, state = model(x)
    for b in range(3):
        alone, alone_state = model(x[:, b : b + 1])
        torch.testing.assert_close(alone, logits[:, b : b + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(alone_state.memory, state.memory[b : b + 1])


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_unbatched_input_equals_a_batch_of_one(controller) -> None:
    model = small_ntm(controller=controller)
    x = torch.randn(6, 9)  # (T, I)
    logits, state = model(x[:4])
    batched, batched_state = model(x[:4].unsqueeze(1))
    assert logits.shape == (4, 8)
    torch.testing.assert_close(logits, batched.squeeze(1))
    assert state.memory.shape == (16, 8)
    assert state.read_weights.shape == (1, 16) and state.read_vectors.shape == (1, 8)
    if controller == "lstm":
        assert [tuple(t.shape) for t in state.controller] == [(1, 16), (1, 16)]
        torch.testing.assert_close(state.controller[0], batched_state.controller[0][:, 0])
    # The unbatched state carries on like the batched one.
    more, _ = model(x[4:], state)
    more_batched, _ = model(x[4:].unsqueeze(1), batched_state)
    torch.testing.assert_close(more, more_batched.squeeze(1))
    # And the cell takes a 1-D input and an unbatched state.
    step, step_state = model.cell(x[4], state)
    assert step.shape == (8,) and step_state.memory.shape == (16, 8)
    torch.testing.assert_close(step, more[0])
    # The trace of an unbatched run has no batch dimension.
    _, _, trace = model.trace(x)
    assert trace.read_weights.shape == (6, 1, 16) and trace.read_vectors.shape == (6, 1, 8)


def test_trace_matches_forward_and_rows_are_distributions() -> None:
    model = small_ntm(read_heads=2, write_heads=3)
    x = torch.randn(5, 2, 9)
    logits, state = model(x)
    traced_logits, traced_state, trace = model.trace(x)
    assert isinstance(trace, NTMTrace)
    torch.testing.assert_close(traced_logits, logits)
    assert_states_close(traced_state, state)
    assert trace.read_weights.shape == (5, 2, 2, 16)
    assert trace.write_weights.shape == (5, 2, 3, 16)
    assert trace.read_vectors.shape == (5, 2, 2, 8)
    torch.testing.assert_close(trace.read_weights[-1], state.read_weights)
    torch.testing.assert_close(trace.write_weights[-1], state.write_weights)
    torch.testing.assert_close(trace.read_vectors[-1], state.read_vectors)
    for weights in (trace.read_weights, trace.write_weights):
        assert torch.all(weights >= 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


# -- initial state ----------------------------------------------------------------------------


def test_initial_state_values() -> None:
    model = small_ntm(read_heads=2, write_heads=1, controller_layers=2)
    with torch.no_grad():
        model.cell.initial_reads.copy_(torch.arange(16.0).reshape(2, 8))
    state = model.initial_state(3)
    assert torch.all(state.memory == 1e-6) and state.memory.shape == (3, 16, 8)
    for weights in (state.read_weights, state.write_weights):  # every head starts on slot 0
        assert torch.all(weights[..., 0] == 1) and torch.all(weights[..., 1:] == 0)
    assert torch.equal(state.read_vectors, torch.arange(16.0).reshape(2, 8).expand(3, 2, 8))
    assert [tuple(t.shape) for t in state.controller] == [(2, 3, 16), (2, 3, 16)]
    assert all(torch.all(t == 0) for t in state.controller)
    assert small_ntm(controller="feedforward").initial_state(3).controller == ()


def test_learned_memory_is_a_parameter_that_gets_a_gradient() -> None:
    model = small_ntm(memory_init="learned")
    assert model.cell.initial_memory.shape == (16, 8)
    logits, _ = model(torch.randn(3, 2, 9))
    logits.sum().backward()
    assert model.cell.initial_memory.grad is not None
    assert model.cell.initial_memory.grad.abs().sum() > 0
    assert not hasattr(small_ntm().cell, "initial_memory")


# -- validation -------------------------------------------------------------------------------


def test_wrong_rank_is_rejected() -> None:
    model = small_ntm()
    with pytest.raises(ValueError, match=re.escape("2-D (unbatched) or 3-D (batched), got 4-D")):
        model(torch.zeros(2, 3, 4, 9))
    with pytest.raises(ValueError, match=re.escape("got 1-D with shape (9,)")):
        model(torch.zeros(9))
    with pytest.raises(ValueError, match=re.escape("1-D (unbatched) or 2-D (batched), got 3-D")):
        model.cell(torch.zeros(2, 3, 9))
    with pytest.raises(ValueError, match="input must be a Tensor, got list"):
        model([[0.0] * 9])


def test_wrong_input_size_is_rejected() -> None:
    model = small_ntm()
    message = re.escape("input.size(-1) must be equal to input_size. Expected 9, got 8")
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(4, 2, 8))
    with pytest.raises(ValueError, match="Expected 9, got 8"):
        model.cell(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="Expected 9, got 8"):
        model(torch.zeros(4, 8))


@pytest.mark.parametrize(
    "field", ["memory", "read_weights", "write_weights", "read_vectors", "controller[0]"]
)
def test_state_of_the_wrong_shape_names_the_field(field) -> None:
    model = small_ntm()
    state = model.initial_state(2)
    fields = dict(zip(NTMState._fields, state, strict=True))
    if field == "controller[0]":
        hidden, cell = state.controller
        fields["controller"] = (hidden[:, :, :5], cell)
    else:
        fields[field] = fields[field][..., :5]
    bad = NTMState(**fields)
    with pytest.raises(ValueError, match=re.escape(f"state.{field} must have shape")):
        model(torch.zeros(3, 2, 9), bad)
    with pytest.raises(ValueError, match=re.escape(f"state.{field} must have shape")):
        model.cell(torch.zeros(2, 9), bad)


def test_state_of_another_batch_size_or_controller_is_rejected() -> None:
    model = small_ntm()
    with pytest.raises(ValueError, match=re.escape("state.memory must have shape (2, 16, 8)")):
        model(torch.zeros(3, 2, 9), model.initial_state(3))
    feedforward_state = small_ntm(controller="feedforward").initial_state(2)
    with pytest.raises(ValueError, match="state.controller must hold 2 tensors .* got 0"):
        model(torch.zeros(3, 2, 9), feedforward_state)
    with pytest.raises(ValueError, match="state must be an NTMState, got tuple"):
        model(torch.zeros(3, 2, 9), tuple(model.initial_state(2)))


@pytest.mark.parametrize(
    ("dtype", "fixes"),
    [
        (torch.float64, "convert the model with model.double() or the input with input.float()"),
        (torch.float16, "convert the model with model.half() or the input with input.float()"),
        (torch.int64, "convert the input with input.float()"),
    ],
)
def test_input_of_another_dtype_is_rejected(dtype, fixes) -> None:
    model = small_ntm()
    message = f"input has dtype {dtype} but the model's parameters are torch.float32; {fixes}"
    for run in (model, model.trace):
        with pytest.raises(ValueError, match=re.escape(message)):
            run(torch.zeros(3, 2, 9, dtype=dtype))
        with pytest.raises(ValueError, match=re.escape(message)):
            run(torch.zeros(3, 9, dtype=dtype))  # unbatched
    with pytest.raises(ValueError, match=re.escape(message)):
        model.cell(torch.zeros(2, 9, dtype=dtype))
    double = small_ntm(dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape("model with model.float() or the input with "
                                                   "input.double()")):  # fmt: skip
        double(torch.zeros(3, 2, 9))
    # The fixes the message gives work.
    assert model.double()(torch.zeros(3, 2, 9, dtype=torch.float64))[0].dtype == torch.float64


def test_state_of_another_dtype_is_rejected() -> None:
    model = small_ntm()
    state = model.initial_state(2)
    bad = state._replace(memory=state.memory.double())
    message = "state.memory must have the model's dtype torch.float32, got torch.float64"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(torch.zeros(3, 2, 9), bad)
    bad = state._replace(controller=(state.controller[0], state.controller[1].half()))
    with pytest.raises(ValueError, match=re.escape("state.controller[1] must have the model's")):
        model.cell(torch.zeros(2, 9), bad)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"controller": "gru"}, "controller must be one of ['feedforward', 'lstm'], got 'gru'"),
        (
            {"memory_init": "zeros"},
            "memory_init must be one of ['constant', 'learned', 'random'], got 'zeros'",
        ),
        ({"memory_slots": 0}, "memory_slots must be a positive integer, got 0"),
        ({"read_heads": 0}, "read_heads must be a positive integer, got 0"),
        ({"controller_size": 2.5}, "controller_size must be a positive integer, got 2.5"),
        ({"shift_range": 8}, "0 <= 2 * shift_range < memory_slots, got 8 with memory_slots=16"),
        ({"shift_range": -1}, "got -1"),
    ],
)
def test_bad_constructor_arguments_are_rejected(arguments, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        NTM(9, 8, **{**SMALL, **arguments})
    with pytest.raises(ValueError, match=re.escape(message)):
        NTMCell(9, 8, **{**SMALL, **arguments})


def test_a_bool_is_not_a_head_count() -> None:
    with pytest.raises(ValueError, match="read_heads must be a positive integer, got True"):
        NTM(9, 8, **SMALL, read_heads=True)


# -- numerics and training --------------------------------------------------------------------


@FUSED
def test_a_thousand_steps_give_no_nan_or_inf(fused) -> None:
    model = small_ntm(fused=fused)
    torch.manual_seed(1)
    x = torch.randn(1000, 2, 9)
    targets = torch.randint(0, 2, (1000, 2, 8)).float()
    logits, state = model(x)
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(t).all() for t in state_fields(state))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
def test_detach_gives_the_same_values_without_a_graph(controller, unbatched) -> None:
    model = small_ntm(controller=controller)
    x = torch.randn(5, 9) if unbatched else torch.randn(5, 2, 9)
    _, state = model(x)
    assert all(t.grad_fn is not None for t in state_fields(state))
    detached = state.detach()
    assert isinstance(detached, NTMState) and isinstance(detached.controller, tuple)
    assert len(detached.controller) == (2 if controller == "lstm" else 0)
    assert_states_close(detached, state, rtol=0, atol=0)
    for tensor in state_fields(detached):
        assert not tensor.requires_grad and tensor.grad_fn is None
    assert all(t.grad_fn is not None for t in state_fields(state))  # the original is kept


@FUSED
def test_truncated_backpropagation_with_a_detached_state(fused) -> None:
    model = small_ntm(fused=fused)
    x = torch.randn(6, 2, 9)
    logits, state = model(x[:3])
    logits.sum().backward()  # frees the first chunk's graph
    model.zero_grad()
    logits, _ = model(x[3:], state.detach())
    logits.sum().backward()  # would backpropagate into the freed graph without detach
    # The gradient is that of the second chunk alone, started from the state as a constant.
    expected = small_ntm(fused=fused)  # the same parameters (the same seed)
    constant = NTMState(
        *(t.detach().clone() for t in state[:4]),
        tuple(t.detach().clone() for t in state.controller),
    )
    expected(x[3:], constant)[0].sum().backward()
    for (name, p), q in zip(model.named_parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("memory_init", ["constant", "learned", "random"])
def test_float64_model_works(memory_init) -> None:
    model = small_ntm(memory_init=memory_init, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    logits, state = model(torch.randn(4, 2, 9, dtype=torch.float64))
    assert logits.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in state_fields(state))
    logits.sum().backward()


def copy_batch(seed: int, length: int = 3, batch: int = 8):
    """A fixed copy-task batch (the paper's format): L bit vectors, a delimiter on channel 8, L
    blanks."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (length, batch, 8), generator=g).float()
    x = torch.zeros(2 * length + 1, batch, 9)
    x[:length, :, :8] = bits
    x[length, :, 8] = 1.0
    return x, bits


@FUSED
def test_a_few_rmsprop_steps_lower_the_loss_on_a_fixed_batch(fused) -> None:
    model = small_ntm(fused=fused)
    x, bits = copy_batch(seed=0)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        logits, _ = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[-3:], bits)
        loss.backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.01, losses


# -- parameters and repr ----------------------------------------------------------------------


def expected_parameter_count(
    input_size,
    output_size,
    *,
    controller="lstm",
    controller_size=100,
    controller_layers=1,
    memory_slots=128,
    memory_width=20,
    read_heads=1,
    write_heads=1,
    shift_range=1,
    memory_init="constant",
) -> int:
    c, layers, m = controller_size, controller_layers, memory_width
    reads = read_heads * m
    gates = 4 * c if controller == "lstm" else c
    recurrent = c if controller == "lstm" else 0
    # Layer 0: weight on the input and on [reads, own hidden]; later layers on [below, own
    # hidden]; one bias per layer.
    controller_count = gates * input_size + gates * (reads + recurrent) + gates * layers
    controller_count += (layers - 1) * gates * (c + recurrent)
    heads = read_heads + write_heads
    head_outputs = heads * (m + 3 + 2 * shift_range + 1) + 2 * write_heads * m
    head_count = head_outputs * (c + 1)
    output_count = output_size * (c + reads + 1)
    initial = reads + (memory_slots * m if memory_init == "learned" else 0)
    return controller_count + head_count + output_count + initial


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_of_the_default_copy_models() -> None:
    # LSTM: controller 4*100*9 + 4*100*(20 + 100) + 400 = 52,000; heads 92*101 = 9,292;
    # output 8*121 = 968; initial reads 20. (The paper's table gives 67,561.)
    assert count(NTM(9, 8)) == 62_280
    # Feedforward: 100*9 + 100*20 + 100 = 3,000, + 9,292 + 968 + 20. (Paper: 17,162.)
    assert count(NTM(9, 8, controller="feedforward")) == 13_280


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"controller": "feedforward"},
        {"controller_layers": 2, "read_heads": 2, "write_heads": 3, "shift_range": 2},
        {"controller": "feedforward", "controller_layers": 3, "memory_init": "learned"},
    ],
)
def test_parameter_count_formula(arguments) -> None:
    arguments = {**SMALL, **arguments}
    assert count(NTM(10, 9, **arguments)) == expected_parameter_count(10, 9, **arguments)


def test_extra_repr_shows_the_non_default_arguments() -> None:
    assert NTMCell(9, 8).extra_repr() == "9, 8"
    assert NTM(9, 8).extra_repr() == ""
    model = NTM(
        9, 8, controller="feedforward", memory_slots=32, memory_init="random", batch_first=True
    )
    assert model.extra_repr() == "batch_first=True"
    assert NTM(9, 8, fused=False).extra_repr() == "backend='autograd'"
    assert NTM(9, 8, backend="python").extra_repr() == "backend='python'"
    assert model.cell.extra_repr() == (
        "9, 8, controller='feedforward', memory_slots=32, memory_init='random'"
    )
    text = repr(model)
    assert "batch_first=True" in text and "memory_slots=32" in text
    assert "memory_width" not in text.split("(cell)")[1].split("\n")[0]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(ntm.model, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0
