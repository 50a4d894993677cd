"""Rewinds after a spike (train.rewind_above, train.rewind_factor): when one is due, the
snapshot it goes back to, the rate after it, the state file that keeps the snapshot, and runs
that rewind end to end, in one piece or resumed."""

import pytest
import torch
from helpers import scripted_validations, train_until_diverged, untimed_metrics
from safetensors.torch import load_file

import ntm.training.loop as loop
from ntm.training import ConfigError, apply_overrides, preset_config, read_metrics, train
from ntm.training.checkpoint import (
    BEST_FILE,
    STATE_FILE,
    load_state,
    read_counters,
    read_snapshot,
    save_state,
)
from ntm.training.optim import build_optimizer
from ntm.training.rewinds import (
    MOMENTUM_STATE,
    new_best,
    restore_snapshot,
    rewind_due,
    take_snapshot,
)

TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=2", "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=3", "train.checkpoint_every=2", "task.max_length=3",
        "optim.lr=1e-3"]
REWIND = ["train.rewind_above=10"]
# Validation costs by update: the best falls to 9 at update 4 (under a fifth of 80), 40 at
# update 6 is a spike (a rewind to update 4), 5 at update 8 a new best, 30 at update 10 a
# spike again (a rewind to update 8); the last update's 50 rewinds nothing (none is left).
SCRIPT = {2: 80.0, 4: 9.0, 6: 40.0, 8: 5.0, 10: 30.0, 12: 50.0}


def _config(*extra, steps=12):
    return apply_overrides(preset_config("copy"), [*TINY, f"train.steps={steps}", *extra])


@pytest.mark.parametrize(("step", "sequences", "validations", "due"), [
    (3, 96, [[32, 80.0], [64, 9.0], [96, 30.0]], True),
    (3, 96, [[32, 80.0], [64, 9.0], [96, 19.0]], False),  # not more than 10 above 9
    (3, 96, [[32, 80.0], [64, 9.0], [96, 19.5]], True),
    (3, 96, [[32, 40.0], [64, 9.0], [96, 30.0]], False),  # 9 is not under a fifth of 40
    (3, 128, [[32, 80.0], [64, 9.0], [96, 30.0]], False),  # the last validation is older
    (2, 64, [[32, 80.0], [64, 95.0]], False),  # the first is the best: not armed
    (12, 96, [[32, 80.0], [64, 9.0], [96, 30.0]], False),  # the run's last update
])
def test_a_rewind_is_due_at_a_spike_by_the_reliability_measure(step, sequences, validations,
                                                              due):
    counters = {"step": step, "sequences": sequences, "attempt_validations": validations}
    assert rewind_due(_config(*REWIND).train, counters) is due
    assert not rewind_due(_config().train, counters)  # rewinds off


@pytest.mark.parametrize(("sequences", "validations", "best"), [
    (32, [[32, 80.0]], True),  # the attempt's first
    (64, [[32, 80.0], [64, 9.0]], True),
    (64, [[32, 80.0], [64, 80.0]], False),  # a tie is not a new best
    (96, [[32, 80.0], [64, 9.0]], False),  # no validation now (or a NaN one)
])
def test_the_snapshot_follows_the_best_validation_of_the_attempt(sequences, validations, best):
    assert new_best({"sequences": sequences, "attempt_validations": validations}) is best


def _stepped(model, optimizer, steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 3, dtype=torch.float64, generator=generator)).pow(2).sum().backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_a_restored_snapshot_puts_weights_and_optimiser_state_back_in_place(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    optimizer = build_optimizer(model.parameters(), _config(f"optim.name={name}").optim)
    _stepped(model, optimizer, 3)
    snapshot = take_snapshot(model, optimizer)
    expected = {key: value.clone() for key, value in model.state_dict().items()}
    tensors = [optimizer.state[p] for p in model.parameters()]
    expected_state = [{k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                      for s in tensors]
    live = [p.data_ptr() for p in model.parameters()]
    live_state = [v.data_ptr() for s in tensors for v in s.values() if torch.is_tensor(v)]
    _stepped(model, optimizer, 2, seed=1)
    restore_snapshot(snapshot, model, optimizer)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    for state, saved in zip((optimizer.state[p] for p in model.parameters()), expected_state,
                            strict=True):
        assert any(key in state for key in MOMENTUM_STATE)
        for key, value in saved.items():
            # The momentum starts again from zero: it carried the run over the cliff.
            wanted = torch.zeros_like(value) if key in MOMENTUM_STATE else value
            torch.testing.assert_close(torch.as_tensor(state[key]), torch.as_tensor(wanted),
                                       rtol=0, atol=0)
    assert [p.data_ptr() for p in model.parameters()] == live  # in place
    assert [v.data_ptr() for p in model.parameters() for v in optimizer.state[p].values()
            if torch.is_tensor(v)] == live_state
    # Stepping on from the restored state is stepping on from the snapshot's, momentum zeroed.
    fresh = torch.nn.Linear(3, 2).double()
    fresh.load_state_dict(snapshot["model"])
    fresh_optimizer = build_optimizer(fresh.parameters(), _config(f"optim.name={name}").optim)
    fresh_optimizer.load_state_dict({"state": {
        index: {k: torch.zeros_like(v) if k in MOMENTUM_STATE else v.clone()
                for k, v in values.items()}
        for index, values in snapshot["optimizer"].items()},
        "param_groups": optimizer.state_dict()["param_groups"]})
    _stepped(model, optimizer, 2, seed=2)
    _stepped(fresh, fresh_optimizer, 2, seed=2)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_the_state_file_keeps_the_snapshot(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    optimizer = build_optimizer(model.parameters(), _config().optim)
    _stepped(model, optimizer, 2)
    snapshot = take_snapshot(model, optimizer)
    _stepped(model, optimizer, 2)
    save_state(tmp_path / "plain", model, optimizer, {}, {"step": 4})
    assert read_snapshot(tmp_path / "plain") is None
    save_state(tmp_path / "with", model, optimizer, {}, {"step": 4}, snapshot)
    read = read_snapshot(tmp_path / "with")
    for key, value in snapshot["model"].items():
        torch.testing.assert_close(read["model"][key], value, rtol=0, atol=0)
    assert read["optimizer"].keys() == snapshot["optimizer"].keys()
    for index, values in snapshot["optimizer"].items():
        for key, value in values.items():
            torch.testing.assert_close(torch.as_tensor(read["optimizer"][index][key]),
                                       torch.as_tensor(value), rtol=0, atol=0)
    # The snapshot changes nothing that load_state reads.
    other = torch.nn.Linear(3, 2).double()
    assert load_state(tmp_path / "with", other, build_optimizer(other.parameters(),
                                                                _config().optim), {}) == {
        "step": 4}
    torch.testing.assert_close(other.weight, model.weight, rtol=0, atol=0)


def test_a_run_rewinds_at_each_spike_and_lowers_its_rate(tmp_path, monkeypatch):
    scripted_validations(monkeypatch, SCRIPT)
    restored = []
    original = loop.restore_snapshot

    def spy(snapshot, model, optimizer):
        original(snapshot, model, optimizer)
        # The best validation so far is the one rewound to: its weights are best.safetensors.
        best = load_file(tmp_path / "run" / BEST_FILE)
        restored.append(all(torch.equal(value, best[key])
                            for key, value in model.state_dict().items()))

    monkeypatch.setattr(loop, "restore_snapshot", spy)
    train(_config(*REWIND), tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run")
    assert [(r["step"], r.get("rewind")) for r in records if "val_cost" in r] == [
        (2, None), (4, None), (6, 1), (8, None), (10, 2), (12, None)]
    assert restored == [True, True]
    rates = [r["lr"] for r in records]
    assert rates[:6] == [1e-3] * 6  # updates 1-6
    assert rates[6:10] == pytest.approx([5e-4] * 4)  # after the first rewind
    assert rates[10:] == pytest.approx([2.5e-4] * 2)  # after the second
    counters = read_counters(tmp_path / "run" / STATE_FILE)
    assert (counters["rewinds"], counters["rewind_step"]) == (2, 8)
    # Every validation stays in the metrics: the spikes still count.
    assert [r["val_cost"] for r in records if "val_cost" in r] == list(SCRIPT.values())


def test_a_run_without_rewinds_keeps_no_snapshot(tmp_path, monkeypatch):
    scripted_validations(monkeypatch, SCRIPT)
    train(_config(), tmp_path, progress=False)
    assert not any("rewind" in r for r in read_metrics(tmp_path))
    assert read_snapshot(tmp_path / STATE_FILE) is None
    assert read_counters(tmp_path / STATE_FILE)["rewinds"] == 0


def test_a_run_that_rewinds_resumes_as_one_that_never_stopped(tmp_path, monkeypatch):
    config = _config(*REWIND, "train.rewind_factor=0.25", "train.checkpoint_every=1")
    scripted_validations(monkeypatch, SCRIPT)
    train(config, tmp_path / "whole", progress=False)
    # Stops at update 6: the last checkpoint (update 5) holds the weights of update 5 and the
    # snapshot of update 4, which the resumed run must go back to at update 6.
    scripted_validations(monkeypatch, SCRIPT)
    train_until_diverged(config, tmp_path / "pieces", monkeypatch, call=6)
    counters = read_counters(tmp_path / "pieces" / STATE_FILE)
    assert (counters["step"], counters["rewind_step"]) == (5, 4)
    scripted_validations(monkeypatch, SCRIPT)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert untimed_metrics(tmp_path / "pieces") == untimed_metrics(tmp_path / "whole")
    pieces = load_file(tmp_path / "pieces" / "model.safetensors")
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    assert all(torch.equal(pieces[key], whole[key]) for key in whole)


def test_a_restart_begins_an_attempt_without_a_snapshot_and_at_the_full_rate(tmp_path,
                                                                            monkeypatch):
    # Never under 1e-9 bits: the attempt ends at the validation of update 6 (12 sequences).
    scripted_validations(monkeypatch, SCRIPT)
    train(_config(*REWIND, "train.restart_after=12", "train.restart_below=1e-9", steps=8),
          tmp_path, progress=False)
    records = read_metrics(tmp_path)
    # Update 6's spike ends the attempt too: it restarts, and does not rewind first.
    assert [(r["step"], r.get("rewind"), r.get("restart")) for r in records
            if "val_cost" in r] == [(2, None, None), (4, None, None), (6, None, 1),
                                    (8, None, None)]
    assert [r["lr"] for r in records][6:] == [1e-3, 1e-3]
    counters = read_counters(tmp_path / STATE_FILE)
    assert (counters["rewinds"], counters["restarts"]) == (0, 1)


@pytest.mark.parametrize(("settings", "message"), [
    (["train.rewind_above=0"], "train.rewind_above must be greater than 0"),
    (["train.rewind_factor=0"], "train.rewind_factor must be greater than 0 and at most 1"),
    (["train.rewind_factor=1.5"], "train.rewind_factor must be greater than 0 and at most 1"),
])
def test_bad_rewind_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        _config(*settings)


def test_the_reliability_measure_a_sweeps_table_and_the_curve_count_the_rewinds(tmp_path,
                                                                               monkeypatch):
    from ntm.plots.figures import learning_curve_figure
    from ntm.training.reliability import reliability
    from ntm.training.sweep import SeedRun, summarize, sweep_table

    scripted_validations(monkeypatch, SCRIPT)
    train(_config(*REWIND), tmp_path, progress=False)
    records = read_metrics(tmp_path)
    measured = reliability(records, target=0.1)
    # The spikes a rewind reacted to still count (10 and 12 are one collapse).
    assert (measured.rewinds, measured.collapses, measured.collapse_steps) == (2, 2, (6, 10))
    runs = [SeedRun(1, "a", 0, collapses=2, rewinds=2), SeedRun(2, "b", 0, collapses=0)]
    assert summarize(runs)["rewinds"] == 2
    table = sweep_table(runs, 0.1)
    assert "2 (2 rewinds)" in table
    assert "2 rewind(s) after a spike (train.rewind_above)" in table
    assert "rewind" not in sweep_table(runs[1:], 0.1)
    axis = learning_curve_figure({"run": records}).axes[0]
    crosses = [line for line in axis.lines if line.get_label() == "run (rewound to its best)"]
    assert [tuple(point) for point in crosses[0].get_xydata()] == [(0.012, 40.0), (0.02, 30.0)]


def test_a_run_resumed_with_rewinds_rewinds_only_once_it_has_a_snapshot(tmp_path,
                                                                      monkeypatch):
    scripted_validations(monkeypatch, {**SCRIPT, 14: 60.0, 16: 3.0, 18: 40.0, 20: 2.0})
    train(_config(steps=12), tmp_path, progress=False)
    # Resumed with rewinds: update 14's spike has no snapshot to go back to (the run's best,
    # 5 at update 8, was before them); update 16's best is kept and 18 goes back to it.
    train(_config(*REWIND, steps=20), tmp_path, resume=True, progress=False)
    assert [(r["step"], r.get("rewind")) for r in read_metrics(tmp_path)
            if "val_cost" in r and r["step"] > 12] == [(14, None), (16, None), (18, 1),
                                                       (20, None)]


def test_a_run_stopped_at_a_rewind_scores_the_weights_it_went_back_to(tmp_path, monkeypatch):
    # Interrupted at update 6, whose validation (40) sends it back to update 4's weights,
    # which score 9 again: the result and the state file say 9, not the spike's 40.
    scripted_validations(monkeypatch, {**SCRIPT, 6: [40.0, 9.0]})
    monkeypatch.setattr(loop._Run, "_stop_reason",
                        lambda self, step, started, stop: "interrupted" if step == 6
                        else "steps")
    result = train(_config(*REWIND), tmp_path, progress=False)
    assert (result.step, result.stopped, result.val_cost) == (6, "interrupted", 9.0)
    assert read_counters(tmp_path / STATE_FILE)["val_cost"] == 9.0
    assert [r.get("rewind") for r in read_metrics(tmp_path) if "val_cost" in r] == [
        None, None, 1]


def test_resuming_with_other_rewind_settings_changes_later_rewinds_only(tmp_path,
                                                                      monkeypatch):
    script = {**SCRIPT, 14: 3.0, 16: 20.0, 18: 1.0, 20: 20.0, 22: 2.0}
    scripted_validations(monkeypatch, script)
    train(_config(*REWIND, steps=8), tmp_path, progress=False)  # one rewind: x0.5
    # A factor of 0.1 from here: update 10's rewind gives 0.5 x 0.1, not 0.1 x 0.1.
    train(_config(*REWIND, "train.rewind_factor=0.1", steps=12), tmp_path, resume=True,
          progress=False)
    rates = [r["lr"] for r in read_metrics(tmp_path)]
    assert rates[10:12] == pytest.approx([5e-5, 5e-5])
    # Rewinds off: the rate keeps its factor, the snapshot goes, and update 16's spike (17
    # above the best, 3) is kept as it is.
    train(_config(steps=16), tmp_path, resume=True, progress=False)
    assert read_snapshot(tmp_path / STATE_FILE) is None
    assert [r["lr"] for r in read_metrics(tmp_path)][12:16] == pytest.approx([5e-5] * 4)
    # On again: no snapshot until the next best (update 18), and update 20 goes back to it.
    train(_config(*REWIND, steps=22), tmp_path, resume=True, progress=False)
    records = read_metrics(tmp_path)
    assert [(r["step"], r.get("rewind")) for r in records
            if "val_cost" in r and r["step"] > 12] == [(14, None), (16, None), (18, None),
                                                       (20, 3), (22, None)]
    assert [r["lr"] for r in records][20:] == pytest.approx([2.5e-5, 2.5e-5])
    assert read_counters(tmp_path / STATE_FILE)["rewind_step"] == 18
