"""The DNC on the core: ntm.DNC, ntm.access.DNCAccess and the "dnc" models of the registry."""

import math

import numpy as np
import pytest
import torch
from helpers import check_resumed_run_equals_one_run

import ntm
from ntm.access import DNCAccess, DNCState
from ntm.cli import main
from ntm.functional import dnc as F

SMALL = {"memory_slots": 8, "memory_width": 4, "controller_size": 12}
OPTIONS = ["content_masking", "deallocation", "link_sharpness"]


def _model(dtype=torch.float64, seed=0, **arguments):
    torch.manual_seed(seed)
    return ntm.DNC(5, 3, **{**SMALL, **arguments}, dtype=dtype)


def _input(steps=6, batch=2, dtype=torch.float64, seed=1):
    return torch.randn(steps, batch, 5, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


def _flat(state):
    return [*state.controller, *state.access, state.reads]


# -- construction and shapes ------------------------------------------------------------------


def test_shapes_and_state_fields():
    model = _model(read_heads=2, write_heads=2)
    logits, state = model(_input())
    assert logits.shape == (6, 2, 3)
    assert isinstance(state, ntm.MemoryState) and isinstance(state.access, ntm.DNCState)
    B, N, M, R, W = 2, 8, 4, 2, 2
    assert [tuple(t.shape) for t in state.access] == [
        (B, N, M), (B, N), (B, W, N, N), (B, W, N), (B, R, N), (B, W, N)]
    assert state.reads.shape == (B, R * M)
    access = model.cell.access
    # keys and vectors R*M + 3*W*M; strengths R + W; gates R + 2W; modes R (2W + 1)
    assert access.interface_size == R * M + 3 * W * M + R + W + R + 2 * W + R * (2 * W + 1)
    assert access.read_size == R * M


@pytest.mark.parametrize("option, extra", [("content_masking", "R * M + W * M"),
                                           ("link_sharpness", "R"), ("deallocation", "0")])
def test_each_option_sizes_the_interface(option, extra):
    R, W, M = 2, 1, 4
    plain = DNCAccess(8, M, R, W).interface_size
    assert DNCAccess(8, M, R, W, **{option: True}).interface_size == plain + eval(extra)


@pytest.mark.parametrize("arguments, message", [
    ({"memory_slots": 0}, "memory_slots must be a positive integer, got 0"),
    ({"read_heads": 1.5}, "read_heads must be a positive integer, got 1.5"),
    ({"write_heads": True}, "write_heads must be a positive integer, got True"),
    ({"deallocation": 1}, "deallocation must be True or False, got 1"),
    ({"controller": "gru"}, "controller"),
    ({"backend": "python"}, "backend"),  # the NTM's; the DNC has "kernel"
])
def test_bad_arguments_are_value_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        _model(**arguments)


def test_wrong_input_and_state_are_value_errors():
    model = _model()
    with pytest.raises(ValueError, match="Expected 5, got 4"):
        model(torch.zeros(3, 2, 4, dtype=torch.float64))
    state = model.initial_state(2)
    wrong = state._replace(access=state.access._replace(link=torch.zeros(2, 1, 7, 7)))
    with pytest.raises(ValueError, match=r"link must have shape \(2, 1, 8, 8\), got \(2, 1, 7"):
        model(_input(batch=2), wrong)


def test_extra_repr_shows_what_differs_from_the_defaults():
    text = repr(ntm.DNC(5, 3, memory_slots=16, deallocation=True))
    assert "DNCAccess(memory_slots=16, deallocation=True)" in text


# -- the core's conventions -------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, dict.fromkeys(OPTIONS, True)])
def test_split_runs_equal_one_run(options):
    model, inputs = _model(**options), _input(steps=7)
    whole, end = model(inputs)
    first, middle = model(inputs[:3])
    second, split_end = model(inputs[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=1e-12)
    for a, b in zip(_flat(split_end), _flat(end), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_batch_first_unbatched_and_cell_agree():
    model, inputs = _model(), _input()
    logits, state = model(inputs)
    first = ntm.DNC(5, 3, **SMALL, dtype=torch.float64, batch_first=True)
    first.load_state_dict(model.state_dict())
    torch.testing.assert_close(first(inputs.transpose(0, 1))[0], logits.transpose(0, 1))
    alone, _ = model(inputs[:, 1])
    torch.testing.assert_close(alone, logits[:, 1])
    cell = ntm.DNCCell(5, 3, **SMALL, dtype=torch.float64)
    cell.load_state_dict(model.cell.state_dict())
    carried, steps = None, []
    for step in inputs:
        out, carried = cell(step, carried)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps), logits)


def test_trace_records_weightings_usage_allocation_and_modes():
    model = _model(read_heads=2)
    logits, state, trace = model.trace(_input())
    torch.testing.assert_close(logits, model(_input())[0])
    heads = trace.access
    assert heads.read_weights.shape == (6, 2, 2, 8)
    assert heads.write_weights.shape == (6, 2, 1, 8)
    assert heads.usage.shape == (6, 2, 8) and heads.allocation.shape == (6, 2, 1, 8)
    assert heads.read_modes.shape == (6, 2, 2, 3)
    torch.testing.assert_close(heads.read_modes.sum(-1), torch.ones(6, 2, 2, dtype=torch.float64))
    torch.testing.assert_close(heads.read_weights[-1], state.access.read_weights)
    assert trace.reads.shape == (6, 2, 8)


def test_a_step_follows_the_papers_equations():
    """One access step re-derived from ntm.functional.dnc's functions by hand, in the paper's
    order (usage, allocation, write, link, read)."""
    torch.manual_seed(3)
    access = DNCAccess(6, 3, read_heads=2, write_heads=2)  # two heads: allocation in turn
    state = DNCState(*(torch.rand(shape, dtype=torch.float64) * 0.5
                       for shape in access.state_shapes(2)))
    interface = torch.randn(2, access.interface_size, dtype=torch.float64)
    reads, new, _ = access.step(interface, state)
    p = access.layout.activate(interface)
    u = F.usage(state.usage, state.write_weights, p.free_gates, state.read_weights)
    ww = F.write_weights(F.allocation(u, p.allocation_gates * p.write_gates),
                         ntm.functional.content_weights(state.memory, p.write_keys,
                                                        p.write_strengths),
                         p.allocation_gates, p.write_gates)
    memory = F.erase_and_write(state.memory, ww, p.erase, p.values)
    link = F.link(state.link, state.precedence, ww)
    forward, backward = F.directional_weights(link, state.read_weights)
    wr = F.read_weights(ntm.functional.content_weights(memory, p.read_keys, p.read_strengths),
                        forward, backward, p.read_modes)
    for got, want in [(new.usage, u), (new.write_weights, ww), (new.memory, memory),
                      (new.link, link), (new.read_weights, wr),
                      (reads, torch.einsum("brn,bnm->brm", wr, memory).flatten(1))]:
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_deallocation_wipes_a_freed_row_before_the_write():
    access = DNCAccess(4, 3, read_heads=1, deallocation=True)
    memory = torch.ones(1, 4, 3, dtype=torch.float64)
    read_weights = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    state = access.initial_state(1, dtype=torch.float64)._replace(memory=memory,
                                                                  read_weights=read_weights)
    interface = torch.zeros(1, access.interface_size, dtype=torch.float64)
    layout = dict(zip([name for name, *_ in access.layout.table],
                      np.cumsum([0, *access.layout.sizes]).tolist(), strict=False))
    interface[0, layout["free_gates"]] = 20.0  # free gate 1: slot 1 is freed
    interface[0, layout["write_gates"]] = -20.0  # write nothing
    _, new, _ = access.step(interface, state)
    assert new.memory[0, 1].abs().max() < 1e-8  # wiped
    torch.testing.assert_close(new.memory[0, [0, 2, 3]], memory[0, [0, 2, 3]], atol=1e-8,
                               rtol=0)
    plain = DNCAccess(4, 3, read_heads=1)
    _, kept, _ = plain.step(interface, state)
    torch.testing.assert_close(kept.memory, memory, atol=1e-8, rtol=0)  # only marked free


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_changes_the_output(option):
    plain, inputs = _model(), _input()
    with_option = _model(**{option: True})
    shared = {k: v for k, v in plain.state_dict().items() if "interface" not in k}
    with_option.load_state_dict(shared, strict=False)
    assert not torch.allclose(plain(inputs)[0], with_option(inputs)[0])


# -- numerical safety -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, dict.fromkeys(OPTIONS, True)])
def test_gradcheck_of_whole_steps_in_float64(options):
    model = _model(read_heads=2, write_heads=2, **options, controller_size=4,
                   memory_slots=4, memory_width=3)
    inputs = _input(steps=3, batch=2).requires_grad_()
    # The input and the interface layer's weights: every path of a step (allocation, links,
    # content, reads) depends on both.
    assert torch.autograd.gradcheck(lambda x: model(x)[0], (inputs,), atol=1e-7)
    values = model.cell.interface.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w: torch.func.functional_call(model, {"cell.interface.weight": w}, (inputs,))[0],
        (values,), atol=1e-7)


@pytest.mark.parametrize("options", [{}, dict.fromkeys(OPTIONS, True)])
def test_zero_memory_and_zero_keys_give_finite_gradients(options):
    model = _model(dtype=torch.float32, **options)
    with torch.no_grad():
        model.cell.interface.weight.zero_()  # zero keys, against the zero initial memory
        model.cell.interface.bias.zero_()
    inputs = _input(dtype=torch.float32).requires_grad_()
    logits, state = model(inputs)
    logits.sum().backward()
    assert all(torch.isfinite(t).all() for t in _flat(state))
    assert torch.isfinite(inputs.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_thousand_steps_at_a_high_learning_rate_stay_finite():
    torch.manual_seed(0)
    task = ntm.tasks.make("copy", min_length=1, max_length=4)
    model = ntm.DNC(task.input_size, task.output_size, **SMALL,
                    **dict.fromkeys(OPTIONS, True), read_heads=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(1000):
        batch = task.sample(4, generator=generator)
        logits, _ = model(batch.inputs)
        loss = ntm.metrics.sequence_loss(logits, batch.targets, batch.mask)
        assert math.isfinite(loss.item()), step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_cpu():
    model, inputs = _model(dtype=torch.float32), _input(dtype=torch.float32)
    expected, _ = model(inputs)
    got, state = model.cuda()(inputs.cuda())
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-4)
    assert state.access.link.device.type == "cuda"


# -- the registry and the command line --------------------------------------------------------


def test_registry_builds_both_controllers_with_the_constructors_defaults():
    assert {"dnc", "dnc-ff"} <= set(ntm.models.names())
    lstm = ntm.models.make(ntm.models.DNCConfig(), 9, 8)
    ff = ntm.models.make(ntm.models.DNCConfig(kind="dnc-ff", deallocation=True), 9, 8)
    assert type(lstm).__name__ == "DNC" and lstm.cell.controller_kind == "lstm"
    assert ff.cell.controller_kind == "feedforward" and ff.cell.access.deallocation
    assert lstm.cell.memory_slots == 128 and lstm.cell.memory_width == 20


SIZES = ["--set", "model.memory_slots=12", "--set", "model.memory_width=6",
         "--set", "model.controller_size=12", "--set", "task.max_length=3",
         "--set", "train.val_every=2", "--set", "train.log_every=1",
         "--set", "train.val_batches=1", "--set", "train.val_batch_size=2",
         "--batch-size", "2", "--no-progress"]


@pytest.mark.parametrize("model", ["dnc", "dnc-ff"])
def test_train_resume_eval_and_plot_a_dnc(tmp_path, model, capsys):
    options = [*SIZES, "--model", model, "--set", "model.deallocation=true"]
    run = check_resumed_run_equals_one_run(tmp_path, options)
    assert main(["eval", run, "--batches", "1", "--batch-size", "2",
                 "--memory-slots", "20"]) == 0
    out = tmp_path / "figures"
    assert main(["plot", str(run), "--out", str(out), "--batches", "1",
                 "--batch-size", "2"]) == 0
    assert {"usage.png", "links.png", "weightings.png"} <= {p.name for p in out.iterdir()}


def test_a_key_of_another_model_is_refused(capsys):
    assert main(["train", "copy", "--model", "dnc", "--set", "model.shift_range=2",
                 "--steps", "1"]) == 2
    assert "shift_range" in capsys.readouterr().err


def test_lengths_equal_running_each_sequence_alone():
    model, inputs = _model(read_heads=2), _input(steps=7, batch=3)
    lengths = [7, 2, 5]
    logits, state = model(inputs, lengths=lengths)
    for b, length in enumerate(lengths):
        alone, end = model(inputs[:length, b:b + 1])
        torch.testing.assert_close(logits[:length, b:b + 1], alone, rtol=0, atol=1e-12)
        assert not logits[length:, b].any()
        for got, want in zip(_flat(state), _flat(end), strict=True):
            row = got[:, b:b + 1] if got.dim() == 3 and got.size(0) == 1 else got[b:b + 1]
            torch.testing.assert_close(row, want, rtol=0, atol=1e-12)
