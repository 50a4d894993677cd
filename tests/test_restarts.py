"""Restarts from fresh weights (train.restart_after, train.restart_below): the seeds of the
attempts, when an attempt ends, the optimiser's reset, and runs that restart end to end."""

import pytest
import torch
from helpers import train_until_diverged, untimed_metrics
from safetensors.torch import load_file

from ntm.training import (
    ConfigError,
    apply_overrides,
    preset_config,
    read_metrics,
    train,
)
from ntm.training.build import build_model, build_task
from ntm.training.checkpoint import STATE_FILE, read_counters, save_weights
from ntm.training.config import RunConfig
from ntm.training.optim import build_optimizer
from ntm.training.restarts import (
    attempt_validations,
    reset_optimizer,
    restart_due,
    weight_seed,
)

TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=2", "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=2", "task.max_length=3"]
# Never under 1e-9 bits: an attempt ends at its first validation after 4 sequences (2 updates).
RESTART_EVERY_2 = ["train.restart_after=4", "train.restart_below=1e-9"]


def _config(*extra, steps=6, task="copy"):
    return apply_overrides(preset_config(task), [*TINY, f"train.steps={steps}", *extra])


def test_the_first_attempt_has_the_runs_own_weights_and_the_others_new_even_seeds():
    assert [weight_seed(seed, 0) for seed in (0, 1, 7)] == [0, 2, 14]  # as before restarts
    later = {weight_seed(seed, attempt) for seed in range(20) for attempt in range(1, 6)}
    assert len(later) == 100  # no two attempts of these runs share their weights
    assert all(value % 2 == 0 and 0 <= value < 2**64 for value in later)
    assert not later & {2 * seed for seed in range(10_000)}  # nor another run's first ones


@pytest.mark.parametrize(("step", "sequences", "start", "validations", "due"), [
    (1, 3, 0, [], False),  # too early in the attempt
    (2, 4, 0, [], True),  # no validation yet under the bar
    (2, 4, 0, [[4, 5.0]], True),
    (2, 4, 0, [[4, 0.5]], False),  # under restart_below: kept
    (3, 7, 4, [], False),  # the next attempt, 3 sequences in
    (4, 8, 4, [[8, 1.0]], True),  # not under: 1.0 is the bar itself
    (6, 12, 0, [[4, 5.0]], False),  # the run's last update: no attempt could follow
    # Under the bar at 2 sequences, above since: 4 sequences later it is due, not before.
    (3, 5, 0, [[2, 0.5], [4, 5.0]], False),
    (3, 6, 0, [[2, 0.5], [4, 5.0], [6, 5.0]], True),
    # A solved attempt that collapsed and stayed so is due as well.
    (5, 10, 0, [[4, 0.01], [6, 3.0], [8, 3.0], [10, 3.0]], True),
])
def test_an_attempt_ends_after_restart_after_sequences_without_a_validation_under_the_bar(
        step, sequences, start, validations, due):
    train_config = _config("train.restart_after=4", "train.restart_below=1").train  # 6 steps
    counters = {"step": step, "sequences": sequences, "attempt_start": start,
                "attempt_validations": validations}
    assert restart_due(train_config, counters) is due
    assert not restart_due(_config().train, counters)  # restarts off


def test_the_attempts_validations_are_read_back_from_the_metrics_of_an_older_state():
    records = [{"step": 1, "sequences": 2, "cost": 9.0},
               {"step": 2, "sequences": 4, "val_cost": 3.0, "restart": 1},
               {"step": 3, "sequences": 6, "val_cost": float("nan")},
               {"step": 4, "sequences": 8, "val_cost": 0.5},
               {"step": 5, "sequences": 10, "val_cost": 0.1, "final": True},  # a piece's end
               {"step": 6, "sequences": 12, "val_cost": 0.25}]  # after the saved step
    # The attempt began after the validation at 4 sequences ended the one before.
    assert attempt_validations(records, step=5, attempt_start=4) == [[8, 0.5]]
    assert attempt_validations(records, step=6, attempt_start=0) == [[4, 3.0], [8, 0.5],
                                                                     [12, 0.25]]


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_a_reset_optimiser_steps_as_a_fresh_one(name):
    config = _config(f"optim.name={name}", "optim.lr=1e-2").optim

    def run(steps_before_reset):
        torch.manual_seed(0)
        weights = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
        optimizer = build_optimizer([weights], config)
        for _ in range(steps_before_reset):
            optimizer.zero_grad()
            (weights ** 2).sum().backward()
            optimizer.step()
        reset_optimizer(optimizer)
        with torch.no_grad():
            weights.copy_(torch.arange(5, dtype=torch.float64))  # the same weights for both
        for _ in range(3):
            optimizer.zero_grad()
            (weights ** 3).sum().backward()
            optimizer.step()
        return weights.detach()

    torch.testing.assert_close(run(4), run(0), rtol=0, atol=0)


@pytest.mark.parametrize(("settings", "message"), [
    (["train.restart_after=100"], "train.restart_after and train.restart_below go together"),
    (["train.restart_below=10"], "train.restart_after and train.restart_below go together"),
    (["train.restart_after=0", "train.restart_below=10"], "train.restart_after"),
    (["train.restart_after=10", "train.restart_below=0"], "train.restart_below"),
    ([*RESTART_EVERY_2, "train.init=pretrained:copy"], "would discard train.init"),
])
def test_bad_restart_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        _config(*settings)


def test_restart_settings_are_checked_in_a_config_file_too():
    data = _config().to_dict()
    data["train"]["restart_after"] = 1000
    with pytest.raises(ConfigError, match="go together"):
        RunConfig.from_dict(data)


def test_a_run_restarts_from_fresh_weights_and_says_so_in_its_metrics(tmp_path, monkeypatch):
    config = _config(*RESTART_EVERY_2, steps=8)
    result = train(config, tmp_path / "whole", progress=False)
    records = read_metrics(tmp_path / "whole")
    # Validations at updates 2, 4, 6 and 8 (4 to 16 sequences): each ends its attempt but the
    # last, after which no update is left.
    assert [(r["step"], r.get("restart")) for r in records if "val_cost" in r] == [
        (2, 1), (4, 2), (6, 3), (8, None)]
    assert "restart" not in records[0]  # a record without a validation
    counters = read_counters(tmp_path / "whole" / STATE_FILE)
    assert (counters["restarts"], counters["attempt_start"]) == (3, 12)
    assert result.step == 8  # train.steps bounds the attempts together
    # Stopped after the checkpoint of update 6, whose validation ended an attempt: the saved
    # weights are the next attempt's fresh ones, those its seed draws.
    train_until_diverged(config, tmp_path / "cut", monkeypatch, call=7)
    torch.manual_seed(weight_seed(config.train.seed, 3))
    task = build_task(config.task)
    fresh = build_model(config.model, task.input_size, task.output_size)
    saved = load_file(tmp_path / "cut" / "model.safetensors")
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)


def test_an_attempt_under_the_bar_is_kept(tmp_path):
    train(_config("train.restart_after=4", "train.restart_below=1e9", steps=6), tmp_path,
          progress=False)
    assert not any("restart" in r for r in read_metrics(tmp_path))
    assert read_counters(tmp_path / STATE_FILE)["restarts"] == 0


def test_a_run_that_restarts_resumes_as_one_that_never_stopped(tmp_path, monkeypatch):
    # A decaying rate and an opening too: the attempt after a restart starts both again.
    config = _config(*RESTART_EVERY_2, "optim.schedule=linear", "task.opening=6",
                     "task.opening_params.min_length=2", steps=8)
    train(config, tmp_path / "whole", progress=False)
    # Stops after the checkpoint of step 4 (after 2 restarts).
    train_until_diverged(config, tmp_path / "pieces", monkeypatch, call=6)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    whole = read_metrics(tmp_path / "whole")
    assert untimed_metrics(tmp_path / "pieces") == untimed_metrics(tmp_path / "whole")
    for name in ("model.safetensors", "best.safetensors"):
        pieces, one = load_file(tmp_path / "pieces" / name), load_file(tmp_path / "whole" / name)
        assert all(torch.equal(pieces[key], one[key]) for key in one)
    # The rate starts again at each restart: linear decay over what is left of the budget.
    rates = [r["lr"] for r in whole]
    assert rates[2] > rates[1] and rates[4] > rates[3]


def test_the_attempt_after_a_restart_opens_again(tmp_path, monkeypatch):
    import ntm.training.loop as loop

    seen = []
    original = loop._Run._training_task

    def spy(self):
        task = original(self)
        seen.append(task.min_length)
        return task

    monkeypatch.setattr(loop._Run, "_training_task", spy)
    # Updates 1-2 open on length 3 (4 sequences); the restart at update 2 opens again.
    train(_config(*RESTART_EVERY_2, "task.opening=4", "task.opening_params.min_length=3",
                  steps=4), tmp_path, progress=False)
    assert seen == [3, 3, 3, 3]
    # Without restarts the opening is the first 4 sequences only.
    seen.clear()
    train(_config("task.opening=4", "task.opening_params.min_length=3", steps=4),
          tmp_path / "plain", progress=False)
    assert seen == [3, 3, 1, 1]


def test_the_reliability_measure_and_a_sweeps_table_count_the_restarts(tmp_path):
    from ntm.training.reliability import reliability
    from ntm.training.sweep import SeedRun, summarize, sweep_table

    train(_config(*RESTART_EVERY_2, steps=6), tmp_path, progress=False)
    measured = reliability(read_metrics(tmp_path), target=0.1)
    assert (measured.restarts, measured.validations) == (2, 3)
    runs = [SeedRun(1, "a", 0, sequences_to_target=96_000, restarts=2, collapses=0),
            SeedRun(2, "b", 0, sequences_to_target=32_000, collapses=0)]
    assert summarize(runs)["restarts"] == 2
    table = sweep_table(runs, 0.1)
    assert "96000 (2 restarts)" in table.replace(",", "")
    assert "2 restart(s) from fresh weights (train.restart_after)" in table
    assert "restart" not in sweep_table(runs[1:], 0.1)


def test_a_run_on_a_plateau_can_be_resumed_with_restarts(tmp_path):
    train(_config(steps=4), tmp_path, progress=False)
    train(_config(*RESTART_EVERY_2, steps=8), tmp_path, resume=True, progress=False)
    records = read_metrics(tmp_path)
    # Its first attempt has trained 8 sequences by update 4: it ends at the next validation.
    assert [r.get("restart") for r in records if "val_cost" in r] == [None, None, 1, None]


class _Recorded:
    """A task whose batches are appended to ``batches`` or, with ``replay``, taken from it."""

    def __init__(self, task, batches, replay):
        self.task, self.batches, self.replay = task, batches, replay

    def sample(self, batch_size, generator=None):
        if self.replay:
            return self.batches.pop(0)
        batch = self.task.sample(batch_size, generator=generator)
        self.batches.append(batch)
        return batch


def test_an_attempt_after_a_restart_trains_as_a_new_run_from_its_weights_on_its_batches(
        tmp_path, monkeypatch):
    # Nothing but the data stream's position may set an attempt apart from a new run: the
    # same fresh weights, trained on the same batches as a run of their own (train.init),
    # give the same weights and costs bit for bit. With an opening, a decaying rate, global
    # norm clipping and a drop, the state a restart must start again.
    import ntm.training.loop as loop

    recipe = ["task.opening=4", "task.opening_params.min_length=2", "optim.schedule=linear",
              "optim.max_norm=1.0", "optim.drop_below=1e9"]
    batches: list = []
    original = loop._Run._training_task
    monkeypatch.setattr(loop._Run, "_training_task",
                        lambda self: _Recorded(original(self), batches, replay=False))
    # One restart, at update 2 (the validation of update 4 is the run's last).
    config = _config(*RESTART_EVERY_2, *recipe, steps=4)
    train(config, tmp_path / "restarted", progress=False)
    assert read_counters(tmp_path / "restarted" / STATE_FILE)["restarts"] == 1
    after_restart = batches[2:]
    assert len(after_restart) == 2
    torch.manual_seed(weight_seed(config.train.seed, 1))
    task = build_task(config.task)
    save_weights(build_model(config.model, task.input_size, task.output_size),
                 tmp_path / "fresh.safetensors")
    monkeypatch.setattr(loop._Run, "_training_task",
                        lambda self: _Recorded(None, after_restart, replay=True))
    alone = apply_overrides(preset_config("copy"), [
        *TINY, *recipe, "train.steps=2", f"train.init={tmp_path / 'fresh.safetensors'}"])
    train(alone, tmp_path / "alone", progress=False)
    assert not after_restart  # every batch replayed
    restarted, new = load_file(tmp_path / "restarted" / "model.safetensors"), load_file(
        tmp_path / "alone" / "model.safetensors")
    assert all(torch.equal(restarted[key], new[key]) for key in new)
    costs = [(r["cost"], r["lr"]) for r in read_metrics(tmp_path / "restarted")][2:]
    assert costs == [(r["cost"], r["lr"]) for r in read_metrics(tmp_path / "alone")]


def _as_saved_before_the_window_rule(state):
    """Rewrite a state file as the loop wrote it before: the attempt's best, no validations."""
    from ntm.rundir.checkpoint import _read, _save

    tensors, meta = _read(state)
    meta["counters"]["attempt_best"] = min(cost for _, cost in
                                           meta["counters"].pop("attempt_validations"))
    _save(state, tensors, meta)


def test_a_state_saved_before_it_kept_the_attempts_validations_resumes_with_them(tmp_path):
    import shutil

    # Stopped after update 5, between two validations (a "final" record): as a run that
    # never stopped, the resumed one counts only the validations of updates 2 and 4.
    train(_config(steps=5), tmp_path / "new", progress=False)
    shutil.copytree(tmp_path / "new", tmp_path / "older")
    _as_saved_before_the_window_rule(tmp_path / "older" / STATE_FILE)
    for name in ("new", "older"):
        train(_config(steps=8), tmp_path / name, resume=True, progress=False)
    train(_config(steps=8), tmp_path / "whole", progress=False)
    new, older, whole = (read_counters(tmp_path / name / STATE_FILE)["attempt_validations"]
                         for name in ("new", "older", "whole"))
    assert older == new == whole
    assert [sequences for sequences, _ in whole] == [4, 8, 12, 16]
    assert "attempt_best" not in read_counters(tmp_path / "older" / STATE_FILE)
    # Without its metrics, the best stands for them, as if just now: no restart sooner.
    train(_config(steps=4), tmp_path / "bare", progress=False)
    _as_saved_before_the_window_rule(tmp_path / "bare" / STATE_FILE)
    best = read_counters(tmp_path / "bare" / STATE_FILE)["attempt_best"]
    (tmp_path / "bare" / "metrics.jsonl").unlink()
    train(_config(steps=6), tmp_path / "bare", resume=True, progress=False)
    kept = read_counters(tmp_path / "bare" / STATE_FILE)["attempt_validations"]
    assert kept[0] == [8, best] and [sequences for sequences, _ in kept] == [8, 12]


def test_a_run_stopped_between_validations_restarts_where_one_that_never_stopped_does(
        tmp_path):
    # The final model of a piece is validated off the schedule; that validation must not move
    # the window. Any cost is under 1e9 bits, so only the scheduled ones (updates 2, 4, 6, 8)
    # keep the attempts alive: the same restarts, the same weights.
    config = _config("train.restart_after=6", "train.restart_below=1e9", steps=12)
    train(config, tmp_path / "whole", progress=False)
    piece = apply_overrides(config, ["train.steps=5"])
    train(piece, tmp_path / "pieces", progress=False)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert untimed_metrics(tmp_path / "pieces") == untimed_metrics(tmp_path / "whole")
    assert (read_counters(tmp_path / "pieces" / STATE_FILE)["attempt_validations"]
            == read_counters(tmp_path / "whole" / STATE_FILE)["attempt_validations"])
