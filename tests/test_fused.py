"""The NTM's fast backends (hand-written backpropagation through time) against plain autograd.

Every test runs twice: with the C++ CPU kernel (ntm/backends/kernel.py, the default on a CPU)
and with the Python node of ntm/backends/python.py (the path on other devices and where the
kernel cannot be built), chosen by ``backend="auto"`` with the kernel switched on or off.
tests/test_parity.py runs every registered backend of every access by name.
"""

import gc
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ntm
from ntm import kernel


@pytest.fixture(autouse=True, params=["kernel", "python"])
def fused_node(request):
    """Which implementation of the fused node the test runs."""
    enabled = kernel.is_enabled()
    kernel.set_enabled(request.param == "kernel")
    yield request.param
    kernel.set_enabled(enabled)


CONFIGS = [
    {},
    {"controller": "feedforward"},
    {"controller": "feedforward", "controller_layers": 2, "read_heads": 2, "write_heads": 3},
    {"controller_layers": 2, "read_heads": 1, "write_heads": 2, "shift_range": 2},
    {"memory_init": "learned", "read_heads": 3, "write_heads": 1},
    # Tiny sizes: a shift that wraps the whole memory, rows of one number, a controller of one.
    {"memory_slots": 3, "memory_width": 1, "controller_size": 1},
    {"memory_slots": 5, "shift_range": 2, "write_heads": 4, "controller": "feedforward",
     "controller_layers": 3},
]


def _tiny(dtype=torch.float64, **overrides):
    arguments = dict(memory_slots=12, memory_width=6, controller_size=7, dtype=dtype)
    arguments.update(overrides)
    return ntm.NTM(5, 4, **arguments)


def _loss_of_everything(logits, state):
    """A loss that reaches every output of the sequence, the final state included."""
    loss = logits.sin().sum() + state.memory.pow(2).sum() + state.read_vectors.sum()
    loss = loss + state.write_weights.pow(2).sum() + state.read_weights[..., 0].sum()
    return loss + sum(t.pow(2).sum() for t in state.controller)


def _outputs_and_gradients(model, inputs, state, fused):
    model.fused = fused
    logits, final = model(inputs, state)
    leaves = [*model.parameters(), inputs]
    if state is not None:
        leaves += [t for t in (*state[:4], *state.controller) if t.requires_grad]
    gradients = torch.autograd.grad(_loss_of_everything(logits, final), leaves, allow_unused=True)
    return logits, final, gradients


def _state_with_gradients(model, batch_size):
    generator = torch.Generator().manual_seed(3)
    state = model.initial_state(batch_size)

    def randomised(t):
        return (t + 0.1 * torch.randn(t.shape, generator=generator, dtype=t.dtype)).requires_grad_()

    weights = [torch.softmax(randomised(t), -1).detach().requires_grad_() for t in state[1:3]]
    return ntm.NTMState(
        randomised(state.memory.detach()),
        *weights,
        randomised(state.read_vectors.detach()),
        tuple(randomised(t) for t in state.controller),
    )


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("batch", [1, 5])  # the kernel treats a batch of 4 or more differently
def test_fused_matches_plain_autograd(config, given_state, batch):
    torch.manual_seed(0)
    model = _tiny(**config)
    inputs = torch.randn(9, batch, 5, dtype=torch.float64, requires_grad=True)
    state = _state_with_gradients(model, batch) if given_state else None
    fused = _outputs_and_gradients(model, inputs, state, fused=True)
    plain = _outputs_and_gradients(model, inputs, state, fused=False)
    torch.testing.assert_close(fused[0], plain[0], atol=1e-12, rtol=0)
    for a, b in zip(fused[1][:4], plain[1][:4], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for a, b in zip(fused[2], plain[2], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(
    steps=st.integers(1, 6),
    batch=st.integers(1, 6),  # the kernel treats a batch of 4 or more differently
    reads=st.integers(1, 3),
    writes=st.integers(1, 3),
    shift_range=st.integers(0, 2),
    lstm=st.booleans(),
)
def test_fused_matches_plain_on_random_shapes(steps, batch, reads, writes, shift_range, lstm):
    torch.manual_seed(steps * 100 + batch)
    model = _tiny(
        read_heads=reads,
        write_heads=writes,
        shift_range=shift_range,
        controller="lstm" if lstm else "feedforward",
    )
    inputs = torch.randn(steps, batch, 5, dtype=torch.float64, requires_grad=True)
    fused = _outputs_and_gradients(model, inputs, None, fused=True)
    plain = _outputs_and_gradients(model, inputs, None, fused=False)
    torch.testing.assert_close(fused[0], plain[0], atol=1e-12, rtol=0)
    for a, b in zip(fused[2], plain[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_fused_node_passes_gradcheck():
    torch.manual_seed(1)
    model = _tiny(memory_slots=6, memory_width=3, controller_size=4, read_heads=2, write_heads=2)
    names = [name for name, _ in model.named_parameters()]
    parameters = [p.detach().clone().requires_grad_() for p in model.parameters()]
    inputs = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)

    def run(inputs, *parameters):
        values = dict(zip(names, parameters, strict=True))
        logits, state = torch.func.functional_call(model, values, (inputs,))
        return logits, state.memory, state.write_weights

    assert torch.autograd.gradcheck(run, (inputs, *parameters), eps=1e-6, atol=1e-6, fast_mode=True)


def test_fused_is_the_default_and_used_only_with_gradients(monkeypatch, fused_node):
    model = _tiny(dtype=torch.float32)
    assert model.fused
    calls = []
    original = ntm.backends.choose
    monkeypatch.setattr(ntm.backends, "choose",
                        lambda *a: calls.append(original(*a)) or calls[-1])
    inputs = torch.randn(4, 2, 5)
    with torch.no_grad():
        expected, _ = model(inputs)
    assert not calls
    logits, _ = model(inputs)
    assert [backend.name for backend in calls] == [fused_node]  # auto: kernel where it is on
    torch.testing.assert_close(logits, expected)


def test_fused_trace_equals_plain_trace():
    model = _tiny()
    inputs = torch.randn(5, 2, 5, dtype=torch.float64)
    _, _, fused = model.trace(inputs)
    model.fused = False
    _, _, plain = model.trace(inputs)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_fused_stays_finite_with_zero_keys_and_memory():
    """A zero memory and saturated parameters must not give NaN gradients."""
    model = _tiny(dtype=torch.float32)
    with torch.no_grad():
        model.cell.interface.weight.mul_(1000.0)
    state = model.initial_state(2)
    state = state._replace(memory=torch.zeros_like(state.memory))
    logits, final = model(torch.randn(20, 2, 5) * 10, state)
    (logits.sum() + final.memory.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fused_node_frees_what_it_saved(fused_node):
    """The final state must not alias a saved tensor: that cycle leaked every step's graph."""
    model = _tiny(dtype=torch.float32)
    logits, state = model(torch.randn(4, 2, 5))
    node = state.memory.grad_fn
    if fused_node == "kernel":
        assert type(node).__name__ == "_KernelSequenceBackward"
        parameters = {p.data_ptr() for p in model.parameters()}
        watched = [weakref.ref(t) for t in node.saved_tensors if t.data_ptr() not in parameters]
        assert len(watched) > 10
    else:
        assert type(node).__name__ == "_FusedSequenceBackward"
        saved = node.saved  # the node's per-step tensors
        watched = [weakref.ref(t) for s in saved for t in (s.output, s.focus, s.memory)]
    del node
    (logits.sum() + sum(t.sum() for t in (*state[:4], *state.controller))).backward()
    del logits, state
    if fused_node == "python":
        del saved
    gc.collect()
    assert all(ref() is None for ref in watched)


def test_a_second_derivative_raises_instead_of_being_wrong():
    model = _tiny()
    inputs = torch.randn(3, 2, 5, dtype=torch.float64)
    logits, _ = model(inputs)
    (gradient,) = torch.autograd.grad(logits.pow(2).sum(), model.cell.interface.weight,
                                      create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gradient.sum().backward()
    model.fused = False  # plain autograd has second derivatives
    logits, _ = model(inputs)
    (gradient,) = torch.autograd.grad(logits.pow(2).sum(), model.cell.interface.weight,
                                      create_graph=True)
    gradient.sum().backward()
