"""The DNC's C++ CPU kernel (ntm/backends/dnc_kernel.py) against plain autograd.

Every result (logits, every field of the final state, the trace) and every gradient (of the
parameters, the input and a given starting state) equals ``backend="autograd"`` to 1e-10 in
float64, for LSTM and feedforward controllers of one and two layers, one and two read heads,
batches of 1 and 5 (the controller's scalar and vectorised paths); a gradcheck of a whole
sequence; sequences of different lengths (the registry's per-segment fallback); the
configurations it does not run fall back to autograd.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from helpers import node_names
from torch.nn.utils.rnn import pack_sequence

import ntm
from ntm import backends
from ntm.backends import dnc_kernel, kernel

pytestmark = pytest.mark.skipif(dnc_kernel.load() is None,
                                reason=f"the kernel cannot be built here: {dnc_kernel.failure()}")

F64 = {"atol": 1e-10, "rtol": 1e-10}


def _flat(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for field in state for t in _flat(field)]


def _rebuild(template, leaves):
    if isinstance(template, torch.Tensor):
        return next(leaves)
    fields = [_rebuild(field, leaves) for field in template]
    return type(template)(*fields) if hasattr(template, "_fields") else type(template)(fields)


def _model(backend, dtype=torch.float64, **options):
    torch.manual_seed(0)
    sizes = {"controller_size": 6, "memory_slots": 7, "memory_width": 4, **options}
    return ntm.DNC(5, 3, dtype=dtype, backend=backend, **sizes)


def _start_state(model, batch, dtype):
    """A non-trivial starting state (the model's own after a few steps), as leaves."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        _, state = model(torch.randn(4, batch, 5, generator=generator, dtype=dtype))
    leaves = [t.detach().clone().requires_grad_() for t in _flat(state)]
    return _rebuild(state, iter(leaves)), leaves


def _results(backend, batch, given_state, dtype=torch.float64, **options):
    """Logits, final state, trace and the gradients of a loss that reaches all of them."""
    model = _model(backend, dtype, **options)
    inputs = torch.randn(6, batch, 5, dtype=dtype, generator=torch.Generator().manual_seed(1))
    inputs.requires_grad_()
    state, leaves = _start_state(model, batch, dtype) if given_state else (None, [])
    logits, final, trace = model.trace(inputs, state)
    loss = logits.sin().sum() + sum((t * (i + 1)).pow(2).sum()
                                    for i, t in enumerate(_flat(final)))
    grads = torch.autograd.grad(loss, [*model.parameters(), inputs, *leaves], allow_unused=True)
    return [logits, *_flat(final)], _flat(trace), grads, node_names(logits)


def _assert_all_close(first, second, **tolerance):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("read_heads", [1, 2])
@pytest.mark.parametrize("batch, given_state", [(1, False), (5, True)])
def test_the_kernel_equals_autograd_in_float64(controller, layers, read_heads, batch,
                                               given_state):
    options = {"controller": controller, "controller_layers": layers, "read_heads": read_heads}
    values, trace, grads, names = _results("kernel", batch, given_state, **options)
    expected_values, expected_trace, expected_grads, _ = _results("autograd", batch,
                                                                  given_state, **options)
    assert "_DNCKernelSequenceBackward" in names
    _assert_all_close(values, expected_values, **F64)
    _assert_all_close(trace, expected_trace, **F64)
    _assert_all_close(grads, expected_grads, **F64)


def test_float32_rounds_like_autograd():
    values, _, grads, _ = _results("kernel", 5, True, dtype=torch.float32, read_heads=2)
    expected_values, _, expected_grads, _ = _results("autograd", 5, True, dtype=torch.float32,
                                                     read_heads=2)
    _assert_all_close(values, expected_values, atol=2e-5, rtol=2e-4)
    _assert_all_close(grads, expected_grads, atol=2e-5, rtol=2e-4)


def test_gradcheck_of_a_whole_sequence():
    model = _model("kernel", read_heads=2, memory_slots=5, memory_width=3, controller_size=4)
    inputs = torch.randn(4, 2, 5, dtype=torch.float64, requires_grad=True)
    start = model.initial_state(2)
    memory = (0.3 * torch.randn(2, 5, 3, dtype=torch.float64)).requires_grad_()

    def run(inputs, memory):
        logits, state = model(inputs, start._replace(access=start.access._replace(memory=memory)))
        return logits, state.access.link, state.access.usage, state.access.memory

    assert torch.autograd.gradcheck(run, (inputs, memory), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
def test_sequences_of_different_lengths_equal_autograd(packed):
    lengths = [6, 2, 4, 0, 6]
    results = []
    for backend in ("kernel", "autograd"):
        model = _model(backend, read_heads=2)
        inputs = torch.randn(6, 5, 5, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(3)).requires_grad_()
        if packed:
            present = [inputs[:n, b] for b, n in enumerate(lengths) if n]
            output, final = model(pack_sequence(present, enforce_sorted=False))
            logits = output.data
        else:
            logits, final = model(inputs, lengths=lengths)
        loss = logits.cos().sum() + sum(t.square().sum() for t in _flat(final))
        grads = torch.autograd.grad(loss, [*model.parameters(), inputs], allow_unused=True)
        results.append(([logits, *_flat(final)], grads))
    _assert_all_close(results[0][0], results[1][0], **F64)
    _assert_all_close(results[0][1], results[1][1], **F64)


def test_split_runs_equal_one_run():
    model = _model("kernel")
    inputs = torch.randn(7, 3, 5, dtype=torch.float64)
    whole, state = model(inputs)
    first, middle = model(inputs[:3])
    second, split_state = model(inputs[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), whole, **F64)
    _assert_all_close(_flat(split_state), _flat(state), **F64)


@pytest.mark.parametrize("options", [{"write_heads": 2}, {"content_masking": True},
                                     {"deallocation": True}, {"link_sharpness": True}],
                         ids=lambda options: next(iter(options)))
def test_configurations_it_does_not_run_fall_back_to_autograd(options):
    model = _model("auto", **options)
    assert backends.choices(model.cell.access) == ["auto", "autograd"]
    assert dnc_kernel.unsupported(model.cell.access) is not None
    logits, _ = model(torch.randn(3, 2, 5, dtype=torch.float64))
    assert "_DNCKernelSequenceBackward" not in node_names(logits)
    with pytest.raises(ValueError, match="backend must be one of"):
        _model("kernel", **options)


def test_auto_runs_the_kernel_and_falls_back_where_it_cannot():
    model = _model("auto")
    assert backends.choices(model.cell.access) == ["auto", "kernel", "autograd"]
    assert "_DNCKernelSequenceBackward" in node_names(model(torch.zeros(2, 1, 5,
                                                                         dtype=torch.float64))[0])
    assert dnc_kernel.unavailable(torch.zeros(2, 1, 5, dtype=torch.bfloat16)) is not None
    kernel.set_enabled(False)
    try:
        assert "switched off" in dnc_kernel.unavailable(torch.zeros(2, 1, 5))
        logits, _ = model(torch.zeros(2, 1, 5, dtype=torch.float64))
        assert "_DNCKernelSequenceBackward" not in node_names(logits)
    finally:
        kernel.set_enabled(True)


def test_reused_buffers_give_the_same_numbers_and_a_second_backward_works():
    """The forward's buffers go back to a pool once a graph is freed; a graph still held
    (retain_graph) keeps its own."""
    model = _model("kernel", read_heads=2)
    inputs = torch.randn(5, 3, 5, dtype=torch.float64)
    first = torch.autograd.grad(model(inputs)[0].sum(), list(model.parameters()))
    logits, _ = model(inputs)
    once = torch.autograd.grad(logits.sum(), list(model.parameters()), retain_graph=True)
    model(2 * inputs)[0].sum().backward()  # another graph of the same shapes in between
    twice = torch.autograd.grad(logits.sum(), list(model.parameters()))
    _assert_all_close(once, first, atol=0, rtol=0)
    _assert_all_close(twice, first, atol=0, rtol=0)


def test_two_threads_give_the_numbers_of_one():
    results = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            model = _model("kernel", read_heads=2)
            logits, _ = model(torch.randn(4, 6, 5, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(2)))
            results.append([logits, *torch.autograd.grad(logits.sum(), list(model.parameters()))])
        finally:
            torch.set_num_threads(before)
    _assert_all_close(results[0], results[1], atol=1e-13, rtol=1e-12)


def test_models_in_two_python_threads_at_once():
    errors = []

    def train():
        try:
            model = _model("kernel")
            for _ in range(3):
                model(torch.randn(4, 2, 5, dtype=torch.float64))[0].sum().backward()
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=train) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    def no_compiler():
        raise RuntimeError("Error building extension\nc++: not found")

    monkeypatch.setattr(dnc_kernel.EXTENSION, "build", no_compiler)
    monkeypatch.setattr(dnc_kernel.EXTENSION, "module", None)
    monkeypatch.setattr(dnc_kernel.EXTENSION, "reason", None)
    with pytest.warns(RuntimeWarning, match="could not be built.*c\\+\\+: not found"):
        assert dnc_kernel.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert "could not be built" in dnc_kernel.unavailable(torch.zeros(2, 1, 5))
        logits, _ = _model("auto")(torch.zeros(2, 1, 5, dtype=torch.float64))
    assert "_DNCKernelSequenceBackward" not in node_names(logits)
    logits.sum().backward()


def test_tracers_get_the_plain_loop(monkeypatch):
    """torch.compile, torch.export and make_fx trace plain autograd: the kernel is no operator
    they can see through (a compiled DNC was checked by hand to equal the eager one)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert dnc_kernel.unavailable(torch.zeros(2, 1, 5)) is None
    with FakeTensorMode():
        assert "not traced" in dnc_kernel.unavailable(torch.zeros(2, 1, 5))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert "not traced" in dnc_kernel.unavailable(torch.zeros(2, 1, 5))


@pytest.mark.parametrize("sizes", [{"memory_width": 1}, {"memory_slots": 1}], ids=["M=1", "N=1"])
def test_a_detached_final_state_is_not_changed_by_the_next_call(sizes):
    """Truncated backpropagation: the state is detached and fed back, while the buffers of
    its graph go back to the pool (the final memory is a copy even where N or M is 1)."""
    model = _model("kernel", **sizes)
    inputs = torch.randn(3, 2, 5, dtype=torch.float64)
    logits, state = model(inputs)
    logits.sum().backward()
    state = state.detach()
    kept = [t.clone() for t in _flat(state)]
    del logits
    model(2 * inputs)[0].sum().backward()
    _assert_all_close(_flat(state), kept, atol=0, rtol=0)


def test_no_double_backward():
    model = _model("kernel")
    inputs = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(inputs)[0].sum(), inputs, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|twice"):
        grad.sum().backward()
