"""Associative recall's near items (``task.near_items``), and training-only task parameters."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import train_until_diverged, untimed_metrics

from ntm import tasks
from ntm.rundir.checkpoint import STATE_FILE, read_counters
from ntm.rundir.config import TaskConfig
from ntm.tasks.associative_recall import AssociativeRecallTask
from ntm.training import (
    ConfigError,
    apply_overrides,
    build_task,
    preset_config,
    train,
)


def decode(task: AssociativeRecallTask, inputs: torch.Tensor, targets: torch.Tensor):
    """One sequence's items ``[n, l*W]``, its query position and its target ``[l*W]``, read
    from ``inputs [T, W+2]`` and ``targets [T, W]`` by the layout of the task's docstring."""
    width, length = task.width, task.item_length
    block = length + 1
    query_start = int(torch.nonzero(inputs[:, width + 1])[0])
    items = torch.stack([inputs[i * block + 1:(i + 1) * block, :width].flatten()
                         for i in range(query_start // block)])
    query = inputs[query_start + 1:query_start + 1 + length, :width].flatten()
    answer_start = query_start + length + 2
    target = targets[answer_start:answer_start + length].flatten()
    return items, query, target


def draw(batch_size: int, seed: int = 0, **params):
    task = tasks.make("associative_recall", **params)
    batch = task.sample(batch_size, generator=torch.Generator().manual_seed(seed))
    return task, [decode(task, batch.inputs[:, b], batch.targets[:, b])
                  for b in range(batch_size)]


def near_distances(items: torch.Tensor, query: torch.Tensor) -> list[int]:
    """The Hamming distances from the query to every item that is not the query itself."""
    distances = (items != query).sum(1).tolist()
    return [d for d in distances if d > 0]


def test_no_near_items_draws_the_papers_batches_unchanged():
    generator = torch.Generator().manual_seed(3)
    paper = tasks.make("associative_recall").sample(64, generator=generator)
    generator = torch.Generator().manual_seed(3)
    explicit = tasks.make("associative_recall", near_items=0.0, near_bits=5).sample(
        64, generator=generator)
    for field in ("inputs", "targets", "mask", "lengths"):
        assert torch.equal(getattr(paper, field), getattr(explicit, field))


@pytest.mark.parametrize("near_bits", [1, 3, 18])
def test_every_sequence_holds_a_near_item_and_its_answer_follows_the_query(near_bits):
    task, sequences = draw(600, near_items=1.0, near_bits=near_bits, max_items=5)
    seen = set()
    for items, query, target in sequences:
        matches = [i for i in range(len(items)) if torch.equal(items[i], query)]
        assert len(matches) == 1  # the query item itself, and no other copy of it
        assert torch.equal(target, items[matches[0] + 1])  # the answer is the query's successor
        near = [d for d in near_distances(items, query) if d <= near_bits]
        assert near, "no item within near_bits of the query"
        seen.add(min(near))
    # k is uniform over 1..near_bits: with 600 draws every value shows up (3 of 18 at least).
    assert seen == set(range(1, near_bits + 1)) if near_bits <= 3 else len(seen) >= 3


def test_the_near_item_is_any_item_but_the_query_uniformly():
    task, sequences = draw(3000, seed=1, near_items=1.0, near_bits=1, min_items=4, max_items=4)
    where = {"before": 0, "after": 0, "successor": 0}
    for items, query, _ in sequences:
        position = next(i for i in range(4) if torch.equal(items[i], query))
        near = next(i for i in range(4) if (items[i] != query).sum() == 1)
        key = "successor" if near == position + 1 else (
            "before" if near < position else "after")
        where[key] += 1
    # Query 0..2 uniform, near item uniform over the 3 others: P(successor) = 1/3,
    # P(before) = (0 + 1 + 2) / 9 = 1/3, P(after, not the successor) = 1/3.
    for count in where.values():
        assert abs(count / 3000 - 1 / 3) < 0.04


def test_the_probability_is_the_fraction_of_sequences_with_a_near_item():
    _, sequences = draw(4000, seed=2, near_items=0.3, near_bits=2)
    with_near = sum(min(near_distances(items, query), default=99) <= 2
                    for items, query, _ in sequences)
    # Random items come within 2 bits of the query about (1 + 18 + 153) / 2^18 of the time.
    assert abs(with_near / 4000 - 0.3) < 3 * math.sqrt(0.3 * 0.7 / 4000) + 0.002


@pytest.mark.parametrize(("params", "named"), [
    ({"near_items": -0.1}, "near_items must be in \\[0, 1\\]"),
    ({"near_items": 1.5}, "near_items must be in \\[0, 1\\]"),
    ({"near_items": float("nan")}, "near_items must be in \\[0, 1\\]"),
    ({"near_items": "a"}, "near_items must be a number"),
    ({"near_bits": 0}, "near_bits must be at least 1"),
    ({"near_items": 0.5, "near_bits": 19}, "near_bits must be at most item_length \\* width = 18"),
])
def test_bad_near_item_parameters_name_the_parameter(params, named):
    with pytest.raises(ValueError, match=named):
        tasks.make("associative_recall", **params)


def test_tiny_items_keep_the_default_near_bits_while_no_near_items_are_drawn():
    task = tasks.make("associative_recall", item_length=1, width=1)  # 1 bit per item
    assert task.params["near_bits"] == 3 and task.sample(4).inputs.shape[1] == 4
    with pytest.raises(ValueError, match="near_bits must be at most item_length \\* width = 1"):
        tasks.make("associative_recall", item_length=1, width=1, near_items=0.1)


def test_held_out_tasks_leave_training_only_parameters_at_their_defaults():
    config = TaskConfig("associative_recall", {"near_items": 0.5, "near_bits": 2,
                                               "max_items": 5})
    held_out = build_task(config)
    assert held_out.params["near_items"] == 0.0 and held_out.params["near_bits"] == 3
    assert held_out.params["max_items"] == 5  # every other parameter is the run's
    training = build_task(config, training=True)
    assert training.params["near_items"] == 0.5 and training.params["near_bits"] == 2
    asked = build_task(config, near_items=1.0)  # an explicit override is the caller's choice
    assert asked.params["near_items"] == 1.0 and asked.params["near_bits"] == 3
    with pytest.raises(ConfigError, match="near_items must be in"):
        apply_overrides(preset_config("associative_recall"), ["task.near_items=2"])


def test_training_draws_near_items_and_validation_does_not(tmp_path, monkeypatch):
    config = apply_overrides(preset_config("associative_recall"), [
        "model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=4", "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=2", "train.steps=4",
        "task.near_items=1", "task.near_bits=2", "task.max_items=3", "task.opening=none",
        "task.curriculum=8",
        "task.harden_below=none"])  # from the start (the preset waits for 0.1 bits)
    drawn = []
    original = AssociativeRecallTask.sample

    def recording(self, batch_size, generator=None):
        drawn.append((batch_size, self.near_items, self.max_items))
        return original(self, batch_size, generator)

    monkeypatch.setattr(AssociativeRecallTask, "sample", recording)
    train(config, tmp_path / "run", progress=False)
    validation = {(near, items) for size, near, items in drawn if size == 3}
    training = [(near, items) for size, near, items in drawn if size == 4]
    assert validation == {(0.0, 3)}
    # Every training batch, in the curriculum's stages (2 items) and after, has near items.
    assert len(training) == 4 and {near for near, _ in training} == {1.0}
    assert training[0][1] == 2 and training[-1][1] == 3


TINY_RECALL = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
               "train.batch_size=4", "train.log_every=1", "train.val_every=2",
               "train.val_batches=1", "train.val_batch_size=3", "train.checkpoint_every=2",
               "task.max_items=3", "task.near_items=1", "task.opening=none"]


def training_near_items(config, out, monkeypatch, *, resume: bool = False) -> list[float]:
    """Trains ``config`` into ``out`` (or resumes it); returns the near-item probability of each
    training batch."""
    drawn = []
    original = AssociativeRecallTask.sample

    def recording(self, batch_size, generator=None):
        if batch_size == 4:
            drawn.append(self.near_items)
        return original(self, batch_size, generator)

    monkeypatch.setattr(AssociativeRecallTask, "sample", recording)
    train(config, out, resume=resume, progress=False)
    monkeypatch.undo()
    return drawn


def test_harden_below_holds_near_items_back_until_a_validation_under_it(tmp_path, monkeypatch):
    # The untrained model costs about 3 * 6 bits per sequence: under 1,000, over 0.001.
    reached = apply_overrides(preset_config("associative_recall"),
                              [*TINY_RECALL, "train.steps=6", "task.harden_below=1000"])
    assert training_near_items(reached, tmp_path / "reached", monkeypatch) == [0, 0, 1, 1, 1, 1]
    never = apply_overrides(reached, ["task.harden_below=0.001"])
    assert training_near_items(never, tmp_path / "never", monkeypatch) == [0] * 6
    # Until it hardens, a run trains on the batches of a run without near items.
    plain = apply_overrides(never, ["task.near_items=0", "task.harden_below=none"])
    training_near_items(plain, tmp_path / "plain", monkeypatch)
    assert untimed_metrics(tmp_path / "never") == untimed_metrics(tmp_path / "plain")
    with_curriculum = apply_overrides(reached, ["task.curriculum=16"])  # stages, then full
    assert training_near_items(with_curriculum, tmp_path / "stages",
                               monkeypatch) == [0, 0, 1, 1, 1, 1]


def test_a_hardened_run_resumes_as_one_that_never_stopped(tmp_path, monkeypatch):
    config = apply_overrides(preset_config("associative_recall"),
                             [*TINY_RECALL, "train.steps=8", "task.harden_below=1000"])
    train(config, tmp_path / "whole", progress=False)
    # Stopped after the checkpoint of step 4; hardened at step 2.
    train_until_diverged(config, tmp_path / "pieces", monkeypatch, call=6)
    assert read_counters(tmp_path / "pieces" / STATE_FILE)["hardened_step"] == 2
    resumed = training_near_items(config, tmp_path / "pieces", monkeypatch, resume=True)
    assert resumed == [1] * 4  # steps 5-8, hardened since step 2
    assert untimed_metrics(tmp_path / "whole") == untimed_metrics(tmp_path / "pieces")


@pytest.mark.parametrize(("override", "message"), [
    ("task.harden_below=0", "task.harden_below must be above 0"),
    ("task.harden_below=-1", "task.harden_below must be above 0"),
    ("task.harden_below=x", "task.harden_below"),
])
def test_bad_harden_below_is_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset_config("associative_recall"), [override])
    with pytest.raises(ConfigError, match="'copy' has no training-only parameters.*"
                                          "associative_recall"):
        apply_overrides(preset_config("copy"), ["task.harden_below=0.1"])
