"""End-to-end tests of the ``ntm`` command line, run in-process through ``ntm.cli.main``."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from ntm.cli import main
from ntm.plots import run_labels
from ntm.training import TIMING_FIELDS, apply_overrides, read_config, read_metrics
from ntm.training.presets import demo_config

SMALL = ["--set", "train.log_every=1", "--set", "train.val_every=2",
         "--set", "train.val_batches=1", "--set", "train.val_batch_size=2", "--batch-size", "2",
         "--no-progress"]
# Small sizes of each model: --set model.KEY is checked against the chosen model's fields.
SMALL_MODEL = {
    "ntm-lstm": ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12"],
    "ntm-ff": ["model.memory_slots=12", "model.memory_width=6", "model.controller_size=12"],
    "lstm": ["model.hidden_size=12", "model.num_layers=1"],
}
# Short sequences of every task (without the openings of some presets, on longer ones).
TASK_SETTINGS = {
    "copy": ["task.max_length=3"],
    "repeat_copy": ["task.max_length=2", "task.max_repeats=2", "task.opening=none"],
    "associative_recall": ["task.max_items=3", "task.item_length=1", "task.opening=none"],
    "ngrams": ["task.length=12"],
    "priority_sort": ["task.num_inputs=4", "task.num_outputs=3"],
}


def _train(out, task="copy", model="ntm-lstm", *extra):
    """Train a tiny run into ``out`` for 2 steps (``extra`` may override) and return ``out``."""
    settings = TASK_SETTINGS[task] + SMALL_MODEL[model]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    assert main(["train", task, "--model", model, "--steps", "2", "--out", str(out),
                 *SMALL, *sets, *extra]) == 0
    return out


def _error(capsys, argv):
    """Run ``argv``; check exit 2 and a single ``ntm: error:`` line; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("ntm: error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


@pytest.mark.parametrize("task", sorted(TASK_SETTINGS))
@pytest.mark.parametrize("model", ["ntm-lstm", "ntm-ff", "lstm"])
def test_train_every_task_and_model(tmp_path, capsys, task, model):
    out = _train(tmp_path / "run", task, model)
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert "Run directory" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["model"]["kind"] == model


@pytest.mark.parametrize("task", sorted(TASK_SETTINGS))
def test_eval_runs_the_generalisation_tests(tmp_path, capsys, task):
    out = _train(tmp_path / "run", task, "ntm-ff")
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1", "--batch-size", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    settings = [row["setting"] for row in report["results"]]
    assert settings[0] == "training"
    if task == "copy":
        assert settings[1:] == ["length=10", "length=20", "length=30", "length=50", "length=120"]
    if task == "ngrams":
        assert "optimal_cost" in report["results"][0]
    assert main(["eval", str(out), "--batches", "1", "--batch-size", "1"]) == 0
    table = capsys.readouterr().out
    assert "bit errors/seq" in table and ("optimal cost" in table) == (task == "ngrams")


def test_eval_with_a_setting(tmp_path, capsys):
    out = _train(tmp_path / "run")
    capsys.readouterr()
    assert main(["eval", str(out), "--set", "task.min_length=7", "--set", "task.max_length=7",
                 "--batches", "1", "--batch-size", "2", "--json", "--best"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["setting"] == "length=7" and row["params"] == {"min_length": 7, "max_length": 7}


def test_eval_with_a_longer_memory(tmp_path, capsys):
    out = _train(tmp_path / "run")
    arguments = ["eval", str(out), "--set", "task.min_length=3", "--set", "task.max_length=3",
                 "--batches", "1", "--batch-size", "2"]
    capsys.readouterr()  # the training's output
    assert main([*arguments, "--memory-slots", "40", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["memory_slots"] == 40 and len(report["results"]) == 1
    assert main([*arguments, "--json"]) == 0  # the memory it trained with, when not changed
    trained = read_config(out).model.memory_slots
    assert json.loads(capsys.readouterr().out)["memory_slots"] == trained
    assert main([*arguments, "--memory-slots", "40"]) == 0
    assert "memory of 40 slots" in capsys.readouterr().out
    assert "--memory-slots" in _error(capsys, [*arguments, "--memory-slots", "0"])
    learned = _train(tmp_path / "learned", "copy", "ntm-lstm", "--set", "model.memory_init=learned")
    assert "learned" in _error(capsys, ["eval", str(learned), "--memory-slots", "40"])


def test_eval_runs_on_the_threads_asked_for(tmp_path, capsys, monkeypatch):
    out = _train(tmp_path / "run")
    calls = []
    original = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n) or original(n))
    arguments = ["eval", str(out), "--set", "task.min_length=3", "--set", "task.max_length=3",
                 "--batches", "1", "--batch-size", "2"]
    before = torch.get_num_threads()
    assert main(arguments) == 0 and calls == [1, before]  # one thread unless told, then restored
    assert main([*arguments, "--threads", "2"]) == 0 and calls == [1, before, 2, before]
    assert main([*arguments, "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_resume_continues_to_the_same_metrics(tmp_path):
    whole = _train(tmp_path / "whole", "copy", "ntm-lstm", "--steps", "4")
    pieces = _train(tmp_path / "pieces", "copy", "ntm-lstm", "--steps", "3")
    assert main(["train", "--resume", str(pieces), "--steps", "4", "--no-progress",
                 "--set", "train.max_seconds=1000", "--set", "train.threads=2"]) == 0
    assert read_config(pieces).train.max_seconds == 1000  # a resumable field, changed
    # A new learning-rate schedule is accepted too, and recorded.
    assert main(["train", "--resume", str(pieces), "--steps", "5", "--no-progress",
                 "--set", "optim.lr_half_life=1000000", "--set", "optim.min_lr=1e-5"]) == 0
    assert read_config(pieces).optim.lr_half_life == 1_000_000
    assert read_metrics(pieces)[-1]["step"] == 5
    assert read_metrics(pieces)[-1]["lr"] == read_config(pieces).optim.lr  # no halving yet

    def strip(records):
        return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]

    assert strip(read_metrics(pieces))[:4] == strip(read_metrics(whole))


def test_plot_writes_png_figures(tmp_path, capsys):
    first, second = _train(tmp_path / "ntm"), _train(tmp_path / "lstm", "copy", "lstm")
    capsys.readouterr()
    assert main(["plot", str(first), "--batches", "1", "--batch-size", "1"]) == 0
    names = sorted(p.name for p in (first / "figures").iterdir())
    assert names == ["generalisation.png", "learning_curve.png", "sequence.png",
                     "weightings.png"]
    capsys.readouterr()
    out = tmp_path / "both"
    assert main(["plot", str(first), str(second), "--out", str(out), "--batches", "1",
                 "--batch-size", "1"]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 5  # 2 sequences + 1 weightings (NTM only) + curves + generalisation
    for path in out.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_plot_curves_only_reads_metrics_alone(tmp_path, capsys):
    first, second = _train(tmp_path / "ntm"), _train(tmp_path / "lstm", "copy", "lstm")
    for name in ("model.safetensors", "best.safetensors"):  # no weights are needed
        for run in (first, second):
            (run / name).unlink(missing_ok=True)
    capsys.readouterr()
    out = tmp_path / "curves"
    assert main(["plot", "--curves-only", str(first), str(second), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "learning_curve.png")]
    assert [p.name for p in out.iterdir()] == ["learning_curve.png"]
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep_run = tmp_path / "sweep" / "seed3"  # a sweep's run is named by its sweep too
    shutil.copytree(first, sweep_run)
    assert main(["plot", "--curves-only", str(sweep_run), "--out", str(out)]) == 0
    assert run_labels([str(sweep_run), str(first), "pretrained:copy"]) == [
        "sweep-seed3", "ntm", "pretrained-copy"]
    (second / "metrics.jsonl").write_text("")
    assert main(["plot", "--curves-only", str(first), str(second), "--out", str(out)]) == 2
    assert "has no metrics records yet" in capsys.readouterr().err
    # Without records a run still gets its other figures, and no curve.
    third, fourth = _train(tmp_path / "third"), _train(tmp_path / "fourth")
    (fourth / "metrics.jsonl").write_text("")
    whole = tmp_path / "whole"
    assert main(["plot", str(third), str(fourth), "--out", str(whole), "--batches", "1",
                 "--batch-size", "1"]) == 0
    assert (whole / "generalisation.png").is_file() and (whole / "learning_curve.png").is_file()
    assert main(["plot", str(fourth), "--out", str(tmp_path / "one"), "--batches", "1",
                 "--batch-size", "1"]) == 0
    assert not (tmp_path / "one" / "learning_curve.png").exists()
    (second / "metrics.jsonl").unlink()
    assert main(["plot", "--curves-only", str(first), str(second), "--out", str(out)]) == 2
    assert "metrics.jsonl is missing" in capsys.readouterr().err
    assert main(["plot", str(first), str(second), "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()  # nothing drawn, no folder left behind


def test_demo_trains_evaluates_and_draws(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    # A previous demo, with other limits, which is replaced.
    (out / "config.json").write_text(apply_overrides(demo_config(), ["train.steps=7"]).to_json())
    (out / "metrics.jsonl").write_text("old")
    assert main(["demo", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "length=120" in text and str(out / "figures" / "sequence.png") in text
    assert (out / "figures" / "weightings.png").stat().st_size > 0
    assert len(read_metrics(out)) <= 2


def test_more_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    run = _train(tmp_path / "run")  # 2 steps
    line = _error(capsys, ["eval", str(run), "--set", "task.width=4"])
    assert "changes the task's input size from 9 to 5" in line
    assert "expected cpu or cuda" in _error(capsys, ["bench", "--device", "tpu"])
    assert "valid paths: auto, kernel" in _error(capsys, ["bench", "--paths", "foo"])
    line = _error(capsys, ["bench", "--json", str(tmp_path / "no" / "such.json")])
    assert "its directory does not exist" in line
    line = _error(capsys, ["train", "--resume", str(run), "--steps", "1", "--no-progress"])
    assert "train.steps=1 is below the step" in line
    assert main(["train", "--resume", str(run), "--steps", "2", "--no-progress"]) == 0
    assert "Nothing to train: the run is already at step 2" in capsys.readouterr().err
    line = _error(capsys, ["eval", str(run / "model.safetensors")])
    assert "is a file, not a run directory" in line and str(run) in line
    line = _error(capsys, ["train", "copy", "--init", str(tmp_path / "nosuch.safetensors")])
    assert "weights file" in line and "does not exist" in line
    assert "expected integers" in _error(capsys, ["bench", "--batch-sizes", "1,,2"])
    line = _error(capsys, ["train", "copy", "--set", "task.module=nosuchmod"])
    assert "--task-module MODULE" in line
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ntm 0.")


def test_demo_leaves_other_runs_alone(tmp_path, capsys):
    run = _train(tmp_path / "run")
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    line = _error(capsys, ["demo", "--steps", "2", "--out", str(run), "--no-progress"])
    assert "not a demo" in line and "another --out" in line
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("{")
    assert "not a demo" in _error(capsys, ["demo", "--out", str(tmp_path / "corrupt")])


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    run = _train(tmp_path / "run")
    line = _error(capsys, ["train", "nosuchtask"])
    assert "unknown task 'nosuchtask'; valid tasks: associative_recall, copy" in line
    assert "choose from" in _error(capsys, ["train", "copy", "--model", "gru"])
    assert "valid keys of model" in _error(capsys, ["train", "copy", "--set", "model.slots=3"])
    assert "expects int, got 'x'" in _error(capsys, ["train", "copy", "--set",
                                                     "model.memory_slots=x"])
    assert "invalid int value" in _error(capsys, ["train", "copy", "--steps", "many"])
    assert "does not exist" in _error(capsys, ["eval", str(tmp_path / "missing")])
    assert "already holds a run" in _error(capsys, ["train", "copy", "--out", str(run)])
    assert "only --steps" in _error(capsys, ["train", "--resume", str(run), "--seed", "3"])
    line = _error(capsys, ["train", "--resume", str(run), "--set", "optim.momentum=0.5"])
    assert "not --set optim.momentum=0.5" in line
    assert "train.max_seconds" in line and "optim.lr_half_life" in line
    assert "task parameters only" in _error(capsys, ["eval", str(run), "--set", "optim.lr=1"])
    assert "required" in _error(capsys, ["train"])

    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    (corrupt / "config.json").write_text("{not json")
    assert "config.json is corrupt" in _error(capsys, ["eval", str(corrupt)])
    (corrupt / "config.json").write_text((run / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"\0" * 10)
    assert "model.safetensors is corrupt" in _error(capsys, ["plot", str(corrupt)])

    other = _train(tmp_path / "other", "copy", "ntm-lstm", "--set", "model.controller_size=10")
    shutil.copy(other / "model.safetensors", corrupt / "model.safetensors")
    assert "does not fit the model" in _error(capsys, ["eval", str(corrupt)])


def test_diverged_training_exits_2_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    import math

    import ntm.training.loop as loop

    calls = {"n": 0}
    original = loop.sequence_loss

    def poisoned(*args):
        calls["n"] += 1
        return original(*args) * (math.inf if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(loop, "sequence_loss", poisoned)
    out = tmp_path / "run"
    sizes = [arg for setting in SMALL_MODEL["ntm-lstm"] for arg in ("--set", setting)]
    line = _error(capsys, ["train", "copy", "--steps", "5", "--out", str(out), *SMALL, *sizes,
                           "--set", "train.checkpoint_every=2"])
    assert "the loss became inf at step 3; the checkpoint of step 2 is kept" in line
    monkeypatch.undo()
    assert main(["eval", str(out), "--batches", "1", "--batch-size", "1"]) == 0


def test_model_choices_come_from_the_registry(capsys, monkeypatch):
    from ntm.models import registry  # the package's models only, whatever another test added

    monkeypatch.setattr(registry, "_ENTRIES", {name: entry for name, entry
                                               in registry._ENTRIES.items() if entry.builtin})
    assert main(["train", "--help"]) == 0
    # argparse may wrap a line after a hyphen ("sam- ff"): joined back here.
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    assert ("model (ntm-lstm, ntm-ff, dnc, dnc-ff, lstm, sam, sam-ff, or one registered by "
            "--model-module") in text
    line = _error(capsys, ["train", "copy", "--model", "gru"])
    assert line == ("ntm: error: argument --model: invalid choice: 'gru' (choose from ntm-lstm, "
                    "ntm-ff, dnc, dnc-ff, lstm, sam, sam-ff, or register one with --model-module)")
    line = _error(capsys, ["train", "copy", "--model", "lstm", "--set", "model.memory_slots=8"])
    assert line == ("ntm: error: unknown key 'model.memory_slots'; valid keys of model 'lstm': "
                    "kind, module, hidden_size, num_layers")


def test_python_m_ntm_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "ntm", "train", "copy", "--set",
                             "model.memory_slots=lots"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ntm: error: model.memory_slots expects int, got 'lots'")


def test_init_fine_tunes_a_run_and_takes_its_model(tmp_path, capsys):
    source = _train(tmp_path / "source", "copy", "ntm-ff", "--set", "model.memory_init=learned")
    tuned = tmp_path / "tuned"
    # No --model and no model settings: they come with the weights.
    assert main(["train", "copy", "--init", str(source), "--steps", "2", "--out", str(tuned),
                 "--set", "task.max_length=3", "--set", "optim.lr=1e-5", "--no-progress",
                 "--batch-size", "2"]) == 0
    config = read_config(tuned)
    assert config.model == read_config(source).model
    assert config.train.init == str(source) and config.optim.lr == 1e-5
    assert "--model lstm" in _error(capsys, ["train", "copy", "--init", str(source), "--model",
                                             "lstm", "--out", str(tmp_path / "other")])
    assert "does not exist" in _error(capsys, ["train", "copy", "--init", str(tmp_path / "no"),
                                               "--out", str(tmp_path / "other")])
    # A resumed run continues from its own state: --init there is a mistake, not ignored.
    assert "not --init" in _error(capsys, ["train", "--resume", str(tuned), "--init",
                                           str(source), "--steps", "3"])


def test_init_from_a_pretrained_model(tmp_path):
    pytest.importorskip("ntm.pretrained")
    out = tmp_path / "tuned"
    assert main(["train", "copy", "--init", "pretrained:copy", "--steps", "1", "--out", str(out),
                 "--batch-size", "2", "--set", "train.val_batch_size=2",
                 "--set", "train.val_batches=1", "--set", "train.val_every=1",
                 "--no-progress"]) == 0
    assert read_config(out).model.memory_init == "learned"  # the shipped model's
    assert read_metrics(out)[-1]["val_cost"] < 1  # it starts trained: near 0 bits at once


def test_init_fine_tunes_with_a_recipe_that_restarts_without_its_restarts(tmp_path,
                                                                           monkeypatch):
    from ntm.training.presets import FAST

    source = _train(tmp_path / "source", "copy", "ntm-ff")
    monkeypatch.setitem(FAST, ("copy", "ntm-ff"), FAST[("copy", "ntm-ff")]._replace(
        restart_after=4, restart_below=1e-9))
    # Fresh weights would throw the weights to fine-tune away: --init turns the restarts off.
    tuned = tmp_path / "tuned"
    assert main(["train", "copy", "--init", str(source), "--steps", "4", "--out", str(tuned),
                 *SMALL, "--set", "task.max_length=3"]) == 0
    config = read_config(tuned)
    assert (config.train.restart_after, config.train.restart_below) == (None, None)
    assert not any("restart" in record for record in read_metrics(tuned))
    # A config file written from a run of that recipe (ntm tune's best.json) carries them.
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"optim.lr": 1e-4, "train.restart_after": 4,
                                "train.restart_below": 1e-9}))
    assert main(["train", "copy", "--model", "ntm-ff", "--config", str(best), "--init",
                 str(source), "--steps", "4", "--out", str(tmp_path / "tuned2"), *SMALL,
                 "--set", "task.max_length=3"]) == 0
    config = read_config(tmp_path / "tuned2")
    assert (config.optim.lr, config.train.restart_after) == (1e-4, None)
    # Without --init the file's restarts stand.
    assert main(["train", "copy", "--model", "ntm-ff", "--config", str(best), "--steps", "4",
                 "--out", str(tmp_path / "fresh"), *SMALL, "--set", "task.max_length=3",
                 *[arg for item in SMALL_MODEL["ntm-ff"] for arg in ("--set", item)]]) == 0
    assert read_config(tmp_path / "fresh").train.restart_after == 4
