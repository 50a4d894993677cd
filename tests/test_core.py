"""ntm.MemoryRNN / MemoryCell with any access, the backend choice, and the NTM on the core.

A toy access (tests/toy_memory.py: a memory of one learned vector that the interface
overwrites) shows what the core needs of a memory and runs with no backend of its own.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_memory import ToyAccess, ToyState

import ntm
from ntm.access import NTMAccess


def toy_model(**overrides) -> ntm.MemoryRNN:
    torch.manual_seed(0)
    arguments = {"controller_size": 5, "dtype": torch.float64, **overrides}
    return ntm.MemoryRNN(4, 2, ToyAccess(), **arguments)


def test_a_toy_access_runs_on_autograd_with_backend_auto():
    model = toy_model()
    assert ntm.backends.choices(model.cell.access) == ["auto", "autograd"]
    inputs = torch.randn(6, 3, 4, dtype=torch.float64)
    logits, state = model(inputs)
    assert logits.shape == (6, 3, 2) and state.access.value.shape == (3, 3)
    assert state.reads.shape == (3, 3) and [t.shape for t in state.controller] == [(1, 3, 5)] * 2
    logits.sum().backward()
    assert model.cell.access.start.grad is not None  # the access's own parameter learns


def test_a_toy_access_steps_as_written():
    """One step of the core re-derived: controller, interface, access, output."""
    model = toy_model(controller="feedforward")
    cell = model.cell
    x = torch.randn(2, 4, dtype=torch.float64)
    logits, state = cell(x)
    reads0 = cell.initial_reads.expand(2, -1)
    hidden = torch.tanh(x @ cell.controller.input_weight.T + reads0 @
                        cell.controller.layer_weights[0].T + cell.controller.bias[0])
    interface = cell.interface(hidden)
    gate = torch.sigmoid(interface[:, -1:])
    value = gate * cell.access.start + (1 - gate) * torch.tanh(interface[:, :-1])
    torch.testing.assert_close(state.access.value, value)
    torch.testing.assert_close(logits, cell.output(torch.cat([hidden, value], 1)))


def test_split_runs_equal_one_run_and_the_cell_equals_the_sequence():
    model = toy_model()
    inputs = torch.randn(7, 2, 4, dtype=torch.float64)
    whole, state = model(inputs)
    first, middle = model(inputs[:3])
    second, end = model(inputs[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    for a, b in zip(ntm.core._flat_state(end), ntm.core._flat_state(state), strict=True):
        torch.testing.assert_close(a, b)
    step_state, steps = None, []
    for x in inputs:
        logits, step_state = model.cell(x, step_state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps), whole)


def test_batch_first_unbatched_and_trace():
    model = toy_model(batch_first=True)
    inputs = torch.randn(2, 5, 4, dtype=torch.float64)  # [B, T, I]
    logits, _, trace = model.trace(inputs)
    assert logits.shape == (2, 5, 2)
    assert trace.access.gate.shape == (5, 2, 1) and trace.reads.shape == (5, 2, 3)  # time-major
    torch.testing.assert_close(trace.access.value[-1], trace.reads[-1])
    single, state = model(inputs[0])  # unbatched: [T, I]
    torch.testing.assert_close(single, logits[0])
    assert state.access.value.shape == (3,) and state.reads.shape == (3,)
    _, _, empty = model.trace(inputs[:, :0])
    assert empty.access.gate.shape == (0, 2, 1) and empty.reads.shape == (0, 2, 3)


def test_state_errors_name_the_field():
    model = toy_model()
    state = model.initial_state(2)
    inputs = torch.randn(3, 2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state.access.value must have shape \(2, 3\)"):
        model(inputs, state._replace(access=ToyState(torch.zeros(2, 4, dtype=torch.float64))))
    with pytest.raises(ValueError, match=r"state.reads must have shape \(2, 3\)"):
        model(inputs, state._replace(reads=state.reads[:1]))
    with pytest.raises(ValueError, match="state.controller must hold 2 tensors .* got 0"):
        model(inputs, state._replace(controller=()))
    with pytest.raises(ValueError, match="state.access must be a ToyState, got tuple"):
        model(inputs, state._replace(access=(state.access.value,)))
    with pytest.raises(ValueError, match="state must be a MemoryState, got tuple"):
        model(inputs, tuple(state))
    with pytest.raises(ValueError, match="dtype torch.float64, got torch.float32"):
        model(inputs, state._replace(reads=state.reads.float()))


def test_detach_cuts_every_tensor():
    model = toy_model()
    _, state = model(torch.randn(3, 2, 4, dtype=torch.float64))
    assert all(t.grad_fn is None for t in ntm.core._flat_state(state.detach()))


def test_constructor_errors():
    with pytest.raises(ValueError, match="access must be an ntm.access.MemoryAccess"):
        ntm.MemoryRNN(4, 2, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="controller must be one of"):
        ntm.MemoryRNN(4, 2, ToyAccess(), controller="gru")
    with pytest.raises(ValueError, match="controller_size must be a positive integer"):
        ntm.MemoryRNN(4, 2, ToyAccess(), controller_size=0)
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'autograd'\] for "
                                         "ToyAccess, got 'kernel'"):
        ntm.MemoryRNN(4, 2, ToyAccess(), backend="kernel")
    with pytest.raises(ValueError, match=r"\['auto', 'kernel', 'python', 'autograd'\]"):
        ntm.NTM(4, 2, backend="fast")


def test_an_explicit_backend_that_cannot_run_the_input_says_why():
    model = ntm.NTM(4, 2, memory_slots=8, memory_width=3, controller_size=4,
                    dtype=torch.bfloat16, backend="kernel")
    with pytest.raises(ValueError, match="backend 'kernel' cannot run this input: it runs on "
                                         "the CPU in float32 and float64"):
        model(torch.zeros(2, 1, 4, dtype=torch.bfloat16))
    model.backend = "auto"  # falls back by itself: the Python node
    logits, _ = model(torch.zeros(2, 1, 4, dtype=torch.bfloat16))
    assert logits.dtype == torch.bfloat16


def test_fused_is_the_alias_of_backend():
    assert ntm.NTM(4, 2, fused=False).backend == "autograd"
    assert ntm.NTM(4, 2, fused=True, backend="python").backend == "auto"  # fused decides
    model = ntm.NTM(4, 2, backend="python")
    assert model.fused
    model.fused = False
    assert model.backend == "autograd"


# -- the NTM on the core ---------------------------------------------------------------------


def test_the_ntm_is_the_core_with_an_ntm_access():
    torch.manual_seed(3)
    model = ntm.NTM(4, 2, memory_slots=8, memory_width=3, controller_size=5, read_heads=2,
                    dtype=torch.float64)
    access = NTMAccess(8, 3, read_heads=2, dtype=torch.float64)
    core = ntm.MemoryRNN(4, 2, access, controller_size=5, dtype=torch.float64)
    with torch.no_grad():  # the same tensors in the same order; the NTM's reads are [R, M]
        for mine, theirs in zip(core.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs.reshape(mine.shape))
    inputs = torch.randn(5, 2, 4, dtype=torch.float64)
    logits, state = model(inputs)
    core_logits, core_state = core(inputs)
    torch.testing.assert_close(core_logits, logits, rtol=0, atol=0)
    torch.testing.assert_close(core_state.access.memory, state.memory, rtol=0, atol=0)
    torch.testing.assert_close(core_state.reads, state.read_vectors.flatten(1), rtol=0, atol=0)


def test_the_ntm_keeps_its_state_dict_names_and_parameter_order():
    """As before the core (names and values read from the release before it, seed 5)."""
    torch.manual_seed(5)
    model = ntm.NTM(9, 8, memory_slots=16, memory_width=4, controller_size=8,
                    memory_init="learned")
    assert list(model.state_dict()) == [
        "cell.initial_reads", "cell.initial_memory", "cell.controller.input_weight",
        "cell.controller.bias", "cell.controller.layer_weights.0", "cell.heads.linear.weight",
        "cell.heads.linear.bias", "cell.output.weight", "cell.output.bias"]
    assert [tuple(p.shape) for p in model.parameters()] == [
        (1, 4), (16, 4), (32, 9), (1, 32), (32, 12), (28, 8), (28,), (8, 12), (8,)]
    # The same seed gives the same model as before the core: the sums the release before it
    # printed for this seed and these sizes.
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    assert total == pytest.approx(-23.55170823649678, abs=1e-6)
    memory_sum = float(model.cell.initial_memory.detach().double().sum())
    assert memory_sum == pytest.approx(-1.412407357711345, abs=1e-6)
    inputs = torch.linspace(-1, 1, 5 * 2 * 9).reshape(5, 2, 9)
    with torch.no_grad():
        assert float(model(inputs)[0].double().sum()) == pytest.approx(-1.2859800774604082,
                                                                       abs=1e-5)
    again = ntm.NTM(9, 8, memory_slots=16, memory_width=4, controller_size=8,
                    memory_init="learned")
    again.load_state_dict(model.state_dict())
    renamed = {k.replace("heads.linear", "interface").replace("cell.initial_memory",
                                                               "cell.access.initial_memory"): v
               for k, v in model.state_dict().items()}
    again.load_state_dict(renamed)  # the core's own names load too
    assert torch.equal(again.cell.initial_memory, model.cell.initial_memory)


def test_float16_is_refused_with_the_dtypes_that_work():
    with pytest.raises(ValueError, match="float16 is not supported.*torch.bfloat16"):
        ntm.NTM(4, 2, dtype=torch.float16)
    with pytest.raises(ValueError, match="float16 is not supported"):
        toy_model(dtype=torch.float16)
    model = ntm.NTM(4, 2, memory_slots=8, memory_width=3, controller_size=4).half()
    with pytest.raises(ValueError, match="float16 is not supported"):
        model(torch.zeros(2, 1, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="float16 is not supported"):
        model.cell(torch.zeros(1, 4, dtype=torch.float16))


def test_bfloat16_trains_without_nan():
    torch.manual_seed(0)
    task = ntm.tasks.make("copy", max_length=3)
    model = ntm.NTM(task.input_size, task.output_size, memory_slots=16, memory_width=6,
                    controller_size=16, dtype=torch.bfloat16)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = task.sample(4, torch.Generator().manual_seed(0))
    for _ in range(3):
        logits, _ = model(batch.inputs.to(torch.bfloat16))
        loss = ntm.metrics.sequence_loss(logits.float(), batch.targets, batch.mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_ntm_defaults_agree_everywhere_they_are_spelt():
    """NTM, NTMCell and NTMAccess each show their defaults in their signature: the same ones."""
    import inspect

    def defaults(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}

    model, cell, access = defaults(ntm.NTM), defaults(ntm.NTMCell), defaults(NTMAccess)
    assert {k: v for k, v in model.items() if k in cell} == cell
    assert {k: v for k, v in cell.items() if k in access} == access
    core = defaults(ntm.MemoryRNN)
    assert {k: v for k, v in model.items() if k in core} == core
    assert ntm.MemoryRNN(4, 2, ToyAccess(), controller_size=7).cell.extra_repr() == (
        "4, 2, controller_size=7")
    assert NTMAccess(memory_slots=64).extra_repr() == "memory_slots=64"


def test_torch_jit_script_says_what_to_use_instead():
    model = ntm.NTM(4, 2, memory_slots=8, memory_width=3, controller_size=4)
    for module in (model, model.cell, toy_model(), torch.nn.Sequential(model)):
        with pytest.raises(NotImplementedError, match=r"torch.compile\(model\) or torch.export"):
            torch.jit.script(module)
