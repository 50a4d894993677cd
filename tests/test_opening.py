"""The opening (``task.opening``, ``task.opening_params``): the first training sequences drawn
from the task with other parameters, validation from the task without them."""

import json

import pytest
from helpers import train_until_diverged, untimed_metrics

from ntm import tasks
from ntm.cli import main
from ntm.training import (
    ConfigError,
    RunConfig,
    apply_overrides,
    evaluation_config,
    preset_config,
    train,
)
from ntm.training.config_file import dotted_config

TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=4", "train.log_every=1", "train.val_every=3", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=3", "task.max_length=5"]
OPENING = ["task.opening=20", "task.opening_params.min_length=4"]


def record_lengths(monkeypatch) -> dict[int, list[list[int]]]:
    """Record the lengths of every copy batch drawn, by batch size (training draws 4,
    validation 3)."""
    drawn: dict[int, list[list[int]]] = {3: [], 4: []}
    original = tasks.CopyTask.sample

    def recording(self, batch_size, generator=None):
        batch = original(self, batch_size, generator)
        # A copy sequence of length L scores L steps: the mask's column sums are the lengths.
        drawn.setdefault(batch_size, []).append(batch.mask.sum(0).int().tolist())
        return batch

    monkeypatch.setattr(tasks.CopyTask, "sample", recording)
    return drawn


def test_training_draws_from_the_opening_then_the_task_and_validates_on_the_task(
        tmp_path, monkeypatch):
    # 20 sequences of opening at 4 per update: updates 1-5 draw lengths 4-5, 6-12 lengths 1-5.
    config = apply_overrides(preset_config("copy"), [*TINY, *OPENING, "train.steps=12"])
    drawn = record_lengths(monkeypatch)
    train(config, tmp_path / "run", progress=False)
    training, validation = drawn[4], drawn[3]
    assert len(training) == 12
    assert all(4 <= length <= 5 for batch in training[:5] for length in batch)
    assert min(length for batch in training[5:] for length in batch) < 4
    assert min(length for batch in validation for length in batch) < 4  # the task's own
    record = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert record["opening"] == 20 and record["opening_params"] == {"min_length": 4}


def test_an_opening_draws_what_a_run_on_its_parameters_draws(tmp_path, monkeypatch):
    """During the opening a run trains as one whose task has the opening's parameters."""
    opened = apply_overrides(preset_config("copy"), [*TINY, *OPENING, "train.steps=5",
                                                     "train.val_every=100"])
    plain = apply_overrides(preset_config("copy"), [*TINY, "task.min_length=4", "train.steps=5",
                                                    "train.val_every=100"])
    drawn = record_lengths(monkeypatch)
    train(opened, tmp_path / "opened", progress=False)
    first = list(drawn[4])
    drawn[4].clear()
    train(plain, tmp_path / "plain", progress=False)
    assert first == drawn[4]
    costs = [[row["cost"] for row in untimed_metrics(tmp_path / name) if "cost" in row]
             for name in ("opened", "plain")]
    assert costs[0] == costs[1]


def test_a_run_with_an_opening_resumes_as_one_that_never_stopped(tmp_path, monkeypatch):
    config = apply_overrides(preset_config("copy"), [*TINY, *OPENING, "train.steps=9"])
    train(config, tmp_path / "whole", progress=False)
    train_until_diverged(config, tmp_path / "pieces", monkeypatch, call=4)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert untimed_metrics(tmp_path / "whole") == untimed_metrics(tmp_path / "pieces")


def test_the_opening_goes_through_config_files_and_json():
    config = apply_overrides(preset_config("copy"), OPENING)
    assert RunConfig.from_json(config.to_json()).task == config.task
    values = dotted_config(config)
    assert values["task.opening"] == 20 and values["task.opening_params.min_length"] == 4
    assert "task.opening_params" not in values  # a config file holds single values
    again = apply_overrides(preset_config("copy"), [])
    again.task = RunConfig.from_dict({"task": {"name": "copy", "opening": 20,
                                               "opening_params": {"min_length": 4}}}).task
    assert again.task == config.task
    off = apply_overrides(config, ["task.opening=none"])  # one override turns it off
    assert off.task.opening is None and off.task.opening_params == {}


@pytest.mark.parametrize(("overrides", "message"), [
    (["task.opening=20"], "task.opening .* and task.opening_params.<param> go together"),
    (["task.opening_params.min_length=4"], "go together: set both or neither"),
    (["task.opening=0", "task.opening_params.min_length=4"], "task.opening must be at least 1"),
    (["task.opening=x"], "task.opening"),
    (["task.opening=20", "task.opening_params.width=0"], "with task.opening_params: "),
    (["task.opening=20", "task.opening_params.min_length=30"],
     r"'copy' with task.opening_params: .* \(set task.opening_params.<param> to fit, or "
     r"task.opening=none\)"),
    (["task.opening_params.lenght=4"],
     r"unknown key 'task.opening_params.lenght'; valid keys of task 'copy': .*opening, "
     r"opening_params.<param>, min_length, max_length, width"),
    (["task.opening_params=4"], r"set task parameters one by one: task.opening_params.<param>"),
    ([*OPENING, "task.curriculum=100"],
     r"task.opening and task.curriculum do not combine: choose one \(task.opening=none"),
])
def test_a_wrong_opening_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        apply_overrides(preset_config("copy"), overrides)
    assert "\n" not in str(caught.value)


def test_ntm_train_says_when_a_run_opens_on_other_parameters(tmp_path, capsys):
    args = ["train", "copy", "--steps", "1", "--no-progress", "--out", str(tmp_path / "run"),
            *(f"--set={item}" for item in [*TINY, *OPENING])]
    assert main(args) == 0
    assert ("Opening: the first 20 training sequences with min_length=4 (validation on the "
            "task itself; --set task.opening=none removes it)") in capsys.readouterr().err


def test_ntm_eval_tests_a_run_that_opened_on_settings_outside_its_opening(tmp_path, capsys):
    # The run opened on lengths 4-5; the opening shapes training only, so lengths 2 are a
    # test setting like any other (before, the opening's min_length=4 > max_length=2 refused).
    out = tmp_path / "run"
    assert main(["train", "copy", "--steps", "1", "--no-progress", "--out", str(out),
                 *(f"--set={item}" for item in [*TINY, *OPENING])]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--set", "task.min_length=2", "--set", "task.max_length=2",
                 "--batches", "1", "--batch-size", "2", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["params"] == {"min_length": 2, "max_length": 2}
    assert 0 <= row["bit_errors"] <= 2 * 8  # two vectors of 8 bits to answer


def test_evaluation_config_drops_what_shapes_training_only():
    config = preset_config("associative_recall", "ntm-lstm")
    with pytest.raises(ConfigError, match="min_items must be <= max_items"):
        apply_overrides(config, ["task.max_items=2"])  # its opening's min_items=5 is too many
    tested = evaluation_config(config)
    assert (tested.task.opening, tested.task.opening_params, tested.task.curriculum) == \
        (None, {}, None)
    assert tested.task.params == config.task.params  # the task itself is kept
    assert config.task.opening == 100_000  # and the run's config is not changed
    assert apply_overrides(tested, ["task.max_items=2"]).task.params["max_items"] == 2
