"""Tests of the length curriculum (ntm.tasks.curriculum, task.curriculum in training)."""

import pytest
from helpers import train_until_diverged, untimed_metrics

from ntm import tasks
from ntm.tasks.curriculum import curriculum_of, stage_params
from ntm.training import ConfigError, apply_overrides, preset_config, train


def test_stages_grow_from_the_start_parameter_to_the_full_one_in_whole_steps():
    copy = tasks.make("copy", min_length=2, max_length=6)  # 5 lengths: 2..6
    assert [stage_params(copy, f)["max_length"] for f in (0, 0.19, 0.2, 0.5, 0.8, 0.99, 1.0)] \
        == [2, 2, 3, 4, 6, 6, 6]
    assert stage_params(copy, 0.5)["min_length"] == 2  # only the grown parameter changes
    repeat = tasks.make("repeat_copy")
    assert {k: stage_params(repeat, 0.5)[k] for k in ("max_length", "max_repeats")} == {
        "max_length": 6, "max_repeats": 6}
    recall = tasks.make("associative_recall")  # items 2..6
    assert [stage_params(recall, f)["max_items"] for f in (0, 0.4, 1)] == [2, 4, 6]


def test_stage_parameters_never_pass_the_full_task_and_build_valid_tasks():
    for name in ("copy", "repeat_copy", "associative_recall"):
        full = tasks.make(name)
        for step in range(101):
            params = stage_params(full, step / 100)
            for grown, start in curriculum_of(full).items():
                assert full.params[start] <= params[grown] <= full.params[grown]
            tasks.make(name, **params)  # accepted by the task itself


def test_tasks_without_a_curriculum_refuse_it_in_one_line():
    assert curriculum_of(tasks.make("priority_sort")) == {}
    with pytest.raises(ConfigError, match="'priority_sort' has no length curriculum.*copy"):
        apply_overrides(preset_config("priority_sort"), ["task.curriculum=1000"])
    with pytest.raises(ConfigError, match="task.curriculum must be at least 1"):
        apply_overrides(preset_config("copy"), ["task.curriculum=0"])
    config = apply_overrides(preset_config("copy"), ["task.curriculum=none"])
    assert config.task.curriculum is None


TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=4", "train.log_every=1", "train.val_every=3", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=3", "task.max_length=5"]


def test_training_draws_from_the_stage_and_validates_on_the_full_task(tmp_path, monkeypatch):
    # 40 sequences of curriculum, 4 per update: stage fractions 0, 0.1, ..., 0.9, then full.
    config = apply_overrides(preset_config("copy"),
                             [*TINY, "task.curriculum=40", "train.steps=12"])
    longest = []
    original = tasks.CopyTask.sample

    def recording(self, batch_size, generator=None):
        batch = original(self, batch_size, generator)
        if batch_size == 4:  # training batches (validation's are of 3)
            longest.append(int(batch.mask.sum(0).max()))  # scored steps = the longest length
        return batch

    monkeypatch.setattr(tasks.CopyTask, "sample", recording)
    train(config, tmp_path / "run", progress=False)
    stage_maxima = [1 + int(k / 10 * 5) for k in range(10)] + [5, 5]  # min 1, max 5
    assert all(seen <= cap for seen, cap in zip(longest, stage_maxima, strict=True))
    assert longest[:2] == [1, 1]
    assert max(longest) > 1


def test_a_run_with_a_curriculum_resumes_as_one_that_never_stopped(tmp_path, monkeypatch):
    config = apply_overrides(preset_config("copy"),
                             [*TINY, "task.curriculum=30", "train.steps=9"])
    train(config, tmp_path / "whole", progress=False)
    train_until_diverged(config, tmp_path / "pieces", monkeypatch, call=5)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert untimed_metrics(tmp_path / "whole") == untimed_metrics(tmp_path / "pieces")
