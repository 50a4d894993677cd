"""Each task's format, re-derived in NumPy and plain Python from the inputs alone (the paper's
formats, Graves et al. 2014, section 4, as the docstrings of ``ntm.tasks`` give them)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm import tasks

FAST = settings(max_examples=12, deadline=None)


def sample_numpy(task: tasks.Task, batch_size: int, seed: int):
    batch = task.sample(batch_size, generator=torch.Generator().manual_seed(seed))
    return batch.inputs.numpy(), batch.targets.numpy(), batch.mask.numpy()


def mask_between(steps: int, start: int, stop: int) -> np.ndarray:
    scored = np.zeros(steps, dtype=bool)
    scored[start:stop] = True
    return scored


def only_one(row: np.ndarray) -> int:
    """The index of the single 1 in ``row``."""
    (where,) = np.flatnonzero(row == 1).tolist()
    return where


@FAST
@given(
    min_length=st.integers(1, 6),
    extra=st.integers(0, 6),
    width=st.integers(1, 9),
    batch_size=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_copy(min_length: int, extra: int, width: int, batch_size: int, seed: int) -> None:
    task = tasks.make("copy", min_length=min_length, max_length=min_length + extra, width=width)
    inputs, targets, mask = sample_numpy(task, batch_size, seed)
    steps = inputs.shape[0]
    lengths = []
    for b in range(batch_size):
        length = only_one(inputs[:, b, width])  # the delimiter step
        lengths.append(length)
        assert min_length <= length <= min_length + extra
        data = inputs[:length, b, :width]
        assert set(np.unique(data)) <= {0.0, 1.0}
        np.testing.assert_array_equal(targets[length + 1 : 2 * length + 1, b], data)
        np.testing.assert_array_equal(mask[:, b], mask_between(steps, length + 1, 2 * length + 1))
        assert (inputs[length:, b, :width] == 0).all()
        assert (inputs[length + 1 :, b] == 0).all()
    assert steps == 2 * max(lengths) + 1


def test_copy_lengths_cover_the_range() -> None:
    task = tasks.make("copy", min_length=3, max_length=7, width=1)
    inputs, _, _ = sample_numpy(task, 400, seed=0)
    lengths = np.argmax(inputs[:, :, 1], axis=0)
    assert set(lengths.tolist()) == {3, 4, 5, 6, 7}


@FAST
@given(
    min_length=st.integers(1, 4),
    extra_length=st.integers(0, 3),
    min_repeats=st.integers(1, 4),
    extra_repeats=st.integers(0, 4),
    width=st.integers(1, 5),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_repeat_copy(
    min_length: int,
    extra_length: int,
    min_repeats: int,
    extra_repeats: int,
    width: int,
    batch_size: int,
    seed: int,
) -> None:
    task = tasks.make(
        "repeat_copy",
        min_length=min_length,
        max_length=min_length + extra_length,
        min_repeats=min_repeats,
        max_repeats=min_repeats + extra_repeats,
        width=width,
    )
    inputs, targets, mask = sample_numpy(task, batch_size, seed)
    steps = inputs.shape[0]
    sequence_steps = []
    for b in range(batch_size):
        length = only_one(inputs[:, b, width])
        encoded = inputs[length, b, width + 1]
        repeats = round(encoded * 2.872 + 5.5)  # undo the fixed training normalisation
        assert abs(encoded - (repeats - 5.5) / 2.872) < 1e-5
        assert min_repeats <= repeats <= min_repeats + extra_repeats
        assert np.count_nonzero(inputs[:, b, width + 1]) <= 1  # only on the delimiter step
        end = length + 1 + length * repeats  # the end-marker step
        sequence_steps.append(end + 1)

        data = inputs[:length, b, :width]
        copies = np.tile(data, (repeats, 1))
        np.testing.assert_array_equal(targets[length + 1 : end, b, :width], copies)
        assert (targets[end, b, :width] == 0).all()
        assert only_one(targets[:, b, width]) == end
        np.testing.assert_array_equal(mask[:, b], mask_between(steps, length + 1, end + 1))
        assert (inputs[length + 1 :, b] == 0).all()
    assert steps == max(sequence_steps)


def test_repeat_copy_normalises_with_the_training_statistics() -> None:
    task = tasks.make("repeat_copy", min_length=2, max_length=2, min_repeats=20, max_repeats=20)
    inputs, targets, mask = sample_numpy(task, 2, seed=0)
    assert inputs.shape[0] == 2 * 21 + 2
    np.testing.assert_allclose(inputs[2, :, 9], (20 - 5.5) / 2.872, rtol=1e-6)
    assert mask.sum(0).tolist() == [41, 41]


@FAST
@given(
    min_items=st.integers(2, 5),
    extra=st.integers(0, 4),
    item_length=st.integers(1, 4),
    width=st.integers(1, 6),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_associative_recall(
    min_items: int, extra: int, item_length: int, width: int, batch_size: int, seed: int
) -> None:
    task = tasks.make(
        "associative_recall",
        min_items=min_items,
        max_items=min_items + extra,
        item_length=item_length,
        width=width,
    )
    inputs, targets, mask = sample_numpy(task, batch_size, seed)
    steps = inputs.shape[0]
    sequence_steps = []
    for b in range(batch_size):
        # Parse the input stream step by step, as a reader of the format would.
        items, query, t = [], None, 0
        while inputs[t, b, width] == 1:
            assert (inputs[t, b, :width] == 0).all() and inputs[t, b, width + 1] == 0
            items.append(inputs[t + 1 : t + 1 + item_length, b, :width].tolist())
            t += item_length + 1
        assert inputs[t, b, width + 1] == 1  # query delimiter
        query = inputs[t + 1 : t + 1 + item_length, b, :width].tolist()
        assert inputs[t + 1 + item_length, b, width + 1] == 1  # closing query delimiter
        answer_start = t + item_length + 2
        num_items = len(items)
        assert min_items <= num_items <= min_items + extra
        assert answer_start + item_length == (item_length + 1) * num_items + 2 * item_length + 2

        # The query is one of the first n - 1 items; the answer is the item after it. Random
        # items can repeat, so accept the item after any match.
        followers = [items[i + 1] for i in range(num_items - 1) if items[i] == query]
        assert followers, "the query is one of the first n - 1 items"
        answer = targets[answer_start : answer_start + item_length, b].tolist()
        assert answer in followers
        np.testing.assert_array_equal(
            mask[:, b], mask_between(steps, answer_start, answer_start + item_length)
        )
        assert (inputs[answer_start:, b] == 0).all()
        sequence_steps.append(answer_start + item_length)
    assert steps == max(sequence_steps)


def test_associative_recall_paper_steps_and_query_distribution() -> None:
    task = tasks.make("associative_recall", min_items=3, max_items=3)
    inputs, targets, _ = sample_numpy(task, 2000, seed=1)
    assert inputs.shape == (4 * 3 + 8, 2000, 8)
    # The query (steps 13..15) is item 0 (steps 1..3) or item 1 (steps 5..7), each half the time.
    is_first = (inputs[13:16, :, :6] == inputs[1:4, :, :6]).all(axis=(0, 2))
    is_second = (inputs[13:16, :, :6] == inputs[5:8, :, :6]).all(axis=(0, 2))
    assert (is_first | is_second).all()
    assert 0.45 < is_first.mean() < 0.55
    assert (targets[17:20, is_first & ~is_second] == inputs[5:8, is_first & ~is_second, :6]).all()


@FAST
@given(
    num_inputs=st.integers(1, 12),
    data=st.data(),
    width=st.integers(1, 8),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_priority_sort(num_inputs: int, data, width: int, batch_size: int, seed: int) -> None:
    num_outputs = data.draw(st.integers(1, num_inputs))
    task = tasks.make("priority_sort", num_inputs=num_inputs, num_outputs=num_outputs, width=width)
    inputs, targets, mask = sample_numpy(task, batch_size, seed)
    assert inputs.shape[0] == num_inputs + 1 + num_outputs
    priorities = inputs[:num_inputs, :, width]  # (n_in, B)
    assert (np.abs(priorities) <= 1).all()
    order = np.argsort(-priorities, axis=0, kind="stable")[:num_outputs]  # (n_out, B)
    for b in range(batch_size):
        expected = inputs[order[:, b], b, :width]
        np.testing.assert_array_equal(targets[num_inputs + 1 :, b], expected)
    assert (inputs[num_inputs, :, width + 1] == 1).all()
    assert (inputs[num_inputs, :, : width + 1] == 0).all()
    assert (inputs[:num_inputs, :, width + 1] == 0).all()
    assert (inputs[num_inputs + 1 :] == 0).all()
    answer_steps = np.arange(inputs.shape[0]) > num_inputs
    np.testing.assert_array_equal(mask, np.broadcast_to(answer_steps[:, None], mask.shape))


def test_priority_sort_priorities_span_minus_one_to_one() -> None:
    inputs, _, _ = sample_numpy(tasks.make("priority_sort"), 200, seed=2)
    priorities = inputs[:20, :, 8]
    assert priorities.min() < -0.99 and priorities.max() > 0.99
    assert abs(priorities.mean()) < 0.05


@FAST
@given(
    order=st.integers(1, 5),
    length=st.integers(1, 40),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_ngrams(order: int, length: int, batch_size: int, seed: int) -> None:
    task = tasks.make("ngrams", order=order, length=length)
    inputs, targets, mask = sample_numpy(task, batch_size, seed)
    assert inputs.shape == (length, batch_size, 1) and targets.shape == (length, batch_size, 1)
    assert (inputs[0] == 0).all()
    np.testing.assert_array_equal(inputs[1:], targets[:-1])  # the input is the previous bit
    assert set(np.unique(targets)) <= {0.0, 1.0}
    assert mask.all()
