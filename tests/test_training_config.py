"""Tests of the run configuration: overrides, type checks, JSON, presets (ntm.training)."""

import json
import re

import pytest

from ntm.training import (
    PAPER_MODELS,
    ConfigError,
    RunConfig,
    apply_overrides,
    preset_config,
)
from ntm.training.presets import FAST, demo_config


def test_overrides_parse_each_type():
    config = apply_overrides(RunConfig(), [
        "model.memory_slots=64", "optim.lr=3e-5", "optim.centered=false", "train.tensorboard=yes",
        "model.kind=lstm", "optim.eps=none", "train.max_seconds=2", "task.max_length=10",
    ])
    assert config.model.memory_slots == 64 and config.optim.lr == 3e-5
    assert config.optim.centered is False and config.train.tensorboard is True
    assert config.model.kind == "lstm" and config.optim.eps is None
    assert config.train.max_seconds == 2.0 and isinstance(config.train.max_seconds, float)
    assert config.task.params == {"max_length": 10}
    assert RunConfig().model.memory_slots == 128  # the input is not changed


@pytest.mark.parametrize(("override", "message"), [
    ("model.memory_slot=3", "unknown key 'model.memory_slot'; valid keys of model: kind, "),
    ("modle.memory_slots=3", "unknown config section 'modle'; valid sections: model, task"),
    ("model.memory_slots=abc", "model.memory_slots expects int, got 'abc'"),
    ("model.memory_slots=2.5", "expects int"),
    ("optim.lr=fast", "optim.lr expects float"),
    ("train.tensorboard=maybe", "expects bool"),
    ("model.kind=gru", "model.kind must be one of ntm-lstm, ntm-ff, lstm"),
    ("model.memory_slots=0", "model.memory_slots must be at least 1"),
    ("optim.lr=0", "optim.lr must be greater than 0"),
    ("task.max_lenght=3", "unknown key 'task.max_lenght'; valid keys of task 'copy': name, "),
    ("task.max_length=ten", "task.max_length expects int"),
    ("task.max_length=0", "max_length"),
    ("task.name=nosuch", "unknown task 'nosuch'"),
    ("memory_slots", "must look like section.key=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides(RunConfig(), [override])


def test_json_round_trip_and_strict_loading():
    config = apply_overrides(preset_config("repeat_copy", "ntm-ff"),
                             ["task.max_repeats=3", "optim.name=adam", "train.seed=7"])
    again = RunConfig.from_json(config.to_json())
    assert again == config
    data = json.loads(config.to_json())
    data["model"]["memory_slots"] = "many"
    with pytest.raises(ConfigError, match="memory_slots expects int"):
        RunConfig.from_dict(data)
    data = json.loads(config.to_json())
    data["train"]["speed"] = 3
    with pytest.raises(ConfigError, match="unknown key 'train.speed'"):
        RunConfig.from_dict(data)
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{")
    # Missing keys take their defaults, so older files still load.
    assert RunConfig.from_dict({"model": {"memory_slots": 32}}).model.memory_slots == 32


@pytest.mark.parametrize(("task", "kind"), sorted(PAPER_MODELS))
def test_presets_follow_the_paper_table(task, kind):
    cell = PAPER_MODELS[(task, kind)]
    paper = preset_config(task, kind, "paper")
    fast = preset_config(task, kind, "fast")
    assert paper.model == fast.model and paper.task.name == task
    if kind == "lstm":
        assert (paper.model.num_layers, paper.model.hidden_size) == (cell.layers, cell.size)
    else:
        model = paper.model
        assert model.read_heads == model.write_heads == cell.heads
        assert (model.controller_layers, model.controller_size) == (cell.layers, cell.size)
        assert (model.memory_slots, model.memory_width) == (128, 20)
    assert paper.optim.lr == cell.lr and paper.train.batch_size == 1
    assert (paper.optim.name, paper.optim.momentum) == ("rmsprop", 0.9)
    assert (paper.optim.clip, paper.optim.clip_value) == ("value", 10.0)
    recipe = FAST.get((task, kind), FAST[task])  # a model's own recipe, else the task's
    assert fast.train.batch_size == recipe.batch_size and fast.optim.lr == recipe.lr
    assert fast.optim.lr_half_life == recipe.lr_half_life
    assert paper.optim.lr_half_life is None  # the paper's recipe: a constant rate
    assert preset_config("copy", "ntm-ff").optim.lr == 3e-4  # measured: 2e-3 fails for it


def test_only_priority_sort_decays_its_learning_rate_by_default():
    # Measured: a constant 1e-3 is noisy on priority sort; halving it every 150,000 sequences
    # from the start converged (presets.py). The NTM's own recipe, not the feedforward one's.
    assert preset_config("priority_sort").optim.lr_half_life == 150_000
    assert preset_config("priority_sort", "ntm-ff").optim.lr_half_life is None
    assert preset_config("copy").optim.lr_half_life is None


def test_priority_sort_lstm_ntm_has_five_heads_and_two_layers():
    model = preset_config("priority_sort", "ntm-lstm", "paper").model
    assert (model.read_heads, model.controller_layers, model.controller_size) == (5, 2, 100)


def test_preset_errors_and_demo():
    with pytest.raises(ConfigError, match="valid presets: fast, paper"):
        preset_config("copy", "ntm-lstm", "slow")
    with pytest.raises(ConfigError, match="valid models: ntm-lstm, ntm-ff, lstm"):
        preset_config("copy", "rnn")
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        preset_config("nope")
    demo = demo_config()
    assert demo.train.device == "cpu" and demo.train.max_seconds and demo.task.name == "copy"


@pytest.mark.parametrize("override, message", [
    ("optim.min_lr=nan", "optim.min_lr must be a finite number"),
    ("optim.lr=inf", "optim.lr must be a finite number"),
    ("optim.lr_half_life=0", "optim.lr_half_life must be at least 1"),
    ("optim.lr_half_life=2.5", "expects int"),
    ("optim.min_lr=1", "optim.min_lr (1) must not exceed optim.lr"),
])
def test_bad_learning_rate_schedules_are_refused(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(preset_config("copy"), [override])


def test_a_learning_rate_schedule_round_trips_through_json():
    config = apply_overrides(preset_config("copy"), ["optim.lr_half_life=100000",
                                                     "optim.min_lr=1e-5"])
    assert RunConfig.from_json(config.to_json()) == config
    assert apply_overrides(config, ["optim.lr_half_life=none"]).optim.lr_half_life is None
