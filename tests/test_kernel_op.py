"""The C++ kernel as torch operators (ntm/backends/kernel.py): ``torch.ops.ntm.sequence_forward``
and ``sequence_backward``, their fake implementations and autograd formula, and what they make
possible: ``torch.compile(fullgraph=True)`` and ``torch.export`` of a model on the kernel.

The kernel's numbers against the Python node and plain autograd are tests/test_fused.py's and
tests/test_parity.py's; here the operator path is checked against the eager node and autograd.
"""

import subprocess
import sys

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch.utils._python_dispatch import TorchDispatchMode

import ntm
from ntm import kernel

# One small model for every test: 2 read heads and 1 write head, 3 shifts.
SIZES = {"memory_slots": 6, "memory_width": 3, "controller_size": 4, "read_heads": 2}
CONTROLLERS = [("lstm", 1), ("lstm", 2), ("feedforward", 1), ("feedforward", 2)]
TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-10},
              torch.float32: {"atol": 1e-5, "rtol": 1e-5}}


@pytest.fixture(autouse=True)
def built():
    if kernel.load() is None:
        pytest.skip(f"the kernel cannot be built here: {kernel.failure()}")


def _model(controller="lstm", layers=1, dtype=torch.float64, backend="kernel"):
    torch.manual_seed(0)
    return ntm.NTM(5, 4, controller=controller, controller_layers=layers, dtype=dtype,
                   backend=backend, **SIZES)


def _op_inputs(controller, layers, dtype, requires_grad=True, batch_sizes=()):
    """The operator's inputs for a sequence of 3 steps at batch 2, from a model's parameters
    (``batch_sizes``: per step, the sequences still running; ``()``: both, every step)."""
    model = _model(controller, layers, dtype)
    cell, generator = model.cell, torch.Generator().manual_seed(1)
    lstm = controller == "lstm"
    batch, hidden, slots = 2, SIZES["controller_size"], SIZES["memory_slots"]
    width, reads, heads = SIZES["memory_width"], SIZES["read_heads"], SIZES["read_heads"] + 1

    def random(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    focus = torch.softmax(random(batch, heads, slots), dim=-1)  # (B, H, N), rows sum to 1
    tensors = [random(3, batch, (4 if lstm else 1) * hidden), random(batch, slots, width), focus,
               random(batch, reads * width)]
    state = [random(batch, hidden) for _ in range(2 * layers if lstm else 0)]
    weights = [w.detach().clone() for w in cell.controller.layer_weights]
    rest = [t.detach().clone() for t in (cell.controller.bias, *cell.interface.parameters())]
    for tensor in [*tensors, *state, *weights, *rest]:
        tensor.requires_grad_(requires_grad)
    layout = cell.access.layout
    return (*tensors, state, weights, *rest, hidden, reads, 1, layout.shifts, lstm,
            kernel._CONSTANTS, list(batch_sizes))


def _cases():
    return [pytest.param(c, n, d, id=f"{c}-{n}-{str(d)[6:]}") for c, n in CONTROLLERS
            for d in (torch.float64, torch.float32)]


# -- the operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(("controller", "layers", "dtype"), _cases())
def test_opcheck_of_the_forward_operator(controller, layers, dtype):
    """Schema, fake implementation against the real one, autograd registration, and
    AOTAutograd's trace of forward and backward (dynamic shapes) against eager."""
    torch.library.opcheck(torch.ops.ntm.sequence_forward.default,
                          _op_inputs(controller, layers, dtype))


@pytest.mark.parametrize(("controller", "layers", "dtype"), _cases()[::3])
def test_opcheck_with_sequences_of_different_lengths(controller, layers, dtype):
    """The same with batch_sizes (lengths 3 and 1): sequences that end before the last step."""
    torch.library.opcheck(torch.ops.ntm.sequence_forward.default,
                          _op_inputs(controller, layers, dtype, batch_sizes=[2, 1, 1]))


@pytest.mark.parametrize(("controller", "layers", "dtype"), _cases()[::3])
def test_opcheck_of_the_backward_operator(controller, layers, dtype):
    args = _op_inputs(controller, layers, dtype, requires_grad=False)
    results = torch.ops.ntm.sequence_forward(*args)
    state, weights, head_weight = args[4], args[5], args[7]
    n_state, generator = len(state), torch.Generator().manual_seed(2)
    grads = [torch.randn(t.shape, generator=generator, dtype=dtype)
             for t in (results[0], results[1], *results[3 : 6 + n_state])]
    backward_args = (results[6 + n_state :], args[2], results[2], results[0], weights,
                     head_weight, *grads[:5], grads[5:], *args[9:])
    torch.library.opcheck(torch.ops.ntm.sequence_backward.default, backward_args)


@pytest.mark.parametrize(("controller", "layers"), CONTROLLERS)
def test_the_forward_returns_the_documented_shapes(controller, layers):
    """Re-derived: the sequence, the final state, then 10 per-step buffers and 5 (LSTM) or 2
    (feedforward) per layer, every one [T, B, ...], none an alias of another or of an input."""
    args = _op_inputs(controller, layers, torch.float64, requires_grad=False)
    results = torch.ops.ntm.sequence_forward(*args)
    steps, batch, n_state = 3, 2, len(args[4])
    assert len(results) == 6 + n_state + 10 + layers * (5 if controller == "lstm" else 2)
    assert [tuple(t.shape) for t in results[:6]] == [
        (steps, batch, 4), (steps, batch, 6), (steps, batch, 3, 6), (batch, 6, 3), (batch, 3, 6),
        (batch, 6)]
    assert all(t.shape[:2] == (steps, batch) for t in results[6 + n_state :])
    assert [tuple(t.shape) for t in results] == kernel.forward_shapes(
        args[0], args[1], args[2], args[4], args[5], args[7], 4, 2, controller == "lstm")
    storages = [t.untyped_storage().data_ptr() for t in results]
    inputs = {t.untyped_storage().data_ptr() for t in (*args[:4], *args[4], *args[5], *args[6:9])}
    assert len(set(storages)) == len(storages) and not inputs & set(storages)


def test_a_one_slot_wide_memory_is_returned_as_its_own_tensor():
    """memory_width 1: the kernel's transposed last memory is a view of the saved memories,
    which an operator may not return; the forward copies it."""
    model = ntm.NTM(3, 2, memory_slots=4, memory_width=1, controller_size=4, backend="kernel",
                    dtype=torch.float64)
    with _ThroughTheOperator():
        logits, state = model(torch.randn(3, 2, 3, dtype=torch.float64))
    (logits.sum() + state.memory.sum()).backward()
    assert "ntm_sequence_forward" in type(state.memory.grad_fn).__name__


def test_importing_registers_the_operators_without_building_the_kernel():
    code = ("import torch, ntm; from ntm.backends import kernel; "
            "print(torch.ops.ntm.sequence_forward.default._schema.name, kernel.status())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "ntm::sequence_forward not loaded yet"


# -- the model through the operator --------------------------------------------------------------


class _ThroughTheOperator(TorchDispatchMode):
    """Passes every operation on unchanged. Under a dispatch mode (make_fx, fake tensors) the
    kernel runs as the operator, so that the mode sees it: this one makes eager take that
    path."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _results(model, inputs, state, through_operator=False):
    """Logits, final state and the gradients of every parameter, the input and the state."""
    inputs = inputs.clone().requires_grad_()
    state = ntm.NTMState(*(t.detach().clone().requires_grad_() for t in state[:4]),
                         tuple(t.detach().clone().requires_grad_() for t in state.controller))
    if through_operator:
        with _ThroughTheOperator():
            logits, final = model(inputs, state)
    else:
        logits, final = model(inputs, state)
    fields = [*final[:4], *final.controller]
    loss = logits.pow(2).sum() + sum((i + 1) * t.sin().sum() for i, t in enumerate(fields))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    grads += [inputs.grad, *(t.grad for t in state[:4]), *(t.grad for t in state.controller)]
    node = type(final.memory.grad_fn).__name__
    return [logits, *fields], grads, node


@pytest.mark.parametrize(("controller", "layers"), CONTROLLERS)
def test_the_operator_gives_the_numbers_of_the_eager_node_and_of_autograd(controller, layers):
    """float64, 1e-10: outputs, every field of the final state, and the gradients of the
    parameters, the input and a given state."""
    inputs = torch.randn(4, 2, 5, dtype=torch.float64)
    state = _model(controller, layers).initial_state(2)
    state = state._replace(memory=torch.randn_like(state.memory))
    operator = _results(_model(controller, layers), inputs, state, through_operator=True)
    eager = _results(_model(controller, layers), inputs, state)
    plain = _results(_model(controller, layers, backend="autograd"), inputs, state)
    assert "ntm_sequence_forward" in operator[2] and eager[2] == "_KernelSequenceBackward"
    for other in (eager, plain):
        for a, b in zip(operator[0] + operator[1], other[0] + other[1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_a_second_derivative_through_the_operator_raises_instead_of_being_wrong():
    model = _model()
    with _ThroughTheOperator():
        logits, _ = model(torch.randn(3, 2, 5, dtype=torch.float64))
    (gradient,) = torch.autograd.grad(logits.pow(2).sum(), model.cell.interface.weight,
                                      create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gradient.sum().backward()


# -- torch.compile and torch.export ----------------------------------------------------------------


def _graph_targets(into):
    """An AOTAutograd backend that records the targets of the forward and backward graphs."""

    def record(graph_module, example_inputs):
        into.append({str(node.target) for node in graph_module.graph.nodes})
        return make_boxed_func(graph_module.forward)

    return aot_autograd(fw_compiler=record, bw_compiler=record)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compile_fullgraph_runs_the_kernel_forward_and_backward(dtype):
    """One graph (fullgraph=True) on the default backend, with gradients: the forward graph
    holds the forward operator, the backward graph the backward one, and the numbers are
    eager's. (AOTAutograd without inductor's code generation, to keep the test short.)"""
    model = _model(dtype=dtype, backend="auto")
    inputs = torch.randn(4, 2, 5, dtype=dtype)
    graphs = []
    compiled = torch.compile(model, fullgraph=True, backend=_graph_targets(graphs))
    logits, state = compiled(inputs)
    (logits.pow(2).sum() + state.memory.sum()).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert len(graphs) == 2
    assert "ntm.sequence_forward.default" in graphs[0]
    assert "ntm.sequence_backward.default" in graphs[1]
    model.zero_grad()
    expected, expected_state = model(inputs)
    (expected.pow(2).sum() + expected_state.memory.sum()).backward()
    torch.testing.assert_close(logits, expected, **TOLERANCES[dtype])
    torch.testing.assert_close(state.memory, expected_state.memory, **TOLERANCES[dtype])
    for grad, parameter in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, parameter.grad, **TOLERANCES[dtype])


def test_export_with_gradients_takes_the_kernel_as_one_operator():
    """Exported with gradients on (the default), the graph holds the kernel once, for any
    length and batch; its module gives the model's logits and gradients."""
    model = _model(backend="auto")
    steps, batch = torch.export.Dim("steps", min=1), torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.randn(4, 2, 5, dtype=torch.float64),),
                                  dynamic_shapes=({0: steps, 1: batch},))
    targets = [str(node.target) for node in program.graph.nodes]
    assert targets.count("ntm.sequence_forward.default") == 1
    inputs = torch.randn(7, 3, 5, dtype=torch.float64)
    exported = program.module()
    logits, _ = exported(inputs)
    logits.pow(2).sum().backward()
    expected, _ = model(inputs)
    expected.pow(2).sum().backward()
    torch.testing.assert_close(logits, expected, atol=1e-12, rtol=0)
    grads = {name.removeprefix("cell."): p.grad for name, p in exported.named_parameters()}
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(grads[name.removeprefix("cell.")], parameter.grad,
                                   atol=1e-10, rtol=1e-10)


def test_export_without_gradients_takes_the_plain_loop():
    """Under torch.no_grad every backend runs the plain loop: the graph is the steps unrolled."""
    model = _model(backend="auto")
    with torch.no_grad():
        program = torch.export.export(model, (torch.randn(3, 2, 5, dtype=torch.float64),))
    targets = [str(node.target) for node in program.graph.nodes]
    assert not any(target.startswith("ntm.") for target in targets)
