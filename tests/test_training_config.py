"""Tests of the run configuration: overrides, type checks, JSON, presets (ntm.training)."""

import json
import re

import pytest

from ntm import models
from ntm.training import (
    PAPER_MODELS,
    ConfigError,
    RunConfig,
    apply_overrides,
    preset_config,
)
from ntm.training.presets import FAST, PAPER_STEPS, demo_config


def test_overrides_parse_each_type():
    config = apply_overrides(RunConfig(), [
        "model.memory_slots=64", "optim.lr=3e-5", "optim.centered=false", "train.tensorboard=yes",
        "model.memory_init=learned", "optim.eps=none", "train.max_seconds=2",
        "task.max_length=10",
    ])
    assert config.model.memory_slots == 64 and config.optim.lr == 3e-5
    assert config.optim.centered is False and config.train.tensorboard is True
    assert config.model.memory_init == "learned" and config.optim.eps is None
    assert config.train.max_seconds == 2.0 and isinstance(config.train.max_seconds, float)
    assert config.task.params == {"max_length": 10}
    assert RunConfig().model.memory_slots == 128  # the input is not changed


@pytest.mark.parametrize(("override", "message"), [
    ("model.memory_slot=3", "unknown key 'model.memory_slot'; valid keys of model 'ntm-lstm': "
                            "kind, module, controller_size, "),
    ("model.hidden_size=3", "unknown key 'model.hidden_size'; valid keys of model 'ntm-lstm': "),
    ("modle.memory_slots=3", "unknown config section 'modle'; valid sections: model, task"),
    ("model.memory_slots=abc", "model.memory_slots expects int, got 'abc'"),
    ("model.memory_slots=2.5", "expects int"),
    ("optim.lr=fast", "optim.lr expects float"),
    ("train.tensorboard=maybe", "expects bool"),
    ("model.kind=gru", "model.kind must be one of ntm-lstm, ntm-ff, dnc, dnc-ff, lstm"),
    ("model.memory_slots=0", "model.memory_slots must be at least 1"),
    ("optim.lr=0", "optim.lr must be greater than 0"),
    ("task.max_lenght=3", "unknown key 'task.max_lenght'; valid keys of task 'copy': name, "),
    ("task.max_length=ten", "task.max_length expects int"),
    ("task.max_length=0", "max_length"),
    ("task.name=nosuch", "name the task as the positional TASK instead"),
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
    with pytest.raises(ConfigError, match="unknown task 'nosuch'"):
        RunConfig.from_dict({"task": {"name": "nosuch"}})
    with pytest.raises(ConfigError, match=re.escape("optim.beta2 must be greater than 0 and "
                                                    "less than 1, got 2")):
        RunConfig.from_dict({"optim": {"name": "adam", "beta2": 2}})
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


def test_priority_sort_lstm_ntm_clips_the_norm_drops_the_rate_and_restarts():
    # Chosen on seeds 1-3 (presets.py): the global norm solved seed 1, which the rate alone
    # left at 48.8 bits; the rate x0.25 under the target kept seed 3 from a spike.
    config = preset_config("priority_sort", "ntm-lstm")
    assert (config.optim.clip, config.optim.max_norm) == ("value+norm", 1.0)
    assert (config.optim.drop_below, config.optim.drop_factor) == (18.0, 0.25)
    assert config.optim.lr_half_life == 150_000
    # Fresh weights for a seed on the plateau near 50 bits (seed 2: unsolved without them).
    assert (config.train.restart_after, config.train.restart_below) == (200_000, 40.0)
    # Only that model's recipe: the others keep the task's (drop_factor's default is 0.1).
    for kind in ("dnc", "ntm-ff", "lstm"):
        other = preset_config("priority_sort", kind)
        assert (other.optim.clip, other.optim.drop_below, other.train.restart_after) == (
            "value", None, None), kind
    assert preset_config("copy", "ntm-lstm").optim.drop_factor == 0.1
    # The runs from before recreate with the recipe they had (RESULTS.md, "Recreating the runs").
    before = apply_overrides(config, ["optim.clip=value", "optim.drop_below=none",
                                      "train.restart_after=none", "train.restart_below=none"])
    assert (before.optim.clip, before.optim.drop_below, before.train.restart_after) == (
        "value", None, None)
    # Its large batch keeps the norm clip and the drop (not the restarts, measured at 32).
    large = preset_config("priority_sort", "ntm-lstm", "large-batch")
    assert (large.optim.max_norm, large.optim.drop_factor) == (1.0, 0.25)
    assert large.train.restart_after is None


@pytest.mark.parametrize(("kind", "ntm_kind"), [("dnc", "ntm-lstm"), ("dnc-ff", "ntm-ff")])
def test_a_dnc_takes_the_paper_row_of_the_ntm_with_its_controller(kind, ntm_kind):
    sort = preset_config("priority_sort", kind).model
    cell = PAPER_MODELS[("priority_sort", ntm_kind)]  # 5 heads, 2 x 100 / 8 heads, 1 x 512
    assert (sort.read_heads, sort.write_heads) == (cell.heads, 1)  # the DNC paper's one writer
    assert (sort.controller_layers, sort.controller_size) == (cell.layers, cell.size)
    assert preset_config("priority_sort", kind, "paper").optim.lr == cell.lr
    for task in ("copy", "repeat_copy", "ngrams"):  # one head, one layer of 100: the defaults
        assert preset_config(task, kind).model == models.default_config(kind)


def test_copy_stays_solved_by_default_and_the_paper_recipe_is_unchanged():
    # Measured over 8 seeds (presets.py, RESULTS.md): the global-norm clip after the
    # per-component one, and the rate dropped tenfold once a validation is under 0.1 bits.
    copy = preset_config("copy").optim
    assert (copy.clip, copy.clip_value, copy.max_norm) == ("value+norm", 10.0, 1.0)
    assert (copy.drop_below, copy.drop_factor) == (0.1, 0.1)
    paper = preset_config("copy", "ntm-lstm", "paper").optim
    assert (paper.clip, paper.drop_below) == ("value", None)


def test_large_batch_keeps_the_fast_recipes_rate_up_to_1e_3_with_a_warm_up():
    fast, large = preset_config("copy"), preset_config("copy", "ntm-lstm", "large-batch")
    assert large.train.batch_size == 512
    # Measured: the square-root rule's rates spiked, copy's 2e-3 solved 3 of 4 seeds, 1e-3 4.
    assert (fast.optim.lr, large.optim.lr) == (2e-3, 1e-3)
    assert large.optim.warmup == 20 * 512  # the first 20 updates
    # Twice the fast recipe's sequences, in 16 times fewer updates: 3,000 -> 375.
    assert large.train.steps * 512 == 2 * fast.train.steps * 32
    assert (large.optim.clip, large.optim.drop_below) == (fast.optim.clip, fast.optim.drop_below)
    recall = preset_config("associative_recall", "ntm-lstm", "large-batch")
    assert recall.optim.lr == 3e-4 and recall.train.val_every >= 1  # under the cap: kept
    # A --set still chooses another rate.
    assert apply_overrides(large, ["optim.lr=2e-3"]).optim.lr == 2e-3


def test_large_batch_restarts_only_where_they_were_measured():
    # Associative recall, LSTM-controller NTM: fresh weights after 600 updates of 512 without
    # a validation under 10 bits solved 4 of 4 seeds (3 of 4 without).
    recall = preset_config("associative_recall", "ntm-lstm", "large-batch").train
    assert (recall.restart_after, recall.restart_below) == (600 * 512, 10.0)
    assert preset_config("associative_recall", "ntm-lstm").train.restart_after is None
    for task, kind in (("associative_recall", "ntm-ff"), ("associative_recall", "sam"),
                       ("copy", "ntm-lstm"), ("priority_sort", "ntm-lstm")):
        train = preset_config(task, kind, "large-batch").train
        assert (train.restart_after, train.restart_below) == (None, None), (task, kind)


def test_a_recipe_sets_the_model_sizes_it_was_measured_with():
    # SAM learned associative recall with rows of 40 (RESULTS.md, "Sparse access memory");
    # its copy, other models and the paper preset keep the model's defaults.
    recall = preset_config("associative_recall", "sam")
    assert (recall.model.memory_width, recall.model.memory_slots) == (40, 128)
    assert (recall.optim.lr, recall.optim.drop_below) == (1e-3, 0.1)
    assert preset_config("associative_recall", "sam", "large-batch").model.memory_width == 40
    assert preset_config("associative_recall", "sam", "paper").model.memory_width == 20
    assert preset_config("copy", "sam").model.memory_width == 20
    assert preset_config("associative_recall", "sam-ff").model.memory_width == 20
    assert preset_config("associative_recall", "dnc").model.memory_width == 20
    # A --set still overrides what the recipe set.
    config = apply_overrides(preset_config("associative_recall", "sam"), ["model.memory_width=24"])
    assert config.model.memory_width == 24


def test_every_fast_recipe_sets_its_schedule(monkeypatch):
    for key, recipe in FAST.items():
        task, kind = key if isinstance(key, tuple) else (key, "ntm-lstm")
        assert preset_config(task, kind).optim.schedule == recipe.schedule
    cosine = FAST["copy"]._replace(schedule="cosine")
    monkeypatch.setitem(FAST, ("copy", "ntm-lstm"), cosine)
    assert preset_config("copy").optim.schedule == "cosine"


def test_a_fast_recipe_sets_task_parameters_and_when_they_harden(monkeypatch):
    near = FAST["associative_recall"]._replace(task=(("near_items", 0.5),), harden_below=0.2)
    monkeypatch.setitem(FAST, ("associative_recall", "ntm-lstm"), near)
    config = preset_config("associative_recall")
    assert config.task.params == {"near_items": 0.5} and config.task.harden_below == 0.2
    # A --set still overrides what the recipe set; a paper preset keeps the task's defaults.
    config = apply_overrides(config, ["task.near_items=0", "task.harden_below=none"])
    assert config.task.params == {"near_items": 0.0} and config.task.harden_below is None
    paper = preset_config("associative_recall", preset="paper").task
    assert paper.params == {} and paper.harden_below is None
    monkeypatch.setitem(FAST, ("associative_recall", "ntm-lstm"),
                        near._replace(task=(("near_items", 2.0),)))
    with pytest.raises(ConfigError, match="near_items must be in"):
        preset_config("associative_recall")


def test_priority_sort_lstm_ntm_has_five_heads_and_two_layers():
    model = preset_config("priority_sort", "ntm-lstm", "paper").model
    assert (model.read_heads, model.controller_layers, model.controller_size) == (5, 2, 100)


def test_preset_errors_and_demo():
    with pytest.raises(ConfigError, match="valid presets: fast, paper, large-batch"):
        preset_config("copy", "ntm-lstm", "slow")
    with pytest.raises(ConfigError, match="valid models: ntm-lstm, ntm-ff, dnc, dnc-ff, lstm"):
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


@pytest.mark.parametrize("overrides, message", [
    # Adam takes momentum as beta1; torch raised "Invalid beta parameter" from deep in training.
    (["optim.name=adam", "optim.beta2=2"],
     "optim.beta2 must be greater than 0 and less than 1, got 2.0"),
    (["optim.name=adam", "optim.momentum=2"],
     "optim.momentum must be at least 0 and less than 1, got 2.0"),
    (["optim.beta2=1"], "optim.beta2 must be greater than 0 and less than 1, got 1.0"),
    # RMSProp took these silently and diverged.
    (["optim.momentum=1.5"], "optim.momentum must be at least 0 and less than 1, got 1.5"),
    (["optim.momentum=1"], "optim.momentum must be at least 0 and less than 1, got 1.0"),
    (["optim.momentum=-0.1"], "optim.momentum must be at least 0 and less than 1, got -0.1"),
    (["optim.alpha=1.5"], "optim.alpha must be greater than 0 and less than 1, got 1.5"),
    (["optim.alpha=1"], "optim.alpha must be greater than 0 and less than 1, got 1.0"),
    (["optim.alpha=nan"], "optim.alpha must be a finite number, got nan"),
    (["optim.eps=0"], "optim.eps must be greater than 0, got 0.0"),
    (["optim.lr=nan"], "optim.lr must be a finite number, got nan"),
    (["optim.min_lr=-1"], "optim.min_lr must be at least 0, got -1.0"),
    (["optim.clip_value=0"], "optim.clip_value must be greater than 0, got 0.0"),
    (["optim.max_norm=-1"], "optim.max_norm must be greater than 0, got -1.0"),
])
def test_optimiser_settings_out_of_range_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(preset_config("copy"), overrides)


@pytest.mark.parametrize("override", [
    "optim.momentum=0", "optim.momentum=0.999", "optim.alpha=0.99", "optim.alpha=1e-6",
    "optim.beta2=0.9999", "optim.eps=1e-12", "optim.min_lr=0", "optim.lr_half_life=1",
    "train.target_val_cost=0", "train.target_val_cost=none", "train.val_seed=0",
    f"train.val_seed={2**63 - 1}", f"train.seed={2**63 - 1}",
])
def test_edge_values_inside_the_ranges_are_accepted(override):
    key, value = override.split("=")
    section, name = key.split(".")
    config = apply_overrides(preset_config("copy"), [override])
    expected = None if value == "none" else int(value) if value.isdigit() else float(value)
    assert getattr(getattr(config, section), name) == expected


@pytest.mark.parametrize("override, message", [
    ("train.target_val_cost=-1", "train.target_val_cost must be at least 0, got -1.0"),
    ("train.target_val_cost=nan", "train.target_val_cost must be a finite number, got nan"),
    ("train.target_val_cost=inf", "train.target_val_cost must be a finite number, got inf"),
    ("train.val_seed=-1", f"train.val_seed must be at least 0 and less than {2**63}, got -1"),
    ("train.seed=-1", f"train.seed must be at least 0 and less than {2**63}, got -1"),
    # torch takes seeds below 2**64, and the data seed is 2 * seed + 1.
    (f"train.seed={2**63}", f"less than {2**63}, got {2**63}"),
    (f"train.val_seed={2**64}", f"less than {2**63}, got {2**64}"),
    ("train.seed=1" + "0" * 400, "train.seed must be at least 0 and less than"),
])
def test_training_settings_out_of_range_are_refused(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(preset_config("copy"), [override])


@pytest.mark.parametrize("override, message", [
    # The task and the model picked the preset; an override would keep the other one's recipe.
    ("task.name=ngrams", "task.name=ngrams would keep the preset of task 'copy'; name the task "
                         "as the positional TASK instead (ntm train ngrams, or "
                         "preset_config('ngrams') in Python)"),
    ("model.kind=lstm", "model.kind=lstm would keep the preset of model 'ntm-lstm'; choose the "
                        "model with --model instead (--model lstm, or "
                        "preset_config(task, 'lstm') in Python)"),
])
def test_the_task_and_model_kind_cannot_be_overridden(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(preset_config("copy"), [override])


def test_overriding_the_task_or_model_kind_with_its_own_value_is_allowed():
    config = apply_overrides(preset_config("ngrams", "lstm"),
                             ["task.name=ngrams", "model.kind=lstm"])
    assert config == preset_config("ngrams", "lstm")
    with pytest.raises(ConfigError,
                       match="model.kind must be one of ntm-lstm, ntm-ff, dnc, dnc-ff, lstm"):
        apply_overrides(preset_config("copy"), ["model.kind=gru"])  # type checks come first


@pytest.mark.parametrize("overrides", ["model.memory_slots=3", ["model.memory_slots=3", 3]])
def test_overrides_must_be_a_list_of_strings(overrides):
    with pytest.raises(TypeError, match='overrides must be a list of "section.key=value" '
                                        "strings, got "):
        apply_overrides(RunConfig(), overrides)
    assert apply_overrides(RunConfig(), ("model.memory_slots=3",)).model.memory_slots == 3


def test_the_paper_recipe_trains_a_million_sequences_on_every_task():
    # The length of the paper's learning curves, the same for every task (also one of your own).
    assert PAPER_STEPS == 1_000_000
    for task, kind in PAPER_MODELS:
        assert preset_config(task, kind, "paper").train.steps == PAPER_STEPS
    assert preset_config("copy", "lstm").train.steps != PAPER_STEPS  # the fast recipe's own


def test_associative_recall_lstm_ntm_defaults_are_the_measured_near_item_recipe():
    config = preset_config("associative_recall", "ntm-lstm")
    assert config.task.params == {"near_items": 0.25, "near_bits": 3}
    assert config.task.harden_below == 0.1 and config.optim.drop_below == 0.1
    # Its first 100,000 sequences hold 5 or 6 items: too many for the controller to hold.
    assert (config.task.opening, config.task.opening_params) == (100_000, {"min_items": 5})
    assert (config.optim.lr, config.train.steps, config.optim.clip) == (3e-4, 10_000, "value")
    # The other models keep the task's own data until measured the same way.
    for kind in ("ntm-ff", "dnc", "lstm"):
        other = preset_config("associative_recall", kind).task
        assert other.params == {} and other.harden_below is None and other.opening is None


def test_sams_associative_recall_opens_on_many_items_with_rows_of_40():
    config = preset_config("associative_recall", "sam")
    assert (config.task.opening, config.task.opening_params) == (160_000, {"min_items": 5})
    assert config.task.params == {} and config.task.harden_below is None  # no near items
    assert (config.optim.lr, config.optim.drop_below, config.train.steps) == (1e-3, 0.1, 20_000)
    assert config.model.memory_width == 40
    # The paper's recipe keeps the task's own data.
    assert preset_config("associative_recall", "sam", "paper").task.opening is None


def test_the_dncs_repeat_copy_opens_on_long_sequences_and_one_override_removes_it():
    config = preset_config("repeat_copy", "dnc")
    assert (config.task.opening, config.task.opening_params) == (160_000, {"min_length": 6})
    assert config.task.params == {}  # validation: lengths 1-10, the task's own
    assert (config.optim.lr, config.optim.drop_below, config.train.steps) == (1e-3, 0.1, 10_000)
    plain = apply_overrides(config, ["task.opening=none"])
    assert (plain.task.opening, plain.task.opening_params) == (None, {})
    # The feedforward models, whose controllers hold no sequence, open on nothing.
    for kind in ("ntm-ff", "dnc-ff"):
        assert preset_config("repeat_copy", kind).task.opening is None
    assert preset_config("repeat_copy", "dnc", "paper").task.opening is None


def test_the_lstm_ntms_repeat_copy_takes_copys_optimiser_opens_on_lengths_3_to_10_and_restarts():
    config = preset_config("repeat_copy", "ntm-lstm")
    # On lengths 6-10 it learns nothing; from 3 on it does (5 of 8 seeds, the defaults before 0).
    assert (config.task.opening, config.task.opening_params) == (64_000, {"min_length": 3})
    assert config.task.params == {}  # validation: lengths 1-10, the task's own
    assert (config.optim.lr, config.optim.clip, config.optim.max_norm) == (2e-3, "value+norm",
                                                                           1.0)
    assert (config.optim.drop_below, config.train.steps) == (0.1, 15_000)
    # Fresh weights after 80,000 sequences without a validation under 100 bits.
    assert (config.train.restart_after, config.train.restart_below) == (80_000, 100.0)
    assert preset_config("repeat_copy", "ntm-lstm", "paper").task.opening is None
    for other in (preset_config("repeat_copy", "ntm-ff"), preset_config("copy"),
                  preset_config("repeat_copy", "ntm-lstm", "large-batch")):
        assert other.train.restart_after is None


def test_a_recipe_with_restarts_sets_them_and_the_large_batch_recipe_drops_them(monkeypatch):
    monkeypatch.setitem(FAST, ("copy", "ntm-ff"), FAST[("copy", "ntm-ff")]._replace(
        restart_after=64_000, restart_below=50.0))
    train = preset_config("copy", "ntm-ff").train
    assert (train.restart_after, train.restart_below) == (64_000, 50.0)
    # Measured at the fast recipe's batch and budget only.
    large = preset_config("copy", "ntm-ff", "large-batch").train
    assert (large.restart_after, large.restart_below) == (None, None)
    assert preset_config("copy", "ntm-ff", "paper").train.restart_after is None
    with pytest.raises(ConfigError, match="fine-tuning: --set train.restart_after=none"):
        apply_overrides(preset_config("copy", "ntm-ff"), ["train.init=run"])
    plain = apply_overrides(preset_config("copy", "ntm-ff"), [
        "train.restart_after=none", "train.restart_below=none", "train.init=run"])
    assert plain.train.init == "run"
