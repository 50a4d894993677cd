"""Variable-length batches (``lengths=`` and PackedSequence input), like ``torch.nn.LSTM``.

The reference is each sequence run alone: a batch with lengths must give the same outputs, the
same final state (every field) and the same gradients of a loss over the valid outputs and the
final state (with respect to the parameters, the input and a given starting state), 1e-12 in
float64 and 1e-6 in float32 (relative to the largest value compared, at least 1), on every
registered backend and plain autograd, with and without batch_first. Outputs past each end are
exactly zero. The design relies on split runs equalling one run on each backend; that is
checked here too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from unittest import mock

import pytest
import torch
from helpers import sequence_of
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence
from toy_memory import ToyAccess

import ntm
from ntm import backends
from ntm.access import DNCAccess, NTMAccess
from ntm.backends.dnc_kernel import SupportedDNCAccess
from ntm.functional import sparse
from ntm.lengths import check_lengths, plan
from ntm.training.evaluate import batch_logits, evaluate_batches

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6}
FAST = settings(max_examples=15, deadline=None)


# Every (access, backend) to check: plain autograd for each access, and every registered
# backend (a backend of an access missing here fails test_every_backend_is_checked).
SMALL = {NTMAccess: lambda dtype: NTMAccess(7, 4, read_heads=2, write_heads=2, shift_range=1,
                                            memory_init="learned", dtype=dtype),
         ToyAccess: lambda dtype: ToyAccess().to(dtype),
         SupportedDNCAccess: lambda dtype: DNCAccess(7, 4, read_heads=2)}
CASES = ([(NTMAccess, "autograd"), (ToyAccess, "autograd")]
         + [(b.access_type, b.name) for b in backends.registered()])
IDS = [f"{access.__name__}-{name}" for access, name in CASES]


def _model(access_type, backend, dtype=torch.float64, batch_first=False, controller="lstm"):
    torch.manual_seed(0)
    return ntm.MemoryRNN(5, 3, SMALL[access_type](dtype), controller=controller,
                         controller_size=6, controller_layers=2, batch_first=batch_first,
                         dtype=dtype, backend=backend)


def _parts(state) -> list[tuple[torch.Tensor, int]]:
    """Every tensor of an NTMState, MemoryState or LSTMState with its batch dimension."""
    if isinstance(state, ntm.LSTMState):
        return [(t, 1) for t in state]
    if isinstance(state, ntm.NTMState):
        return [(t, 0) for t in state[:4]] + [(t, 1) for t in state.controller]
    return ([(t, 1) for t in state.controller] + [(t, 0) for t in state.access]
            + [(state.reads, 0)])


def _given_state(model, batch: int, dtype):
    """A state reached after a few random steps, its tensors leaves that need gradients."""
    with torch.no_grad():
        first = torch.randn(3, batch, model.input_size, dtype=dtype,
                            generator=torch.Generator().manual_seed(5))
        first = first.to(next(model.parameters()).device)
        _, state = model(first.transpose(0, 1) if model.batch_first else first)
    leaves = [t.clone().requires_grad_() for t, _ in _parts(state)]
    if isinstance(state, ntm.LSTMState):
        return ntm.LSTMState(*leaves), leaves
    if isinstance(state, ntm.NTMState):
        return ntm.NTMState(*leaves[:4], tuple(leaves[4:])), leaves
    layers = len(state.controller)
    return ntm.MemoryState(tuple(leaves[:layers]), type(state.access)(*leaves[layers:-1]),
                           leaves[-1]), leaves


def _loss(logits, state) -> torch.Tensor:
    """A loss over the outputs (zero past each end) and every field of the final state."""
    return logits.sin().sum() + sum(0.1 * (i + 1) * t.sin().sum()
                                    for i, (t, _) in enumerate(_parts(state)))


def _close(actual, expected, dtype, what: str) -> None:
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=TOLERANCE[dtype] * scale, rtol=0,
                               msg=lambda m: f"{what}: {m}")


def check_equals_each_alone(model, inputs, lengths, dtype, given_state=False):
    """The batch with ``lengths`` against each sequence run alone: values and gradients."""
    batch_first = model.batch_first
    batch = inputs.size(0 if batch_first else 1)
    state, leaves = _given_state(model, batch, dtype) if given_state else (None, [])
    inputs = inputs.clone().requires_grad_()
    wrt = [*model.parameters(), inputs, *leaves]
    logits, final = model(inputs, state, lengths=lengths)
    grads = torch.autograd.grad(_loss(logits, final), wrt, allow_unused=True)
    total = 0
    for b, length in enumerate(lengths):
        alone = inputs[b:b + 1, :length] if batch_first else inputs[:length, b:b + 1]
        start = None if state is None else sequence_of(state, b)
        if length:
            logits_b, final_b = model(alone, start)
        else:  # no output, and the state it was given (or the initial one)
            channels = logits.size(-1)
            logits_b = logits.new_zeros((1, 0, channels) if batch_first else (0, 1, channels))
            final_b = start if start is not None else model.initial_state(1)
        mine = logits[b:b + 1] if batch_first else logits[:, b:b + 1]
        valid, padding = ((mine[:, :length], mine[:, length:]) if batch_first
                          else (mine[:length], mine[length:]))
        _close(valid, logits_b, dtype, f"outputs of sequence {b}")
        assert not padding.any(), f"outputs past the end of sequence {b} are not zero"
        for i, ((a, dim), (e, _)) in enumerate(zip(_parts(final), _parts(final_b), strict=True)):
            _close(a.narrow(dim, b, 1), e, dtype, f"state field {i} of sequence {b}")
        total = total + _loss(logits_b, final_b)
    expected = torch.autograd.grad(total, wrt, allow_unused=True)
    for i, (a, e) in enumerate(zip(grads, expected, strict=True)):
        if e is None:
            assert a is None or not a.any(), f"gradient {i}"
        else:
            _close(a, e, dtype, f"gradient {i}")


def test_every_backend_is_checked():
    assert {b.access_type for b in backends.registered()} <= set(SMALL)
    assert {"kernel", "python"} <= {name for _, name in CASES}


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_split_runs_equal_one_run_on_each_backend(case, dtype):
    """What the segments rely on: a run split in time, the state passed along, equals one."""
    model = _model(*case, dtype=dtype)
    inputs = torch.randn(7, 4, 5, dtype=dtype, generator=torch.Generator().manual_seed(1))
    results = []
    for splits in ([7], [3, 1, 3]):
        x = inputs.clone().requires_grad_()
        state, pieces = None, []
        for piece in x.split(splits):
            logits, state = model(piece, state)
            pieces.append(logits)
        logits = torch.cat(pieces)
        grads = torch.autograd.grad(_loss(logits, state), [*model.parameters(), x])
        results.append([logits, *(t for t, _ in _parts(state)), *grads])
    for a, e in zip(*results, strict=True):
        _close(a, e, dtype, "split run")


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@FAST
@given(data=st.data())
def test_a_batch_with_lengths_equals_each_sequence_alone(case, dtype, data):
    batch = data.draw(st.integers(1, 5), label="batch")
    steps = data.draw(st.integers(0, 7), label="steps")
    lengths = data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch),
                        label="lengths")
    batch_first = data.draw(st.booleans(), label="batch_first")
    given_state = data.draw(st.booleans(), label="given_state")
    model = _model(*case, dtype=dtype, batch_first=batch_first)
    shape = (batch, steps, 5) if batch_first else (steps, batch, 5)
    inputs = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(batch))
    check_equals_each_alone(model, inputs, lengths, dtype, given_state)


def freeze_above(elements: int):
    """Within it, an access that freezes_ended runs frozen above ``elements`` state
    elements (0: always; the default leaves the tests' small SAMs sorted and split)."""
    return mock.patch.object(ntm.core, "FREEZE_ELEMENTS", elements)


def _sam(backend: str, dtype=torch.float64, batch_first=False) -> ntm.SAM:
    torch.manual_seed(0)
    return ntm.SAM(5, 3, controller_size=6, controller_layers=2, memory_slots=7, memory_width=4,
                   read_heads=2, sparse_reads=2, index="exact", batch_first=batch_first,
                   dtype=dtype, backend=backend)


@pytest.mark.parametrize("path", ["frozen", "sorted"])
@pytest.mark.parametrize("backend", ["auto", "autograd", "auto-rows"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@FAST
@given(data=st.data())
def test_sam_with_lengths_equals_each_sequence_alone(path, backend, dtype, data):
    """SAM's batch with lengths, frozen (in its own order, ended sequences frozen: its memory
    is changed in place, and sorting would copy it; the path of a large state) or sorted and
    split (a small state's): outputs, final state and gradients as each alone, on the
    in-place path (the memory's gradient kept whole, or row by row: "auto-rows") and the
    reference. From a given state: tests/test_sam.py."""
    batch = data.draw(st.integers(1, 5), label="batch")
    steps = data.draw(st.integers(0, 7), label="steps")
    lengths = data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch),
                        label="lengths")
    batch_first = data.draw(st.booleans(), label="batch_first")
    model = _sam(backend.removesuffix("-rows"), dtype, batch_first)
    assert model.cell.access.freezes_ended
    shape = (batch, steps, 5) if batch_first else (steps, batch, 5)
    inputs = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(batch))
    dense = 0 if backend.endswith("-rows") else sparse.DENSE_GRADIENT_ELEMENTS
    with (mock.patch.object(sparse, "DENSE_GRADIENT_ELEMENTS", dense),
          freeze_above(0 if path == "frozen" else 1 << 40)):
        check_equals_each_alone(model, inputs, lengths, dtype)


def test_sam_runs_frozen_only_where_its_state_is_large(monkeypatch):
    """Sorting a small state copies little and the batch shrinks as sequences end; a large
    one is frozen in place (ntm.core.FREEZE_ELEMENTS)."""
    frozen = []
    model = _sam("auto")
    original = model._run_frozen
    monkeypatch.setattr(model, "_run_frozen", lambda *a: frozen.append(1) or original(*a))
    inputs = torch.randn(4, 2, 5, dtype=torch.float64)
    model(inputs, lengths=[4, 2])
    assert not frozen  # 2 x 7 x 4 memory: sorted
    monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 2 * 7 * 4)
    model(inputs, lengths=[4, 2])
    assert frozen == [1]  # the whole state is more than the memory alone


def test_nan_padding_changes_nothing():
    """The padding is zeroed before anything runs on it: a NaN there reaches neither the
    outputs nor the gradients (the input projection runs over the padding)."""
    model = _model(NTMAccess, "auto")
    inputs = torch.randn(6, 2, 5, dtype=torch.float64)
    clean, _ = model(inputs, lengths=[6, 3])
    inputs[3:, 1] = float("nan")
    logits, _ = model(inputs, lengths=[6, 3])
    torch.testing.assert_close(logits, clean, rtol=0, atol=0)
    logits.sum().backward()
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lengths_as_a_tensor_and_a_feedforward_controller(case):
    model = _model(*case, controller="feedforward")
    inputs = torch.randn(9, 6, 5, dtype=torch.float64)
    lengths = torch.tensor([9, 2, 0, 5, 9, 1], dtype=torch.int32)
    check_equals_each_alone(model, inputs, lengths.tolist(), torch.float64, given_state=True)
    by_tensor, _ = model(inputs, lengths=lengths)
    by_list, _ = model(inputs, lengths=lengths.tolist())
    assert torch.equal(by_tensor, by_list)


@pytest.mark.parametrize("backend", ["kernel", "python", "autograd"])
def test_the_ntm_takes_lengths_in_float32(backend):
    torch.manual_seed(0)
    model = ntm.NTM(9, 8, memory_slots=16, memory_width=6, controller_size=12, backend=backend)
    batch = ntm.tasks.make("copy", max_length=6).sample(5, torch.Generator().manual_seed(2))
    check_equals_each_alone(model, batch.inputs, batch.lengths.tolist(), torch.float32,
                            given_state=True)


def test_full_lengths_change_nothing():
    """Every sequence as long as the input: the very same numbers as without lengths."""
    model = _model(NTMAccess, "auto")
    inputs = torch.randn(6, 3, 5, dtype=torch.float64)
    plain, state = model(inputs)
    with_lengths, state_lengths = model(inputs, lengths=[6, 6, 6])
    assert torch.equal(plain, with_lengths)
    assert all(torch.equal(a, b) for (a, _), (b, _) in
               zip(_parts(state), _parts(state_lengths), strict=True))


def test_length_zero_keeps_the_state_and_gives_zeros():
    model = _model(NTMAccess, "auto")
    state, _ = _given_state(model, 2, torch.float64)
    logits, final = model(torch.randn(4, 2, 5, dtype=torch.float64), state, lengths=[0, 0])
    assert logits.shape == (4, 2, 3) and not logits.any()
    assert all(torch.equal(a, b) for (a, _), (b, _) in
               zip(_parts(final), _parts(state), strict=True))
    logits, final = model(torch.zeros(0, 3, 5, dtype=torch.float64), lengths=[0, 0, 0])
    assert logits.shape == (0, 3, 3) and final.reads.shape == (3, 8)


def test_the_batch_shrinks_as_sequences_end():
    """Without packed runs: one backend call per distinct length, on the sequences not yet
    ended."""
    model = _model(NTMAccess, "python")
    seen = []
    original = model._sequence

    def spy(projected, carry, record):
        seen.append(tuple(projected.shape[:2]))
        return original(projected, carry, record)

    model._sequence = spy
    model(torch.randn(8, 5, 5, dtype=torch.float64), lengths=[3, 8, 0, 3, 5])
    assert seen == [(3, 4), (2, 2), (3, 1)]
    assert [tuple(s) for s in plan(torch.tensor([3, 8, 0, 3, 5])).segments] == [
        (0, 0, 5, 4), (0, 3, 4, 2), (3, 5, 2, 1), (5, 8, 1, 0)]


def test_the_kernel_runs_the_batch_in_one_call_as_a_packed_sequence(monkeypatch):
    """The kernel takes the sorted batch once, with the sequences running at each step."""
    if ntm.backends.kernel.unavailable(torch.zeros(1, 1, 1)) is not None:
        pytest.skip("the C++ kernel is not available here")
    calls = []
    forward = ntm.backends.kernel._forward

    def spy(projected, *rest):
        calls.append((tuple(projected.shape[:2]), rest[-1]))
        return forward(projected, *rest)

    monkeypatch.setattr(ntm.backends.kernel, "_forward", spy)
    model = _model(NTMAccess, "kernel")
    model(torch.randn(9, 5, 5, dtype=torch.float64), lengths=[3, 8, 0, 3, 5])
    assert calls == [((8, 5), [4, 4, 4, 2, 2, 1, 1, 1])]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_a_packed_sequence_gives_a_packed_sequence(batch_first, enforce_sorted):
    model = _model(NTMAccess, "auto", batch_first=batch_first)
    lengths = [5, 3, 3, 1] if enforce_sorted else [3, 5, 1, 3]
    generator = torch.Generator().manual_seed(3)
    sequences = [torch.randn(n, 5, dtype=torch.float64, generator=generator) for n in lengths]
    packed = pack_sequence(sequences, enforce_sorted=enforce_sorted)
    output, state = model(packed)
    assert isinstance(output, PackedSequence)
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    for mine, theirs in ((output.sorted_indices, packed.sorted_indices),
                         (output.unsorted_indices, packed.unsorted_indices)):
        assert (mine is None and theirs is None) or torch.equal(mine, theirs)
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=batch_first)
    expected, expected_state = model(padded, lengths=lengths)
    unpacked, unpacked_lengths = pad_packed_sequence(output, batch_first=batch_first)
    assert unpacked_lengths.tolist() == lengths
    _close(unpacked, expected, torch.float64, "outputs")
    for (a, _), (b, _) in zip(_parts(state), _parts(expected_state), strict=True):
        _close(a, b, torch.float64, "state")
    output.data.sum().backward()  # gradients flow through the packed output


@pytest.mark.parametrize("kind", ["ntm", "sam", "sam-frozen"])
def test_trace_takes_lengths(kind, monkeypatch):
    torch.manual_seed(0)
    if kind == "sam-frozen":
        monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 0)
    model = (_sam("auto") if kind.startswith("sam") else
             ntm.NTM(5, 3, memory_slots=7, memory_width=4, controller_size=6,
                     dtype=torch.float64))
    inputs = torch.randn(6, 3, 5, dtype=torch.float64)
    lengths = [2, 6, 0]
    for grad in (False, True):  # the plain loop, and the backend that runs with gradients
        with torch.set_grad_enabled(grad):
            _, _, trace = model.trace(inputs.requires_grad_(grad), lengths=lengths)
            for b, length in enumerate(lengths):
                _, _, alone = model.trace(inputs[:length, b:b + 1])
                for field, field_alone in zip(ntm.core._flat_state(trace),
                                              ntm.core._flat_state(alone), strict=True):
                    _close(field[:length, b:b + 1], field_alone, torch.float64, "trace")
                    assert not field[length:, b].any()


@pytest.mark.parametrize("lengths, message", [
    ([1, 2], r"lengths must have one entry per sequence. Expected shape \[3\], got \[2\]"),
    (torch.ones(3, 1, dtype=torch.long), r"Expected shape \[3\], got \[3, 1\]"),
    ([1, -1, 2], r"lengths must lie in 0..4 \(the input's steps\). Expected 0 <= lengths\[1\]"
                 r" <= 4, got -1"),
    ([1, 5, 2], r"Expected 0 <= lengths\[1\] <= 4, got 5"),
    ([1, 2.0, 2], r"lengths must hold integers. Expected an int at index 1, got 2.0"),
    ([1, True, 2], r"Expected an int at index 1, got True"),
    (torch.tensor([1.0, 2.0, 3.0]), r"Expected an integer tensor, got dtype torch.float32"),
    (torch.tensor([True, True, True]), r"got dtype torch.bool"),
    ("123", r"lengths must be a \[B\] integer tensor or list, got str"),
])
def test_bad_lengths_are_one_line_errors(lengths, message):
    model = _model(NTMAccess, "auto")
    with pytest.raises(ValueError, match=message) as raised:
        model(torch.zeros(4, 3, 5, dtype=torch.float64), lengths=lengths)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=message):
        ntm.LSTMBaseline(5, 3, hidden_size=4)(torch.zeros(4, 3, 5), lengths=lengths)


def test_lengths_with_unbatched_or_packed_input_are_errors():
    model = _model(NTMAccess, "auto")
    with pytest.raises(ValueError, match=r"lengths needs a batched input \[T, B, I\]"):
        model(torch.zeros(4, 5, dtype=torch.float64), lengths=[4])
    packed = pack_sequence([torch.zeros(2, 5, dtype=torch.float64)])
    with pytest.raises(ValueError, match="lengths must be None for a PackedSequence input"):
        model(packed, lengths=[2])
    assert check_lengths((2, 0), 2, 3).tolist() == [2, 0]


@pytest.mark.parametrize("batch_first", [False, True])
def test_the_lstm_baseline_takes_lengths_and_packed_sequences(batch_first):
    torch.manual_seed(0)
    model = ntm.LSTMBaseline(5, 3, hidden_size=7, num_layers=2, batch_first=batch_first,
                             dtype=torch.float64)
    lengths = [4, 0, 6, 1, 4]
    shape = (5, 6, 5) if batch_first else (6, 5, 5)
    check_equals_each_alone(model, torch.randn(*shape, dtype=torch.float64), lengths,
                            torch.float64, given_state=True)
    sequences = [torch.randn(n, 5, dtype=torch.float64) for n in (2, 5, 3)]
    packed = pack_sequence(sequences, enforce_sorted=False)
    output, state = model(packed)
    hidden, (h, c) = model.lstm(packed)
    assert isinstance(output, PackedSequence) and torch.equal(output.data,
                                                              model.output(hidden.data))
    assert torch.equal(output.sorted_indices, packed.sorted_indices)
    assert torch.equal(state.hidden, h) and torch.equal(state.cell, c)
    wrong = model.initial_state(2)
    with pytest.raises(ValueError, match=r"state.hidden must have shape \(2, 5, 7\), got"):
        model(torch.zeros(shape, dtype=torch.float64), wrong, lengths=[1, 2, 3, 4, 5])


def test_tasks_give_the_length_of_every_sequence():
    for name in ("copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort"):
        task = ntm.tasks.make(name)
        batch = task.sample(6, generator=torch.Generator().manual_seed(0))
        ntm.tasks.check_batch(task, batch, 6)
        steps = batch.inputs.size(0)
        assert batch.lengths.dtype == torch.int64 and batch.lengths.shape == (6,), name
        assert int(batch.lengths.max()) == steps, name
        past = torch.arange(steps).unsqueeze(1) >= batch.lengths  # (T, B)
        assert not batch.mask[past].any() and not batch.inputs[past].any(), name
        assert not batch.targets[past].any(), name
        assert batch.to("cpu").lengths is batch.lengths  # stays on the CPU


def test_check_batch_names_wrong_lengths():
    task = ntm.tasks.make("copy", max_length=3)
    batch = task.sample(2, generator=torch.Generator().manual_seed(0))
    ntm.tasks.check_batch(task, batch._replace(lengths=None), 2)  # a custom task's: allowed
    short = batch.lengths.clone()
    short[0] = 1
    for lengths, message in ((short, "Batch.mask scores step"),
                             (batch.lengths.int(), "must be an int64 tensor or None"),
                             (batch.lengths[:1], r"must have shape \[batch\] = \[2\]"),
                             (batch.lengths * 0, r"must lie in 1\.\.")):
        with pytest.raises(ValueError, match=message):
            ntm.tasks.check_batch(task, batch._replace(lengths=lengths), 2)


class _Padded(nn.Module):
    """A custom model whose forward has no ``lengths``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(9, 8)

    def forward(self, input, state=None):
        return self.linear(input), state


def test_training_and_evaluation_pass_lengths_where_the_model_takes_them():
    torch.manual_seed(0)
    model = ntm.NTM(9, 8, memory_slots=8, memory_width=4, controller_size=8)
    batch = ntm.tasks.make("copy", max_length=5).sample(4, torch.Generator().manual_seed(1))
    logits = batch_logits(model, batch)
    past = torch.arange(batch.inputs.size(0)).unsqueeze(1) >= batch.lengths
    assert not logits[past].any()  # stopped at each end
    padded, _ = model(batch.inputs)
    torch.testing.assert_close(logits[~past], padded[~past], atol=1e-6, rtol=1e-5)
    plain = _Padded()
    assert torch.equal(batch_logits(plain, batch), plain(batch.inputs)[0])
    with_lengths = evaluate_batches(model, [batch])
    without = evaluate_batches(model, [batch._replace(lengths=None)])
    assert with_lengths == pytest.approx(without, rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_lengths_on_cuda():
    for model in (_model(NTMAccess, "auto"),
                  ntm.LSTMBaseline(5, 3, hidden_size=7, num_layers=2, dtype=torch.float64)):
        model = model.cuda()
        inputs = torch.randn(6, 4, 5, dtype=torch.float64, device="cuda")
        check_equals_each_alone(model, inputs, [6, 2, 0, 4], torch.float64, given_state=True)


def test_the_benchmark_runs(tmp_path):
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "lengths.py"
    spec = importlib.util.spec_from_file_location("lengths_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    result = benchmark.measure(["python"], steps=1, warmup=0, batch_size=3, max_length=2)
    assert set(result["milliseconds"]) == {"python/padded", "python/lengths"}
    assert "| python |" in benchmark.table(result, ["python"])
