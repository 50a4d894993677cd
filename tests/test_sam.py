"""Sparse access memory on the core: ntm.SAM, ntm.access.SparseAccess, its indexes and the
"sam" models of the registry."""

import copy
import math
import os
import sys

import numpy as np
import pytest
import torch
from helpers import check_resumed_run_equals_one_run

import ntm
from ntm.access import SparseAccess, SparseState, sparse_index
from ntm.cli import main
from ntm.functional import sparse as F
from ntm.rundir import read_metrics

SMALL = {"memory_slots": 16, "memory_width": 4, "controller_size": 12, "sparse_reads": 3}
HAS_FAISS = sparse_index.faiss_missing() is None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="needs faiss-cpu")


def _model(dtype=torch.float64, seed=0, **arguments):
    torch.manual_seed(seed)
    return ntm.SAM(5, 3, **{**SMALL, **arguments}, dtype=dtype)


def _input(steps=8, batch=2, dtype=torch.float64, seed=1):
    return torch.randn(steps, batch, 5, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


def _flat(state):
    return [*state.controller, *state.access, state.reads]


def _gradients(model, inputs, memory_loss=True):
    """Logits and the gradients of the parameters; the loss on the final memory too (then
    the in-place backward keeps the memory's gradient whole) or not (row by row)."""
    model.zero_grad()
    logits, state = model(inputs)
    loss = logits.square().sum()
    if memory_loss:
        loss = loss + state.access.memory.sum()
    loss.backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


# -- construction and shapes ------------------------------------------------------------------


def test_shapes_and_state_fields():
    model = _model(read_heads=2)
    logits, state = model(_input())
    assert logits.shape == (8, 2, 3)
    assert isinstance(state, ntm.MemoryState) and isinstance(state.access, ntm.SparseState)
    B, N, M, R, K = 2, 16, 4, 2, 3
    assert [tuple(t.shape) for t in state.access] == [(B, N, M), (B, N), (B, 4), (B,),
                                                      (B, R, K), (B, R, K)]
    torch.testing.assert_close(state.access.oldest, F.oldest_in_blocks(state.access.last_access))
    assert state.access.read_rows.dtype == torch.int64
    assert state.access.time.tolist() == [8.0, 8.0]
    access = model.cell.access
    assert access.interface_size == R * M + R + M + 2  # keys, strengths, a, alpha, gamma
    assert access.read_size == R * M


def test_the_constructor_and_repr():
    model = ntm.SAM(9, 8, memory_slots=64, sparse_reads=8, index="exact", batch_first=True)
    assert model.cell.sparse_reads == 8 and model.cell.index == "exact"
    assert model.cell.access.finder.name == "exact"
    assert "sparse_reads=8" in repr(model) and "index='exact'" in repr(model)
    assert ntm.backends.choices(model.cell.access) == ["auto", "autograd"]


@pytest.mark.parametrize("arguments, message", [
    ({"memory_slots": 0}, "memory_slots must be a positive integer, got 0"),
    ({"sparse_reads": 0}, "sparse_reads must be a positive integer, got 0"),
    ({"sparse_reads": 17}, r"sparse_reads must be at most memory_slots \(16\), got 17"),
    ({"read_heads": 1.5}, "read_heads must be a positive integer, got 1.5"),
    ({"index": "kd-tree"}, "index must be one of"),
    ({"controller": "gru"}, "controller"),
    ({"backend": "kernel"}, "backend"),
])
def test_bad_arguments_are_value_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        _model(**arguments)


def test_wrong_input_and_state_are_value_errors():
    model = _model()
    with pytest.raises(ValueError, match="Expected 5, got 4"):
        model(torch.zeros(3, 2, 4, dtype=torch.float64))
    state = model.initial_state(2)
    wrong = state._replace(access=state.access._replace(last_access=torch.zeros(2, 7)))
    with pytest.raises(ValueError, match=r"last_access must have shape \(2, 16\), got \(2, 7"):
        model(_input(), wrong)
    rows = state.access.read_rows.double()
    wrong = state._replace(access=state.access._replace(read_rows=rows))
    with pytest.raises(ValueError, match="read_rows must have dtype torch.int64"):
        model(_input(), wrong)


def test_without_faiss_auto_falls_back_and_faiss_is_one_line(monkeypatch):
    monkeypatch.setattr(sparse_index, "faiss_missing", lambda: "index='faiss' needs faiss-cpu")
    big = SparseAccess(memory_slots=sparse_index.FAISS_CROSSOVER, index="auto")
    assert big.finder.name == "exact"
    with pytest.raises(ImportError, match="needs faiss-cpu") as error:
        SparseAccess(index="faiss")
    assert "\n" not in str(error.value)


@needs_faiss
def test_auto_uses_faiss_from_the_crossover():
    crossover = sparse_index.FAISS_CROSSOVER
    assert SparseAccess(memory_slots=crossover, memory_width=2).finder.name == "faiss"
    assert SparseAccess(memory_slots=crossover - 1, memory_width=2).finder.name == "exact"


# -- the conventions of the core --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "autograd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_split_runs_equal_one_run(backend, dtype):
    model, inputs = _model(dtype=dtype, read_heads=2, backend=backend), _input(dtype=dtype)
    whole, end = model(inputs)
    first, middle = model(inputs[:3])
    second, end_split = model(inputs[3:], middle)
    tolerance = {"rtol": 0, "atol": 1e-12 if dtype == torch.float64 else 1e-6}
    torch.testing.assert_close(torch.cat([first, second]), whole, **tolerance)
    for got, want in zip(_flat(end_split), _flat(end), strict=True):
        torch.testing.assert_close(got, want, **tolerance)


def test_the_cell_equals_the_sequence():
    model, inputs = _model(), _input(steps=5)
    expected, end = model(inputs)
    cell_model = ntm.SAMCell(5, 3, **SMALL, dtype=torch.float64)
    cell_model.load_state_dict(model.cell.state_dict())
    state, outputs = None, []
    for step in inputs:
        output, state = cell_model(step, state)
        outputs.append(output)
    torch.testing.assert_close(torch.stack(outputs), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(state.access.memory, end.access.memory, rtol=0, atol=1e-12)


def test_batch_first_and_unbatched():
    model, inputs = _model(), _input(batch=1)
    expected, _ = model(inputs)
    unbatched, state = model(inputs[:, 0])
    torch.testing.assert_close(unbatched, expected[:, 0])
    assert state.access.memory.shape == (16, 4) and state.access.time.shape == ()
    model.batch_first = True
    torch.testing.assert_close(model(inputs.transpose(0, 1))[0], expected.transpose(0, 1))


def test_without_gradients_the_output_is_the_same():
    model, inputs = _model(), _input()
    expected, _ = model(inputs)
    with torch.no_grad():
        got, _ = model(inputs)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_the_memory_of_a_state_passed_in_is_changed_in_place_except_by_autograd():
    for backend, changed in (("auto", True), ("autograd", False)):
        model = _model(backend=backend)
        state = model.initial_state(2)
        before = state.access.memory.clone()
        _, end = model(_input(), state)
        assert (end.access.memory is state.access.memory) == changed
        assert (not torch.equal(state.access.memory, before)) == changed


def test_trace_fields_and_invariants():
    model, inputs = _model(read_heads=2), _input(steps=10)
    logits, state, trace = model.trace(inputs)
    torch.testing.assert_close(logits, model(inputs)[0], rtol=0, atol=1e-12)
    access = trace.access
    T, B, R, K, N = 10, 2, 2, 3, 16
    assert [tuple(t.shape) for t in access] == [(T, B, R, N), (T, B, 1, N), (T, B, R, K),
                                                (T, B)]
    ones = torch.ones(T, B, R, dtype=torch.float64)
    torch.testing.assert_close(access.read_weights.sum(-1), ones)
    assert ((access.read_weights > 0).sum(-1) <= K).all()  # K rows at most per head
    assert (access.read_weights >= 0).all() and (access.write_weights >= 0).all()
    assert (access.write_weights.sum(-1) <= 1 + 1e-12).all()  # at most alpha
    rows = access.read_rows.long()
    torch.testing.assert_close(access.read_weights.gather(-1, rows).sum(-1), ones)
    # U is never a row accessed above delta the step before: it is the least recently used.
    for t in range(1, T):
        accessed = access.write_weights[t - 1, :, 0] + access.read_weights[t - 1].sum(1)
        recent = accessed > F.ACCESS_DELTA  # (B, N)
        assert not recent.gather(1, access.least_used[t].long().unsqueeze(1)).any()
        # written: the rows read the step before and U, nothing else
        written = access.write_weights[t, :, 0] > 0
        allowed = (access.read_weights[t - 1] > 0).any(1)
        allowed.scatter_(1, access.least_used[t].long().unsqueeze(1), True)
        assert not (written & ~allowed).any()
    # The first step erases row 0: no row was accessed yet.
    assert access.least_used[0].tolist() == [0.0, 0.0]


def test_the_reads_are_the_rows_found_weighted():
    model = _model()
    with torch.no_grad():
        logits, state, trace = model.trace(_input(steps=4))
    rows = state.access.read_rows
    values = F.gather_rows(state.access.memory, rows)
    reads = F.sparse_read(values, state.access.read_weights).flatten(1)
    torch.testing.assert_close(reads, state.reads)
    torch.testing.assert_close(trace.access.read_rows[-1], rows.double())


# -- the in-place backend against the reference ------------------------------------------------


@pytest.mark.parametrize("memory_loss", [False, True])
@pytest.mark.parametrize("arguments", [{}, {"read_heads": 2, "sparse_reads": 4},
                                       {"controller": "feedforward"}])
def test_in_place_equals_the_dense_autograd_reference(arguments, memory_loss):
    """The issue's test: the hand-written backward over the rows each step changed gives
    the gradients of autograd recording every operation on a copied memory, to 1e-10."""
    inputs = _input(steps=40, batch=3)  # more rows than the row gradients' first capacity
    sparse = _gradients(_model(backend="auto", **arguments), inputs, memory_loss)
    reference = _gradients(_model(backend="autograd", **arguments), inputs, memory_loss)
    torch.testing.assert_close(sparse[0], reference[0], rtol=0, atol=1e-12)
    for got, want in zip(sparse[1], reference[1], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_a_given_state_gets_the_gradients_of_the_reference():
    """A starting state whose every float field is a leaf that wants a gradient (the memory
    is then copied before it is changed in place)."""
    results = []
    for backend in ("auto", "autograd"):
        model = _model(backend=backend)
        with torch.no_grad():
            _, state = model(_input(steps=4, seed=3))
        memory = state.access.memory.clone().requires_grad_()
        weights = state.access.read_weights.clone().requires_grad_()
        state = state._replace(access=state.access._replace(memory=memory,
                                                            read_weights=weights))
        logits, end = model(_input(), state)
        loss = logits.sin().sum() + end.access.memory.square().sum()
        results.append(torch.autograd.grad(loss, [memory, weights, *model.parameters()],
                                           allow_unused=True))
        assert not memory.grad_fn and memory.requires_grad  # the leaf itself was not changed
    for got, want in zip(*results, strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_split_runs_backpropagate_as_one_run():
    inputs = _input(steps=12)
    whole = _gradients(_model(), inputs, memory_loss=False)[1]
    model = _model()
    first, middle = model(inputs[:5])
    second, _ = model(inputs[5:], middle)
    torch.cat([first, second]).square().sum().backward()
    for parameter, want in zip(model.parameters(), whole, strict=True):
        torch.testing.assert_close(parameter.grad, want, rtol=0, atol=1e-10)


def test_a_second_backward_pass_through_a_kept_graph_gives_the_same_gradients():
    model = _model()
    logits, _ = model(_input(steps=10))
    first = torch.autograd.grad(logits.square().sum(), list(model.parameters()),
                                retain_graph=True, allow_unused=True)
    second = torch.autograd.grad(logits.square().sum(), list(model.parameters()),
                                 allow_unused=True)
    for a, b in zip(first, second, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_gradcheck_of_whole_steps_in_float64():
    model = _model(read_heads=2, controller_size=4, memory_slots=6, memory_width=3,
                   sparse_reads=2)
    inputs = _input(steps=3, batch=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: model(x)[0], (inputs,), atol=1e-7)


def test_saved_state_does_not_grow_with_the_slots():
    """What autograd keeps for the backward pass, per step, is independent of N: the
    in-place path saves no memory-sized tensor."""
    saved = {}
    for slots in (64, 4096):
        model, sizes = _model(dtype=torch.float32, memory_slots=slots), []

        def pack(tensor, sizes=sizes):
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(_input(steps=6, dtype=torch.float32))
        saved[slots] = sum(sizes)
    assert saved[64] == saved[4096]
    assert saved[4096] < 2 * 4096 * 4 * 4  # all of it less than one copy of the memory


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_large_state_starts_as_zeros_that_are_not_written(dtype):
    """Large CPU states are untouched pages: zeros, contiguous, no view (the in-place step
    would copy a view), writable; small ones and other dtypes are torch.zeros."""
    from ntm.access.sparse import UNTOUCHED_BYTES, untouched_zeros

    rows = UNTOUCHED_BYTES // (8 * dtype.itemsize) + 1
    large = untouched_zeros((2, rows, 8), dtype=dtype)
    assert large.dtype == dtype and large.shape == (2, rows, 8) and large.is_contiguous()
    assert large._base is None and not large.any()
    large[1, -1] += 2.5
    assert large.sum() == 20.0 and large[1, -1, 0] == 2.5
    for shape, kind in (((3, 4), dtype), ((2, rows, 8), torch.float16)):
        small = untouched_zeros(shape, dtype=kind)
        assert small.dtype == kind and not small.any()


def test_a_million_slots_cost_the_rows_a_sequence_touches():
    """The resident memory of a training step at 1,048,576 slots (an 80 MiB matrix) grows by
    much less than the matrix: its zeros are written only where the sequence writes."""
    def resident_mib():
        with open("/proc/self/statm") as statm:  # pages: the second field is the resident set
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    if not sys.platform.startswith("linux"):
        pytest.skip("reads the resident set from /proc")
    if not HAS_FAISS:
        pytest.skip("needs faiss-cpu (the exact search reads every row)")
    model = _model(dtype=torch.float32, memory_slots=1 << 20, memory_width=20, index="faiss")
    before = resident_mib()
    logits, _ = model(_input(steps=20, batch=1, dtype=torch.float32))
    logits.sum().backward()
    assert resident_mib() - before < 40


@pytest.mark.parametrize("in_place", [True, False])
def test_a_step_that_is_not_running_leaves_the_state_as_it_was(in_place):
    """A sequence that has ended takes the step frozen (``running`` False): no erase of its
    row U, no write, no access counted, its last read rows kept."""
    # 16 slots, 20 steps: row U holds data, and the rows found have older times than now
    model = _model(memory_slots=16, sparse_reads=2)
    with torch.no_grad():
        _, state = model(_input(steps=20, batch=2))
    access, before = model.cell.access, [t.clone() for t in state.access]
    least_used = F.least_used(state.access.last_access, state.access.oldest)
    assert state.access.memory[0, least_used[0]].abs().sum() > 0
    interface = torch.randn(2, access.interface_size, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, after, _ = access.step(interface, state.access, in_place=in_place,
                                  running=torch.tensor([False, True]))
    for name, old, new in zip(SparseState._fields, before, after, strict=True):
        assert torch.equal(new[0], old[0]), f"{name} of the frozen sequence changed"
    assert not torch.equal(after.memory[1], before[0][1])  # the running one wrote
    assert after.time.tolist() == [20.0, 21.0]


def test_a_frozen_sequence_finds_rows_it_would_count_as_accessed():
    """The test above would miss an ended sequence counting the rows it finds as accessed
    unless those rows have older times than its own: they do."""
    model = _model(memory_slots=16, sparse_reads=2)
    with torch.no_grad():
        _, state = model(_input(steps=20, batch=2))
        access = model.cell.access
        interface = torch.randn(2, access.interface_size, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(4))
        found = access.step(interface, copy.deepcopy(state.access)).state.read_rows[0]
    times = state.access.last_access[0, found.flatten()]
    assert (times < state.access.time[0]).any()


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("backend", ["auto", "autograd"])
def test_lengths_from_a_given_state_equal_each_alone(backend, frozen, monkeypatch):
    """From a given state (its memory a leaf that wants a gradient): outputs, final memory
    and the gradients of the parameters and of the given memory as each sequence alone,
    frozen (a large state's path) or sorted and split (a small one's)."""
    if frozen:
        monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 0)
    model = _model(read_heads=2, backend=backend)
    with torch.no_grad():
        _, given = model(_input(steps=5, batch=3))
    inputs, lengths = _input(steps=7, batch=3, seed=3), [7, 0, 4]

    def run(rows: slice, steps: int):
        """Sequences ``rows`` from their given state, ``steps`` steps (-1: with lengths)."""
        state = ntm.MemoryState(
            tuple(t[:, rows].clone() for t in given.controller),
            SparseState(*(t[rows].clone() for t in given.access)), given.reads[rows].clone())
        memory = state.access.memory.requires_grad_()
        if steps < 0:  # the whole batch, with its lengths
            logits, final = model(inputs, state, lengths=lengths)
        else:
            logits, final = model(inputs[:steps, rows], state)
        loss = logits.sin().sum() + final.access.memory.sin().sum() + final.reads.sin().sum()
        return logits, final, torch.autograd.grad(loss, [memory, *model.parameters()],
                                                  materialize_grads=True)

    logits, final, grads = run(slice(None), -1)
    for b, length in enumerate(lengths):
        logits_b, final_b, grads_b = run(slice(b, b + 1), length)
        torch.testing.assert_close(logits[:length, b:b + 1], logits_b, rtol=0, atol=1e-12)
        assert not logits[length:, b].any()
        torch.testing.assert_close(final.access.memory[b:b + 1], final_b.access.memory,
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(grads[0][b:b + 1], grads_b[0], rtol=0, atol=1e-10)
        grads = [grads[0], *(g - g_b for g, g_b in zip(grads[1:], grads_b[1:], strict=True))]
    for leftover in grads[1:]:  # the batch's parameter gradients are the sum of each alone's
        torch.testing.assert_close(leftover, torch.zeros_like(leftover), rtol=0, atol=1e-10)


def test_nan_padding_does_not_reach_an_ended_sequence(monkeypatch):
    """Past its end a frozen sequence still computes a step that is thrown away; its padding
    is zeroed first, so a NaN there changes nothing."""
    monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 0)
    model = _model()
    inputs = _input(steps=6, batch=2)
    clean, clean_state = model(inputs, lengths=[6, 3])
    inputs[3:, 1] = float("nan")
    logits, state = model(inputs, lengths=[6, 3])
    torch.testing.assert_close(logits, clean, rtol=0, atol=0)
    torch.testing.assert_close(state.access.memory, clean_state.access.memory, rtol=0, atol=0)
    logits.sum().backward()
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("grad", [False, True])
def test_lengths_change_the_memory_in_place_without_a_copy(grad, monkeypatch):
    """A batch with lengths and a large state runs in its own order with ended sequences
    frozen: the memory of a given state is written where it lies (sorting the batch would copy
    every sequence's). Large here: more than FREEZE_ELEMENTS, lowered to 0."""
    monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 0)
    model = _model()
    with torch.no_grad():
        _, state = model(_input(steps=3, batch=3))
    memory = state.access.memory
    with torch.set_grad_enabled(grad):
        logits, final = model(_input(steps=6, batch=3, seed=2), state, lengths=[6, 2, 4])
    assert final.access.memory is memory
    assert not logits[2:, 1].any() and not logits[4:, 2].any()
    assert final.access.time.tolist() == [9.0, 5.0, 7.0]


def test_zero_memory_and_zero_keys_give_finite_gradients():
    model = _model(dtype=torch.float32)
    with torch.no_grad():
        model.cell.interface.weight.zero_()
        model.cell.interface.bias.zero_()
    inputs = _input(dtype=torch.float32).requires_grad_()
    logits, state = model(inputs)
    logits.sum().backward()
    assert all(torch.isfinite(t).all() for t in _flat(state))
    assert torch.isfinite(inputs.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_train_one_step_changes_the_weights_and_the_loss_stays_finite():
    torch.manual_seed(0)
    task = ntm.tasks.make("copy", min_length=1, max_length=4)
    model = ntm.SAM(task.input_size, task.output_size, **SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = task.sample(4, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    logits, _ = model(batch.inputs)
    loss = ntm.metrics.sequence_loss(logits, batch.targets, batch.mask)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True)
               if p.grad is not None and p.grad.abs().sum() > 0)
    assert model.cell.interface.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("index, grad", [("exact", True), ("exact", False),
                                         pytest.param("faiss", True, marks=needs_faiss)])
def test_lengths_equal_running_each_sequence_alone(index, grad):
    model, inputs = _model(read_heads=2, index=index), _input(steps=7, batch=3)
    lengths = [7, 2, 5]
    with torch.set_grad_enabled(grad):
        logits, state = model(inputs, lengths=lengths)
    for b, length in enumerate(lengths):
        alone, end = model(inputs[:length, b:b + 1])
        torch.testing.assert_close(logits[:length, b:b + 1], alone, rtol=0, atol=1e-12)
        assert not logits[length:, b].any()
        for got, want in zip(_flat(state), _flat(end), strict=True):
            row = got[:, b:b + 1] if got.dim() == 3 and got.size(0) == 1 else got[b:b + 1]
            torch.testing.assert_close(row, want, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_cpu():
    model, inputs = _model(dtype=torch.float32), _input(dtype=torch.float32)
    expected, _ = model(inputs)
    got, state = model.cuda()(inputs.cuda())
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-4)
    assert state.access.memory.device.type == "cuda"


# -- the faiss index ---------------------------------------------------------------------------


@needs_faiss
def test_faiss_finds_most_of_the_exact_nearest_rows(monkeypatch):
    monkeypatch.setattr(sparse_index, "SCAN_ROWS", 1)  # 16 lists of 64 probed: approximate
    generator = torch.Generator().manual_seed(0)
    memory = torch.randn(2, 4096, 16, generator=generator)
    keys = memory[:, :50] + 0.1 * torch.randn(2, 50, 16, generator=generator)
    exact = F.nearest_rows(memory, keys, 4)
    index = sparse_index.FaissIndex()
    found = index.search(memory, keys, 4, torch.zeros(2, 0, dtype=torch.int64),
                         sparse_index.Previous(memory, memory._version))
    assert found.shape == (2, 50, 4) and found.dtype == torch.int64
    # The row each key was made from is found (it is the nearest by far).
    assert (found == torch.arange(50).view(1, 50, 1)).any(-1).float().mean() > 0.95
    recall = (found.unsqueeze(-1) == exact.unsqueeze(-2)).any(-1).float().mean()
    assert recall > 0.5


@needs_faiss
def test_faiss_is_exact_while_fewer_rows_than_it_scans_are_written():
    generator = torch.Generator().manual_seed(1)
    memory = torch.zeros(2, 65536, 8)
    written = torch.randint(0, 65536, (2, 300), generator=generator)
    memory.scatter_(1, written.unsqueeze(-1).expand(2, 300, 8),
                    torch.randn(2, 300, 8, generator=generator))
    keys = torch.randn(2, 5, 8, generator=generator)
    found = sparse_index.FaissIndex().search(memory, keys, 4, written,
                                             sparse_index.Previous(memory, memory._version))
    assert torch.equal(found, F.nearest_rows(memory, keys, 4))


@needs_faiss
def test_faiss_fills_with_free_rows_and_returns_k_distinct_rows():
    memory = torch.zeros(1, 300, 4)
    memory[0, 7] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    memory[0, 9] = torch.tensor([-1.0, 0.0, 0.0, 0.0])  # cosine -1: after the free rows
    keys = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    index = sparse_index.FaissIndex()
    found = index.search(memory, keys, 3, torch.zeros(1, 0, dtype=torch.int64),
                         sparse_index.Previous(memory, memory._version))
    assert found.tolist() == [[[7, 0, 1]]]


@needs_faiss
def test_the_faiss_index_kept_up_to_date_equals_one_built_again():
    model = _model(dtype=torch.float32, index="faiss", memory_slots=64)
    finder = model.cell.access.finder
    inputs = _input(steps=20, dtype=torch.float32)
    with torch.no_grad():
        _, state = model(inputs)
    memory, keys = state.access.memory, torch.randn(2, 3, 4)
    kept = finder._cache.get(memory)
    assert kept is not None and kept.version == memory._version  # updated step by step
    again = sparse_index._BatchIndex(memory)
    assert (kept.search(memory, keys, 3) == again.search(memory, keys, 3)).all()


@needs_faiss
def test_past_the_rows_it_scans_faiss_keeps_its_lists_up_to_date(monkeypatch):
    monkeypatch.setattr(sparse_index, "SCAN_ROWS", 10)  # the lists from the 11th row written
    model = _model(dtype=torch.float32, index="faiss", memory_slots=64)
    with torch.no_grad():
        _, state = model(_input(steps=20, dtype=torch.float32))
    memory, keys = state.access.memory, torch.randn(2, 3, 4)
    kept = model.cell.access.finder._cache.get(memory)
    assert kept.written == [None, None]
    again = sparse_index._BatchIndex(memory)
    assert (kept.search(memory, keys, 3) == again.search(memory, keys, 3)).all()


def test_the_written_rows_store_searches_them_all():
    store, generator = sparse_index._Written(3), np.random.default_rng(0)
    vectors = {row: generator.standard_normal(3).astype(np.float32) for row in range(100)}
    for row, vector in vectors.items():
        store.set(row, vector)
    for row in range(0, 100, 3):  # removed rows are replaced by the last
        store.remove(row)
        del vectors[row]
    store.set(5, vectors[5] * 2)
    vectors[5] = vectors[5] * 2
    queries = generator.standard_normal((2, 3)).astype(np.float32)
    scores, rows = store.search(queries, 4)
    table = np.array(list(vectors))
    expected = table[np.argsort(-(queries @ np.stack(list(vectors.values())).T), axis=1)[:, :4]]
    np.testing.assert_array_equal(rows, expected)
    assert store.count == len(vectors)
    few = sparse_index._Written(3)
    few.set(7, vectors[1])
    assert few.search(queries, 2)[1].tolist() == [[7, -1], [7, -1]]


@needs_faiss
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_faiss_in_place_equals_the_reference(dtype):
    inputs = _input(steps=10, batch=2, dtype=dtype)
    sparse = _gradients(_model(dtype=dtype, backend="auto", index="faiss"), inputs)
    reference = _gradients(_model(dtype=dtype, backend="autograd", index="faiss"), inputs)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(sparse[0], reference[0], rtol=0, atol=tolerance)
    for got, want in zip(sparse[1], reference[1], strict=True):
        torch.testing.assert_close(got, want, rtol=tolerance, atol=tolerance)


@needs_faiss
def test_a_copy_of_a_model_with_faiss_runs():
    model = _model(index="faiss")
    model(_input())
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin(_input())[0], model(_input())[0])


# -- the registry and the command line --------------------------------------------------------


def test_registry_builds_both_controllers_with_the_constructors_defaults():
    assert {"sam", "sam-ff"} <= set(ntm.models.names())
    lstm = ntm.models.make(ntm.models.SAMConfig(), 9, 8)
    ff = ntm.models.make(ntm.models.SAMConfig(kind="sam-ff", sparse_reads=8), 9, 8)
    assert type(lstm).__name__ == "SAM" and lstm.cell.controller_kind == "lstm"
    assert ff.cell.controller_kind == "feedforward" and ff.cell.sparse_reads == 8
    assert lstm.cell.memory_slots == 128 and lstm.cell.memory_width == 20
    assert lstm.cell.sparse_reads == 4 and lstm.cell.index == "auto"


SIZES = ["--set", "model.memory_slots=12", "--set", "model.memory_width=6",
         "--set", "model.controller_size=12", "--set", "task.max_length=3",
         "--set", "train.val_every=2", "--set", "train.log_every=1",
         "--set", "train.val_batches=1", "--set", "train.val_batch_size=2",
         "--batch-size", "2", "--no-progress"]


@pytest.mark.parametrize("model", ["sam", "sam-ff"])
def test_train_resume_eval_and_plot_a_sam(tmp_path, model, capsys):
    options = [*SIZES, "--model", model, "--set", "model.sparse_reads=2"]
    run = check_resumed_run_equals_one_run(tmp_path, options)
    # A memory larger than trained with: from FAISS_CROSSOVER slots on, the faiss index.
    slots = sparse_index.FAISS_CROSSOVER if HAS_FAISS else 40
    assert main(["eval", str(run), "--batches", "1", "--batch-size", "2",
                 "--memory-slots", str(slots)]) == 0
    assert f"memory of {slots} slots" in capsys.readouterr().out
    out = tmp_path / "figures"
    assert main(["plot", str(run), "--out", str(out), "--batches", "1",
                 "--batch-size", "2"]) == 0
    assert "weightings.png" in {p.name for p in out.iterdir()}


@pytest.mark.parametrize("task", ntm.tasks.names())
def test_every_task_trains_a_sam(tmp_path, task, capsys):
    assert main(["train", task, "--model", "sam", "--steps", "1", "--out", str(tmp_path),
                 "--set", "model.controller_size=8", "--set", "model.memory_width=4",
                 "--set", "train.val_every=1", "--set", "train.val_batches=1",
                 "--set", "train.val_batch_size=2", "--batch-size", "2", "--no-progress"]) == 0
    assert math.isfinite(read_metrics(tmp_path)[-1]["val_cost"])


def test_a_key_of_another_model_is_refused(capsys):
    assert main(["train", "copy", "--model", "sam", "--set", "model.shift_range=2",
                 "--steps", "1"]) == 2
    assert "shift_range" in capsys.readouterr().err


def test_the_state_type_is_exported():
    assert ntm.SparseState is SparseState and ntm.access.SparseAccess is SparseAccess
