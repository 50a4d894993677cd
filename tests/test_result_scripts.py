"""The analysis scripts behind RESULTS.md (results/scripts/): their numeric helpers against hand
values, each script's main path on a tiny model, and the commands that recreate_commands.py
prints, which must train the same run again."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from ntm.training import apply_overrides, preset_config, train

SCRIPTS = Path(__file__).resolve().parents[1] / "results" / "scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_hot_focus(slots, memory_slots=4):
    """``[steps, 1, memory_slots]`` write weightings focused on ``slots``, one per step."""
    return torch.nn.functional.one_hot(torch.tensor(slots), memory_slots).float().unsqueeze(1)


def test_overwrite_step_finds_the_write_head_coming_back_onto_the_inputs():
    overwrite_step = _script("repeat_copy_errors").overwrite_step
    # L=2 inputs written to slots 0 and 1; step 2 is the delimiter; the answer starts at step 3,
    # resting on slot 1 first (not a return), then moving on round the memory: back on slot 0
    # at answer step 3.
    assert overwrite_step(_one_hot_focus([0, 1, 1, 1, 2, 3, 0, 1]), length=2) == 3
    assert overwrite_step(_one_hot_focus([0, 1, 1, 2, 3, 2, 3]), length=2) == math.inf


def test_bits_and_kl_against_hand_values():
    ngrams = _script("ngrams_context_order")
    bits = torch.tensor([[1.0], [0.0]], dtype=torch.float64)  # (T=2, B=1)
    p = torch.full((2, 1), 0.25, dtype=torch.float64)
    assert ngrams.bits_of(p, bits).item() == pytest.approx(2 - math.log2(0.75))
    half = torch.full((1, 1), 0.5, dtype=torch.float64)
    assert ngrams.kl_bits(half, p[:1]).item() == pytest.approx(0.5 + 0.5 * math.log2(2 / 3))
    assert ngrams.kl_bits(p, p).item() == 0


def test_repeat_copy_errors_runs_on_a_run_directory(tmp_path, capsys, monkeypatch):
    config = apply_overrides(preset_config("repeat_copy"), [
        "model.memory_slots=16", "model.memory_width=4", "model.controller_size=8",
        "train.steps=1", "train.batch_size=2", "train.val_batches=1", "train.val_batch_size=2",
        "task.max_length=2", "task.max_repeats=2", "task.opening=none"])
    train(config, tmp_path / "run", progress=False)
    module = _script("repeat_copy_errors")
    monkeypatch.setattr(module, "SETTINGS", ((2, 3),))
    monkeypatch.setattr(sys, "argv", ["repeat_copy_errors.py", "--run", str(tmp_path / "run"),
                                      "--sequences", "2", "--memory-slots", "24"])
    module.main()
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'run'} L= 2 K= 3  errors in repeat 1..K: ")
    assert "write head back on the inputs at answer step" in line


TINY_SETS = ["--set", "model.memory_slots=8", "--set", "model.memory_width=4",
             "--set", "model.controller_size=8", "--set", "train.batch_size=2",
             "--set", "train.log_every=1", "--set", "train.val_every=2",
             "--set", "train.val_batches=1", "--set", "train.val_batch_size=2",
             "--set", "task.max_length=3", "--no-progress"]


def _recreated(command: str) -> list[str]:
    """The arguments of ``ntm`` in a command line the script printed."""
    words = command.split()
    assert words[:2] in (["ntm", "train"], ["ntm", "sweep"]), command
    return words[1:]


def test_recreate_commands_train_the_same_run_again(tmp_path, monkeypatch):
    from ntm.cli import main
    from ntm.training import TIMING_FIELDS, read_metrics

    recreate = _script("recreate_commands")
    monkeypatch.chdir(tmp_path)
    # A time limit that does not bind, a preset, a model and a seed, then a run from its weights.
    assert main(["train", "copy", "--model", "ntm-ff", "--preset", "paper", "--seed", "3",
                 "--steps", "4", "--out", "first", "--set", "train.max_seconds=1000",
                 "--set", "optim.lr=0.001", *TINY_SETS]) == 0
    assert main(["train", "copy", "--model", "ntm-ff", "--init", "first/best.safetensors",
                 "--steps", "3", "--out", "second", *TINY_SETS]) == 0
    first = recreate.train_command(Path("first"), out_root="again")
    assert first.startswith("ntm train copy --model ntm-ff --preset paper --seed 3 --steps 4 ")
    assert "max_seconds" not in first and "--set optim.lr=0.001" in first
    second = recreate.train_command(Path("second"), out_root="again")
    assert "--init first/best.safetensors" in second
    for command in (first, second):
        assert main([*_recreated(command), "--no-progress"]) == 0
    for name in ("first", "second"):
        original, again = (json.loads((Path(d) / name / "config.json").read_text())
                           for d in (".", "again"))
        original["train"]["max_seconds"] = again["train"]["max_seconds"]  # replaced by --steps
        assert again == original
        untimed = [[{k: v for k, v in record.items() if k not in TIMING_FIELDS}
                    for record in read_metrics(Path(d) / name)] for d in (".", "again")]
        assert untimed[1] == untimed[0]
        assert len(untimed[0]) == {"first": 4, "second": 3}[name]


def test_recreate_commands_warn_of_a_resume_with_another_schedule(tmp_path, monkeypatch):
    from ntm.cli import main

    recreate = _script("recreate_commands")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "copy", "--steps", "2", "--out", "run", *TINY_SETS]) == 0
    assert recreate.schedule_warnings(Path("run")) == []
    assert main(["train", "--resume", "run", "--steps", "4", "--set", "optim.lr_half_life=2",
                 "--no-progress"]) == 0
    (note,) = recreate.schedule_warnings(Path("run"))
    assert note.startswith("# run: lr ") and "at step 2 is not what the config's schedule" in note


def test_recreate_commands_of_a_sweep_and_of_runs_that_left_git(tmp_path):
    from ntm.training import SeedRun
    from ntm.training.sweep import _write_summary

    recreate = _script("recreate_commands")
    args = ["copy", "--steps", "50", "--set", "model.memory_init=random"]
    _write_summary(tmp_path / "copy-random", args, 0.5,
                   [SeedRun(seed, f"seed{seed}", 0) for seed in (1, 2, 3, 5)])
    assert recreate.sweep_command(tmp_path / "copy-random") == (
        "ntm sweep copy --steps 50 --set model.memory_init=random --seeds 1-3,5 --target 0.5 "
        "--out runs/copy-random")
    assert recreate.recreated_path("results/recipes/x-seed2/best.safetensors", "runs") == \
        "runs/x-seed2/best.safetensors"
    assert recreate.recreated_path("pretrained:copy", "runs") == "pretrained:copy"
    assert recreate.run_name(Path("results/recipes/sweep/seed12")) == "sweep/seed12"
    assert recreate.run_name(Path("results/recipes/copy-lstm")) == "copy-lstm"
    assert recreate._ranges([1, 2, 3, 5, 7, 8]) == ["1-3", "5", "7-8"]


def test_collapse_probe_records_every_update_and_leaves_training_as_it_was(tmp_path):
    probe = _script("collapse_probe")
    tiny = ["model.memory_slots=8", "model.memory_width=4", "model.controller_size=8",
            "task.max_length=3", "train.batch_size=2", "train.log_every=1", "train.val_every=2",
            "train.val_batches=1", "train.val_batch_size=2", "train.steps=4"]
    config = apply_overrides(preset_config("copy"), tiny)
    probe.run(config, tmp_path / "probed", 2)
    records = [json.loads(line) for line in (tmp_path / "probed" / "probe.jsonl").open()]
    assert [record["step"] for record in records] == [0, 1, 2, 3]
    assert all(math.isfinite(record["grad_norm"]) and record["lr"] > 0 for record in records)
    assert {"beta_max", "gamma_max", "peak_weight", "memory_max"} <= set(records[0])
    train(config, tmp_path / "plain", progress=False)  # the probe changed nothing
    metrics = [(tmp_path / name / "metrics.jsonl").read_text().splitlines()
               for name in ("probed/run", "plain")]
    drop = ("seconds", "sequences_per_second")
    probed, plain = ([{k: v for k, v in json.loads(line).items() if k not in drop}
                      for line in lines] for lines in metrics)
    assert probed == plain


def test_the_default_validation_set_of_associative_recall_holds_one_near_duplicate():
    """Sequence 80 of the validation set every associative-recall run scores (val_seed
    123456789): its query item differs from another item of its list by one bit of 18, and no
    other sequence's by fewer than 4 (RESULTS.md: the falls of solved runs to about 1 bit are
    that sequence alone)."""
    import ntm
    from ntm.training.loop import validation_set

    query_distance = _script("validation_breakdown").query_distance
    config = preset_config("associative_recall")
    task = ntm.tasks.make("associative_recall")
    distances = [query_distance(task, batch.inputs[:, i])
                 for batch in validation_set(config, task) for i in range(batch.inputs.size(1))]
    assert len(distances) == 128 and distances[80] == 1
    assert min(d for i, d in enumerate(distances) if i != 80) >= 4


def test_query_distance_by_hand():
    import ntm

    task = ntm.tasks.make("associative_recall", min_items=3, max_items=3, item_length=1, width=4)
    x = torch.zeros(9, 6)
    for step, item in zip((0, 2, 4), ([1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]), strict=True):
        x[step, 4] = 1  # item delimiter, then the item
        x[step + 1, :4] = torch.tensor(item, dtype=torch.float32)
    x[6, 5], x[7, :4], x[8, 5] = 1, torch.tensor([1.0, 1, 0, 0]), 1  # query item 1
    assert _script("validation_breakdown").query_distance(task, x) == 1  # item 0: one bit away


def test_validation_breakdown_adds_up_to_the_validation_cost(capsys):
    """The per-sequence costs of the shipped NTM average to its validation cost, computed
    independently by evaluate_batches on the same held-out set."""
    import ntm
    from ntm.rundir.directory import load_run
    from ntm.training.evaluate import evaluate_batches
    from ntm.training.loop import validation_set

    script = _script("validation_breakdown")
    model, config = load_run("pretrained:associative_recall-ntm-lstm", device="cpu")
    result = script.breakdown("pretrained:associative_recall-ntm-lstm", model, config, worst=3)
    batches = validation_set(config, ntm.tasks.make("associative_recall"))
    expected = evaluate_batches(model, batches)["cost"]
    assert result["sequences"] == 128
    assert result["mean_bits"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert [w["bits"] for w in result["worst"]] == sorted(
        (w["bits"] for w in result["worst"]), reverse=True)
    assert script.main(["pretrained:associative_recall-ntm-lstm", "--worst", "1"]) == 0
    assert "bits per sequence" in capsys.readouterr().out
    assert script.main(["/nonexistent-run"]) == 2


def test_near_items_batch_puts_an_item_the_given_bits_from_the_query():
    import ntm

    script = _script("validation_breakdown")
    task = ntm.tasks.make("associative_recall", min_items=3)
    plain = task.sample(16, generator=torch.Generator().manual_seed(7))
    for distance in (1, 2, 4):
        near = script.near_items_batch(task, 16, distance, torch.Generator().manual_seed(7))
        assert torch.equal(near.targets, plain.targets) and torch.equal(near.mask, plain.mask)
        assert [script.query_distance(task, near.inputs[:, b]) for b in range(16)] == [
            distance] * 16
    from ntm.rundir.directory import load_run

    with pytest.raises(ValueError, match="at least 1 bit"):
        script.near_items(*load_run("pretrained:associative_recall-ntm-lstm", device="cpu"), [0])
    assert script.main(["pretrained:associative_recall-ntm-lstm", "--near-items", "x"]) == 2


TINY_COPY = ["model.memory_slots=8", "model.memory_width=4", "model.controller_size=8",
             "task.max_length=3", "train.batch_size=2", "train.log_every=2",
             "train.val_every=4", "train.val_batches=1", "train.val_batch_size=2"]


def test_collapse_probe_marks_a_skipped_update_with_its_norm(tmp_path):
    probe = _script("collapse_probe")
    config = apply_overrides(preset_config("copy"), [
        *TINY_COPY, "train.steps=8", "optim.skip_above=1.01", "optim.skip_window=2"])
    probe.run(config, tmp_path, 4)
    records = [json.loads(line) for line in (tmp_path / "probe.jsonl").open()]
    skipped = [record for record in records if record.get("skipped")]
    assert skipped and all(math.isfinite(record["grad_norm"]) for record in skipped)
    assert all(record["update_norm"] == 0 for record in skipped)  # nothing moved
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert sum(record["skipped"] for record in metrics) == len(skipped)


def test_skip_replay_continues_one_base_run_once_per_factor(tmp_path):
    replay = _script("skip_replay")
    config = apply_overrides(preset_config("copy"), [*TINY_COPY, "optim.skip_window=2"])
    rows = replay.replay(config, tmp_path, 4, 12, [1.01])
    plain, skipping = rows
    assert (plain["skip_above"], plain["skipped"]) == (None, 0)
    assert skipping["skip_above"] == 1.01 and skipping["skipped"] > 0
    assert list(plain["validations"]) == list(skipping["validations"]) == [8, 12]
    # The plain continuation is the run that was never stopped, validation for validation.
    whole = apply_overrides(config, ["train.steps=12"])
    train(whole, tmp_path / "whole", progress=False)
    costs = {record["step"]: record["val_cost"]
             for record in map(json.loads, (tmp_path / "whole" / "metrics.jsonl").open())
             if "val_cost" in record and record["step"] > 4}
    assert plain["validations"] == costs
    # Another run in the base's place is refused, not continued.
    other = apply_overrides(config, ["train.seed=2"])
    with pytest.raises(SystemExit, match="holds another run"):
        replay.replay(other, tmp_path, 4, 12, [1.01])
