"""Skipping outlier updates (optim.skip_above, optim.skip_window): the norm judged, the rule
against hand values, an update that is skipped leaves weights and optimiser state alone, and
runs that skip, in one piece or resumed, record how many they skipped."""

import math

import numpy as np
import pytest
import torch
from helpers import scripted_validations, untimed_metrics

import ntm.training.loop as loop
from ntm.training import ConfigError, apply_overrides, preset_config, read_metrics, train
from ntm.training.checkpoint import STATE_FILE, read_counters
from ntm.training.distributed import World
from ntm.training.optim import gradient_norm, outlier_gradient, remember_norm

TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=2", "train.log_every=2", "train.val_every=4", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=3", "task.max_length=3",
        "optim.lr=1e-3"]
# Half the updates, about, have a norm above the median of the last four: these skip them.
SKIP = ["optim.skip_above=1.01", "optim.skip_window=4"]


def _config(*extra, steps=12):
    return apply_overrides(preset_config("copy"), [*TINY, f"train.steps={steps}", *extra])


def _rule(skip_above, window):
    return apply_overrides(preset_config("copy"), [f"optim.skip_above={skip_above}",
                                                   f"optim.skip_window={window}"]).optim


@pytest.mark.parametrize(("norm", "recent", "skipped"), [
    (41.0, [1.0, 4.0, 100.0], True),  # median 4: over 10 x 4
    (40.0, [1.0, 4.0, 100.0], False),  # not more than 10 x the median
    (39.0, [50.0, 60.0, 1.0, 4.0, 3.0], True),  # the last three only: median 3
    (1e9, [1.0, 2.0], False),  # fewer than a window of norms: nothing to judge by
    (math.inf, [], True),  # not finite: always
    (math.nan, [], True),
])
def test_an_update_is_skipped_above_its_factor_times_the_windows_median(norm, recent, skipped):
    assert outlier_gradient(norm, recent, _rule(10, 3)) is skipped


def test_without_skip_above_nothing_is_skipped():
    assert not outlier_gradient(math.inf, [1.0] * 200, preset_config("copy").optim)


def test_the_window_keeps_the_last_finite_norms():
    recent: list[float] = []
    for norm in (1.0, 2.0, math.inf, 3.0, math.nan, 4.0):
        remember_norm(recent, norm, 3)
    assert recent == [2.0, 3.0, 4.0]


def test_gradients_that_grow_for_good_are_skipped_for_half_a_window_only():
    rule, recent, skipped = _rule(10, 10), [1.0] * 10, []
    for _ in range(10):
        skipped.append(outlier_gradient(1000.0, recent, rule))
        remember_norm(recent, 1000.0, 10)
    assert skipped == [True] * 5 + [False] * 5


def test_the_gradient_norm_is_that_of_all_gradients_together():
    generator = np.random.default_rng(0)
    arrays = [generator.normal(size=shape) for shape in ((3, 4), (5,), (2, 2, 2))]
    params = [torch.nn.Parameter(torch.zeros(a.shape, dtype=torch.float64)) for a in arrays]
    for param, array in zip(params, arrays, strict=True):
        param.grad = torch.from_numpy(array)
    no_gradient = torch.nn.Parameter(torch.ones(7))
    expected = np.sqrt(sum((a ** 2).sum() for a in arrays))
    assert gradient_norm([*params, no_gradient]) == pytest.approx(expected, rel=1e-12)
    assert gradient_norm([no_gradient]) == 0.0


def _one_update(tmp_path, recent, skip_above):
    """One update of a tiny copy model after a first one (for an optimiser state), judged
    against ``recent``: its loss, whether it was skipped, and the weights and the optimiser
    state of the first parameter before and after it."""
    config = _config(f"optim.skip_above={skip_above}", "optim.skip_window=3")
    run = loop._Run(config, tmp_path, World(), resume=False)  # its model and optimiser
    batch = run.task.sample(2, generator=torch.Generator().manual_seed(1))

    def update(norms):
        return loop._update(run.replica, run.optimizer, run.parameters, batch, config,
                            run.world, norms)

    def state():
        return ([p.detach().clone() for p in run.parameters],
                [v.clone() for v in run.optimizer.state[run.parameters[0]].values()])

    update([])
    before = state()
    value, skipped = update(recent)
    return value, skipped, before, state()


def _equal(first, second):
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_skipped_update_leaves_the_weights_and_the_optimiser_state_alone(tmp_path):
    recent = [1e-6] * 3  # every gradient is an outlier against these
    value, skipped, before, after = _one_update(tmp_path, recent, 10)
    assert skipped and math.isfinite(value)
    assert _equal(before[0], after[0]) and _equal(before[1], after[1])
    assert len(recent) == 3 and recent[-1] > 1e-5, "its norm joins the window all the same"


def test_an_update_within_the_rule_is_made(tmp_path):
    _, skipped, before, after = _one_update(tmp_path, [1e6] * 3, 10)
    assert not skipped
    assert not _equal(before[0], after[0]) and not _equal(before[1], after[1])


def test_a_run_records_its_skipped_updates_and_resumes_as_one_that_never_stopped(tmp_path):
    config = _config(*SKIP)
    train(config, tmp_path / "whole", progress=False)
    records = read_metrics(tmp_path / "whole")
    skipped = [r["skipped"] for r in records]
    counters = read_counters(tmp_path / "whole" / STATE_FILE)
    assert sum(skipped) == counters["skipped"] > 0
    assert counters["recent_norms"] and len(counters["recent_norms"]) == 4
    # In two pieces: the window of norms is in the state file, so the second piece skips the
    # same updates.
    train(_config(*SKIP, steps=5), tmp_path / "pieces", progress=False)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert untimed_metrics(tmp_path / "pieces") == untimed_metrics(tmp_path / "whole")


def test_skipping_changes_the_run_and_a_run_without_it_has_no_count(tmp_path):
    train(_config(), tmp_path / "plain", progress=False)
    train(_config(*SKIP), tmp_path / "skipping", progress=False)
    plain = read_metrics(tmp_path / "plain")
    assert all("skipped" not in r for r in plain)
    assert [r["cost"] for r in plain] != [r["cost"] for r in read_metrics(tmp_path / "skipping")]


def test_a_restart_starts_a_new_window(tmp_path):
    # Never under 1e-9 bits: the attempt ends at the validation of update 4 (8 sequences), so
    # the window holds the norms of updates 5 and 6 only.
    config = _config(*SKIP, "train.restart_after=8", "train.restart_below=1e-9", steps=6)
    train(config, tmp_path, progress=False)
    counters = read_counters(tmp_path / STATE_FILE)
    assert counters["restarts"] == 1 and len(counters["recent_norms"]) == 2


@pytest.mark.parametrize(("settings", "message"), [
    (["optim.skip_above=1"], "optim.skip_above must be greater than 1"),
    (["optim.skip_above=-3"], "optim.skip_above must be greater than 1"),
    (["optim.skip_window=0"], "optim.skip_window must be at least 1"),
])
def test_bad_skip_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        _config(*settings)


def test_a_rewind_takes_the_window_back_with_the_weights(tmp_path, monkeypatch):
    # The best falls to 9 at update 4 (a snapshot), 40 at update 8 is a spike: a rewind to 4.
    costs = {4: 80.0, 8: 9.0, 12: 40.0, 14: 50.0}
    settings = ["optim.skip_above=1e9", "optim.skip_window=6", "train.rewind_above=10"]
    scripted_validations(monkeypatch, costs)
    train(_config(*settings, steps=8), tmp_path / "to8", progress=False)
    at_snapshot = read_counters(tmp_path / "to8" / STATE_FILE)["recent_norms"]
    scripted_validations(monkeypatch, costs)
    train(_config(*settings, steps=14), tmp_path / "run", progress=False)
    counters = read_counters(tmp_path / "run" / STATE_FILE)
    assert counters["rewinds"] == 1 and len(at_snapshot) == 6
    # Back to update 8's window at update 12, then the norms of updates 13 and 14.
    assert counters["recent_norms"][:4] == at_snapshot[2:]
    assert counters["snapshot_norms"] == at_snapshot


def test_a_gradient_that_is_not_finite_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    norms = iter([1.0, 2.0, math.inf, 3.0, 4.0, 5.0])
    monkeypatch.setattr(loop, "gradient_norm", lambda parameters: next(norms))
    train(_config("optim.skip_above=100", steps=6), tmp_path, progress=False)
    counters = read_counters(tmp_path / STATE_FILE)
    assert counters["skipped"] == 1 and counters["recent_norms"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [r["skipped"] for r in read_metrics(tmp_path)] == [0, 1, 0]


def test_a_run_resumed_without_skipping_forgets_its_window(tmp_path):
    train(_config(*SKIP, steps=6), tmp_path, progress=False)
    train(_config(steps=8), tmp_path, resume=True, progress=False)
    assert read_counters(tmp_path / STATE_FILE)["recent_norms"] == []
