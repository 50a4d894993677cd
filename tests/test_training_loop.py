"""Tests of the training loop, resuming, evaluation and run directories (ntm.training)."""

import json
import warnings

import pytest
import torch
from helpers import poison_loss_at

import ntm.training.loop as loop
from ntm import tasks
from ntm.training import (
    TIMING_FIELDS,
    ConfigError,
    RunDirError,
    TrainingDiverged,
    apply_overrides,
    evaluate,
    evaluate_batches,
    load_run,
    preset_config,
    read_metrics,
    train,
    weights_model_config,
)
from ntm.training.checkpoint import STATE_FILE, read_counters

NTM_SIZES = ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12"]
TINY = [*NTM_SIZES, "train.batch_size=2", "train.log_every=1", "train.val_every=2",
        "train.val_batches=1", "train.val_batch_size=3", "train.checkpoint_every=2",
        "task.max_length=3"]


def _config(*extra, kind="ntm-lstm", steps=6):
    # The LSTM baseline has no memory or controller: its sizes come in ``extra``.
    tiny = [item for item in TINY if kind != "lstm" or item not in NTM_SIZES]
    return apply_overrides(preset_config("copy", kind), [*tiny, f"train.steps={steps}", *extra])


def _without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_metrics_and_run_directory(tmp_path):
    result = train(_config("train.log_every=2", "train.val_every=4", steps=8), tmp_path,
                   progress=False)
    assert (result.step, result.sequences, result.stopped) == (8, 16, "steps")
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert {"step", "sequences", "cost", "seconds"} <= set(records[0])
    assert "val_cost" in records[1] and "val_bit_errors" in records[1]
    assert "val_cost" not in records[0]
    assert result.val_cost == records[-1]["val_cost"]
    model, config = load_run(tmp_path)
    assert config == _config("train.log_every=2", "train.val_every=4", steps=8)
    assert not model.training
    # best.safetensors holds the weights of the lowest validation cost.
    costs = {r["step"]: r["val_cost"] for r in records if "val_cost" in r}
    assert result.best_val_cost == min(costs.values())
    assert costs[result.best_step] == result.best_val_cost
    best, _ = load_run(tmp_path, best=True)
    assert evaluate_batches(best, [tasks.make("copy", max_length=3).sample(
        3, generator=torch.Generator().manual_seed(config.train.val_seed))])["cost"] \
        == pytest.approx(result.best_val_cost)


def test_resume_after_a_crash_matches_one_uninterrupted_run(tmp_path, monkeypatch):
    config = _config("model.memory_init=random", steps=8)  # random memory: uses the global RNG
    train(config, tmp_path / "whole", progress=False)

    # Crash at step 6 (NaN): checkpoint of step 4 kept, metrics of step 5 already logged.
    poison_loss_at(monkeypatch, 6)
    with pytest.raises(TrainingDiverged, match="nan at step 6; the checkpoint of step 4"):
        train(config, tmp_path / "pieces", progress=False)
    monkeypatch.undo()
    assert read_metrics(tmp_path / "pieces")[-1]["step"] == 5
    train(apply_overrides(config, ["train.steps=5"]), tmp_path / "pieces", resume=True,
          progress=False)
    train(config, tmp_path / "pieces", resume=True, progress=False)

    whole, pieces = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "pieces")
    assert [r["step"] for r in pieces] == list(range(1, 9))
    assert _without_timing(pieces) == _without_timing(whole)


def test_the_learning_rate_schedule_is_applied_and_logged(tmp_path):
    # Batch 2 and a half-life of 4 sequences: the rate halves every second update.
    schedule = ["optim.lr=1e-3", "optim.lr_half_life=4", "optim.min_lr=3e-4"]
    train(_config(*schedule), tmp_path / "decay", progress=False)
    train(_config("optim.lr=1e-3"), tmp_path / "constant", progress=False)
    decay, constant = read_metrics(tmp_path / "decay"), read_metrics(tmp_path / "constant")
    assert [r["lr"] for r in decay] == [1e-3, 1e-3, 5e-4, 5e-4, 3e-4, 3e-4]
    assert {r["lr"] for r in constant} == {1e-3}
    # Each record's cost is measured before its update: the third update is the first slower one.
    assert [r["cost"] for r in decay[:3]] == [r["cost"] for r in constant[:3]]
    assert decay[3]["cost"] != constant[3]["cost"]


def test_a_resumed_run_may_take_a_new_learning_rate_schedule(tmp_path):
    # Halving after 8 sequences (4 updates) changes nothing before step 4: a constant run resumed
    # there with that schedule must match a run that had it from the start.
    train(_config("optim.lr_half_life=8", steps=8), tmp_path / "whole", progress=False)
    train(_config(steps=4), tmp_path / "pieces", progress=False)
    train(_config("optim.lr_half_life=8", steps=8), tmp_path / "pieces", resume=True,
          progress=False)
    whole, pieces = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "pieces")
    assert _without_timing(pieces) == _without_timing(whole)
    assert load_run(tmp_path / "pieces")[1].optim.lr_half_life == 8
    # A new constant rate alone, too: the optimiser state's saved rate is replaced.
    train(_config("optim.lr_half_life=8", "optim.lr=5e-4", steps=9), tmp_path / "pieces",
          resume=True, progress=False)
    assert read_metrics(tmp_path / "pieces")[-1]["lr"] == 1.25e-4  # 5e-4, halved twice by 16
    with pytest.raises(ConfigError, match="optim.momentum.*may change only.*optim.lr_half_life"):
        train(_config("optim.momentum=0.5", steps=10), tmp_path / "pieces", resume=True,
              progress=False)


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    poison_loss_at(monkeypatch, 1)
    with pytest.raises(TrainingDiverged, match="no checkpoint was saved yet"):
        train(_config(), tmp_path, progress=False)


def test_run_directory_guards(tmp_path):
    train(_config(steps=2), tmp_path, progress=False)
    with pytest.raises(RunDirError, match="already holds a run"):
        train(_config(steps=2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cannot resume with model.memory_slots=16"):
        train(_config("model.memory_slots=16"), tmp_path, resume=True, progress=False)
    with pytest.raises(RunDirError, match="no training state"):
        train(_config(), tmp_path / "empty", resume=True, progress=False)
    (tmp_path / STATE_FILE).write_bytes(b"garbage")
    with pytest.raises(RunDirError, match="corrupt"):
        train(_config(steps=4), tmp_path, resume=True, progress=False)


def test_early_stops(tmp_path):
    result = train(_config("train.target_val_cost=1e9"), tmp_path / "target", progress=False)
    assert (result.stopped, result.step) == ("target", 2)
    result = train(_config("train.max_seconds=1e-9"), tmp_path / "time", progress=False)
    assert (result.stopped, result.step) == ("time", 1)
    assert load_run(tmp_path / "time")[0] is not None  # a checkpoint was written


def test_tensorboard_missing_is_a_warning_not_an_error(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.warns(RuntimeWarning, match="tensorboard is not installed"):
            train(_config("train.tensorboard=true", steps=1), tmp_path, progress=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(_config("train.tensorboard=true", steps=2), tmp_path, progress=False)
        assert (tmp_path / "tensorboard").is_dir()


def test_evaluate_scores_and_optimal_cost(tmp_path):
    model, _ = load_run(_trained(tmp_path))
    task = tasks.make("copy", max_length=3)
    first = evaluate(model, task, 2, 3, torch.Generator().manual_seed(0))
    again = evaluate(model, task, 2, 3, torch.Generator().manual_seed(0))
    assert first == again and set(first) == {"cost", "bit_errors"}
    assert 0 <= first["bit_errors"] <= 3 * 8 and first["cost"] > 0

    config = apply_overrides(preset_config("ngrams", "lstm"), [
        "model.hidden_size=8", "model.num_layers=1", "task.length=12", "train.steps=0"])
    train(config, tmp_path / "ngrams", progress=False)
    model, _ = load_run(tmp_path / "ngrams")
    scores = evaluate(model, tasks.make("ngrams", length=12), 1, 4)
    assert set(scores) == {"cost", "bit_errors", "optimal_cost"}


def _trained(path):
    train(_config(steps=2), path, progress=False)
    return path


def test_load_run_errors(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(RunDirError, match="config.json is missing"):
        load_run(tmp_path)
    run = _trained(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model"]["controller_size"] = 13
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError, match="does not fit the model in config.json"):
        load_run(run)
    with pytest.raises(RunDirError, match="pretrained"):
        load_run("pretrained:nosuchtask")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_and_resumes_on_cuda(tmp_path):
    config = _config("train.device=cuda", "model.memory_init=random", steps=4)
    train(config, tmp_path / "whole", progress=False)
    train(apply_overrides(config, ["train.steps=2"]), tmp_path / "pieces", progress=False)
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert len(read_metrics(tmp_path / "pieces")) == 4
    assert next(load_run(tmp_path / "whole")[0].parameters()).is_cuda


def test_ctrl_c_saves_and_stops_after_the_current_step(tmp_path, monkeypatch):
    import signal

    calls = {"n": 0}
    original = loop.sequence_loss

    def interrupted_at_step_3(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
        return original(*args)

    monkeypatch.setattr(loop, "sequence_loss", interrupted_at_step_3)
    config = _config(steps=6)
    # Python's default handler, or SIG_IGN where the tests run as a background job.
    before = signal.getsignal(signal.SIGINT)
    result = train(config, tmp_path / "run", progress=False)
    assert (result.stopped, result.step) == ("interrupted", 3)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    monkeypatch.undo()
    result = train(config, tmp_path / "run", resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    assert result.step == 6
    assert _without_timing(read_metrics(tmp_path / "run")) == _without_timing(
        read_metrics(tmp_path / "whole"))


def test_the_final_validation_is_recorded_in_the_checkpoint(tmp_path):
    # No validation on the schedule (val_every > steps): the final model is scored at the end,
    # and the state file must know it as the best, or a resumed run could overwrite a better
    # best.safetensors with a worse model.
    train(_config("train.val_every=100", steps=3), tmp_path, progress=False)
    counters = read_counters(tmp_path / "training_state.safetensors")
    assert counters["val_step"] == counters["best_step"] == 3
    assert counters["best_val_cost"] == counters["val_cost"]
    with pytest.raises(RunDirError, match="missing"):
        read_counters(tmp_path / "nothing.safetensors")


def test_tensorboard_receives_every_logged_number(tmp_path, monkeypatch):
    # A stand-in for torch.utils.tensorboard (not installed here): what the loop writes to it.
    import sys
    import types

    writers = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir, self.purge_step = log_dir, purge_step
            self.scalars, self.closed = [], False
            writers.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=FakeWriter))
    config = _config("train.tensorboard=true", "train.log_every=2", "train.val_every=4", steps=4)
    train(apply_overrides(config, ["train.steps=2"]), tmp_path, progress=False)
    train(config, tmp_path, resume=True, progress=False)
    first, resumed = writers
    assert first.log_dir == str(tmp_path / "tensorboard") and first.purge_step is None
    assert resumed.purge_step == 2  # events logged after the checkpoint are dropped
    assert first.closed and resumed.closed
    assert {tag for tag, _, step in first.scalars if step == 2} >= {"cost", "sequences"}
    logged = {(tag, step): value for tag, value, step in resumed.scalars}
    record = read_metrics(tmp_path)[-1]
    assert logged[("val_cost", 4)] == record["val_cost"]
    assert logged[("cost", 4)] == record["cost"]


def test_init_starts_from_the_weights_of_another_run(tmp_path):
    train(_config(steps=4), tmp_path / "source", progress=False)
    source, source_config = load_run(tmp_path / "source")
    assert weights_model_config(tmp_path / "source") == source_config.model  # comes with them
    assert weights_model_config(tmp_path / "source" / "model.safetensors") is None  # bare file
    # Zero steps: the new run scores and saves the weights it started from, unchanged.
    for init in (tmp_path / "source", tmp_path / "source" / "model.safetensors"):
        out = tmp_path / f"init-{init.name}"
        result = train(_config(f"train.init={init}", steps=0), out, progress=False)
        started, config = load_run(out)
        assert config.train.init == str(init)  # recorded, so the run can be repeated
        for (name, theirs), mine in zip(source.state_dict().items(),
                                        started.state_dict().values(), strict=True):
            assert torch.equal(theirs, mine), name
        assert result.val_cost == pytest.approx(read_metrics(tmp_path / "source")[-1]["val_cost"])
    # Training from them differs from training from the seed's random weights.
    train(_config(f"train.init={tmp_path / 'source'}"), tmp_path / "tuned", progress=False)
    train(_config(), tmp_path / "fresh", progress=False)
    tuned, fresh = read_metrics(tmp_path / "tuned"), read_metrics(tmp_path / "fresh")
    assert tuned[0]["cost"] != fresh[0]["cost"]


def test_a_resumed_run_keeps_its_own_weights_not_the_init(tmp_path):
    train(_config(steps=4), tmp_path / "source", progress=False)
    config = _config(f"train.init={tmp_path / 'source'}", steps=6)
    train(config, tmp_path / "whole", progress=False)
    train(apply_overrides(config, ["train.steps=3"]), tmp_path / "pieces", progress=False)
    (tmp_path / "source" / "model.safetensors").unlink()  # not read again on resuming
    train(config, tmp_path / "pieces", resume=True, progress=False)
    assert _without_timing(read_metrics(tmp_path / "pieces")) == \
        _without_timing(read_metrics(tmp_path / "whole"))


def test_init_weights_that_do_not_fit_or_do_not_exist_are_named(tmp_path):
    train(_config(steps=2), tmp_path / "source", progress=False)
    with pytest.raises(RunDirError, match="does not fit.*shape"):
        train(_config(f"train.init={tmp_path / 'source'}", "model.controller_size=7"),
              tmp_path / "wide", progress=False)
    with pytest.raises(RunDirError, match="does not exist"):
        train(_config(f"train.init={tmp_path / 'nowhere'}"), tmp_path / "lost", progress=False)
    assert not (tmp_path / "wide").exists() and not (tmp_path / "lost").exists()


def test_a_run_loads_with_a_longer_memory_and_the_same_weights(tmp_path):
    train(_config(steps=2), tmp_path / "run", progress=False)
    trained, _ = load_run(tmp_path / "run")
    longer, config = load_run(tmp_path / "run", memory_slots=40)
    assert config.model.memory_slots == 40 and longer.cell.memory_slots == 40
    for (name, theirs), mine in zip(trained.state_dict().items(), longer.state_dict().values(),
                                    strict=True):
        assert torch.equal(theirs, mine), name
    inputs = tasks.make("copy", max_length=3).sample(2, torch.Generator().manual_seed(0)).inputs
    with torch.no_grad():
        logits, state = longer(inputs)
        same_length, _ = load_run(tmp_path / "run", memory_slots=12)  # the trained length
        assert torch.equal(same_length(inputs)[0], trained(inputs)[0])
    assert state.memory.shape == (2, 40, 6) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("extra", "kind", "message"), [
    (("model.memory_init=learned",), "ntm-lstm", "learned its initial memory"),
    (("model.hidden_size=8", "model.num_layers=1"), "lstm", "has no memory"),
])
def test_a_longer_memory_is_refused_where_weights_depend_on_it(tmp_path, extra, kind, message):
    train(_config(*extra, kind=kind, steps=0), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=message):
        load_run(tmp_path / "run", memory_slots=40)


def test_training_runs_on_its_threads_and_restores_the_callers(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    seen = []
    original = loop.sequence_loss
    monkeypatch.setattr(loop, "sequence_loss",
                        lambda *args: seen.append(torch.get_num_threads()) or original(*args))
    train(_config(f"train.threads={other}", steps=2), tmp_path / "run", progress=False)
    assert seen and set(seen) == {other}
    assert torch.get_num_threads() == before


def test_a_learned_memory_loads_with_its_own_length(tmp_path):
    train(_config("model.memory_init=learned", steps=0), tmp_path / "run", progress=False)
    trained, _ = load_run(tmp_path / "run")
    same, config = load_run(tmp_path / "run", memory_slots=12)  # the length it has: allowed
    assert config.model.memory_slots == 12 and same.cell.memory_slots == 12
    assert torch.equal(same.cell.initial_memory, trained.cell.initial_memory)
    with pytest.raises(ConfigError, match="learned its initial memory"):
        load_run(tmp_path / "run", memory_slots=11)


def test_the_rate_drops_after_the_first_validation_under_drop_below(tmp_path):
    # An untrained copy model scores about 30 bits on these short sequences, under 1,000: the
    # drop comes after the first validation (step 2), from the third update on.
    config = _config("optim.lr=1e-3", "optim.drop_below=1000", "optim.drop_factor=0.25")
    train(config, tmp_path / "drop", progress=False)
    assert [r["lr"] for r in read_metrics(tmp_path / "drop")] == [1e-3, 1e-3] + [2.5e-4] * 4
    assert read_counters(tmp_path / "drop" / STATE_FILE)["dropped_step"] == 2
    never = _config("optim.lr=1e-3", "optim.drop_below=1e-9")
    train(never, tmp_path / "never", progress=False)
    assert {r["lr"] for r in read_metrics(tmp_path / "never")} == {1e-3}


def test_a_run_with_a_schedule_and_a_drop_resumes_as_one_that_never_stopped(tmp_path,
                                                                            monkeypatch):
    config = _config("optim.drop_below=1000", "optim.schedule=cosine", "optim.warmup=4",
                     "optim.clip=value+norm", "optim.max_norm=0.5", steps=8)
    train(config, tmp_path / "whole", progress=False)
    poison_loss_at(monkeypatch, 6)  # stops after the checkpoint of step 4, past the drop
    with pytest.raises(TrainingDiverged):
        train(config, tmp_path / "pieces", progress=False)
    monkeypatch.undo()
    train(config, tmp_path / "pieces", resume=True, progress=False)
    whole, pieces = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "pieces")
    assert _without_timing(pieces) == _without_timing(whole)
    assert len({r["lr"] for r in whole}) > 3  # warm-up, decay and drop all changed the rate
