"""How a run ends: the record of its last step, resuming to fewer steps, non-finite weights."""

import math

import pytest
import torch

from ntm.training import (
    TIMING_FIELDS,
    ConfigError,
    RunDirError,
    TrainingDiverged,
    apply_overrides,
    preset_config,
    read_metrics,
    train,
)
from ntm.training.checkpoint import BEST_FILE, MODEL_FILE, STATE_FILE, read_counters

TINY = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12",
        "train.batch_size=2", "train.val_batches=1", "train.val_batch_size=3",
        "task.max_length=3"]


def _config(*extra, steps=7):
    return apply_overrides(preset_config("copy"), [*TINY, "train.log_every=3",
                                                   "train.val_every=6",
                                                   "train.checkpoint_every=3",
                                                   f"train.steps={steps}", *extra])


def _without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_a_run_ending_between_records_records_its_last_step(tmp_path):
    result = train(_config(steps=7), tmp_path, progress=False)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [3, 6, 7]
    last = records[-1]
    assert last["final"] is True and "final" not in records[1]
    assert last["val_cost"] == result.val_cost and last["sequences"] == 14
    assert result.cost == last["cost"]  # the cost of step 7 alone, not the stale one of 4-6
    assert math.isfinite(last["cost"]) and last["cost"] != records[1]["cost"]


def test_a_run_ending_on_a_record_adds_none(tmp_path):
    train(_config(steps=6), tmp_path, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path)] == [3, 6]
    assert not any("final" in r for r in read_metrics(tmp_path))


def test_pieces_ending_between_records_resume_to_the_same_metrics(tmp_path):
    whole = tmp_path / "whole"
    train(_config(steps=11), whole, progress=False)
    pieces = tmp_path / "pieces"
    train(_config(steps=4), pieces, progress=False)  # ends between records: step 4 is final
    assert read_metrics(pieces)[-1]["final"] is True
    train(_config(steps=8), pieces, resume=True, progress=False)
    train(_config(steps=11), pieces, resume=True, progress=False)
    # The final records of the pieces are replaced; the interval sums they did not reset make
    # the cost of steps 4-6 the same as in the run that never stopped.
    assert _without_timing(read_metrics(pieces)) == _without_timing(read_metrics(whole))
    assert [r["step"] for r in read_metrics(pieces)] == [3, 6, 9, 11]


def test_resuming_to_fewer_steps_is_refused_and_changes_nothing(tmp_path):
    train(_config(steps=6), tmp_path, progress=False)
    config_before = (tmp_path / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"train.steps=4 is below the step .* \(6\)"):
        train(_config(steps=4), tmp_path, resume=True, progress=False)
    assert (tmp_path / "config.json").read_text() == config_before
    result = train(_config(steps=6), tmp_path, resume=True, progress=False)  # nothing to do
    assert (result.step, result.resumed_from) == (6, 6)
    assert read_counters(tmp_path / STATE_FILE)["step"] == 6


def test_resuming_a_run_that_ended_between_records_with_nothing_to_train(tmp_path):
    first = train(_config(steps=7), tmp_path, progress=False)
    records = read_metrics(tmp_path)
    again = train(_config(steps=7), tmp_path, resume=True, progress=False)
    assert read_metrics(tmp_path) == records  # the final record is kept: nothing replaces it
    assert (again.step, again.resumed_from, again.cost) == (7, 7, first.cost)


def test_a_run_that_never_checkpointed_says_so(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "config.json").write_text(_config().to_json())
    with pytest.raises(RunDirError, match="stopped before its first checkpoint"):
        train(_config(), tmp_path, progress=False)


def test_non_finite_weights_never_replace_a_checkpoint(tmp_path, monkeypatch):
    train(_config(steps=3), tmp_path, progress=False)  # a good checkpoint at step 3
    good = (tmp_path / MODEL_FILE).read_bytes()
    best = (tmp_path / BEST_FILE).read_bytes()
    original = torch.optim.RMSprop.step

    def poisoned_step(self, *args, **kwargs):  # a finite loss, then weights that are NaN
        result = original(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for parameter in group["params"]:
                    parameter.fill_(math.nan)
        return result

    monkeypatch.setattr(torch.optim.RMSprop, "step", poisoned_step)
    with pytest.raises(TrainingDiverged, match="weights became NaN .* step 3 is kept"):
        # Step 4 ends the run: its loss is finite, the weights after it are not.
        train(_config(steps=4), tmp_path, resume=True, progress=False)
    assert (tmp_path / MODEL_FILE).read_bytes() == good
    assert (tmp_path / BEST_FILE).read_bytes() == best
    assert read_counters(tmp_path / STATE_FILE)["step"] == 3
