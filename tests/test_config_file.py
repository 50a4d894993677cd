"""Tests of config files of dotted keys (ntm.training.config_file) and ``--config FILE``."""

import json

import pytest

from ntm import models, tasks
from ntm.cli import main
from ntm.training import ConfigError, apply_overrides, build_task, preset_config
from ntm.training.config_file import (
    dotted_config,
    file_overrides,
    read_config_file,
    write_config_file,
)

SMALL = ["--set", "train.log_every=1", "--set", "train.val_every=2", "--set",
         "train.val_batches=1", "--set", "train.val_batch_size=2", "--batch-size", "2"]
TINY = {"model.memory_slots": 12, "model.memory_width": 6, "model.controller_size": 12}


def _write(path, values):
    path.write_text(json.dumps(values))
    return str(path)


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntm: error: "), err
    return err[0]


def _trained_config(tmp_path, argv):
    out = tmp_path / "run"
    assert main(["train", *argv, "--steps", "1", "--out", str(out), "--no-progress",
                 *SMALL]) == 0
    return json.loads((out / "config.json").read_text())


def test_a_config_file_is_applied_before_set(tmp_path):
    config_file = _write(tmp_path / "c.json", {**TINY, "optim.lr": 0.005, "task.max_length": 4,
                                               "optim.lr_half_life": None,
                                               "train.tensorboard": False})
    config = _trained_config(tmp_path, ["copy", "--config", config_file,
                                        "--set", "task.max_length=3"])
    assert config["optim"]["lr"] == 0.005 and config["optim"]["lr_half_life"] is None
    assert config["task"]["params"]["max_length"] == 3  # --set comes after the file
    assert config["model"]["memory_slots"] == 12


def test_task_name_and_model_kind_of_a_file_stand_for_task_and_model(tmp_path):
    config_file = _write(tmp_path / "c.json", {"task.name": "repeat_copy", "model.kind": "ntm-ff",
                                               **TINY, "task.max_length": 2,
                                               "task.max_repeats": 2})
    config = _trained_config(tmp_path, ["--config", config_file])
    assert (config["task"]["name"], config["model"]["kind"]) == ("repeat_copy", "ntm-ff")
    # The same TASK and --model on the command line agree with the file.
    config = _trained_config(tmp_path / "again", ["repeat_copy", "--model", "ntm-ff",
                                                  "--config", config_file])
    assert config["task"]["params"]["max_repeats"] == 2


@pytest.mark.parametrize("argv, message", [
    (["copy"], "TASK copy differs from task.name=repeat_copy in --config"),
    (["--model", "lstm"], "--model lstm differs from model.kind=ntm-ff in --config"),
])
def test_a_task_or_model_other_than_the_files_is_a_one_line_error(tmp_path, capsys, argv,
                                                                  message):
    config_file = _write(tmp_path / "c.json", {"task.name": "repeat_copy", "model.kind": "ntm-ff"})
    assert message in _one_line_error(capsys, ["train", *argv, "--config", config_file])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("{", "is not valid JSON"),
    ("[1, 2]", "expected a JSON object of dotted keys"),
    ('{"lr": 0.1}', "'lr' must be a dotted key"),
    ('{"optim": {"lr": 0.1}}', "'optim' must be a dotted key"),
    ('{"optim.lr": [0.1]}', "'optim.lr' must be a dotted key"),
    ('{"task.name": 3}', "task.name must be a name"),
    ('{"optim.nope": 1}', "optim.nope"),
    ('{"optim.lr": "fast"}', "optim.lr"),
])
def test_a_bad_config_file_is_a_one_line_error(tmp_path, capsys, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    assert message in _one_line_error(capsys, ["train", "copy", "--config", str(path)])


def test_a_missing_config_file_and_one_with_resume_are_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert "cannot be read" in _one_line_error(capsys, ["train", "copy", "--config",
                                                        str(missing)])
    config_file = _write(tmp_path / "c.json", {"optim.lr": 0.005})
    line = _one_line_error(capsys, ["train", "--resume", str(tmp_path), "--config",
                                    config_file])
    assert f"--config {config_file} does not apply to it" in line


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_every_preset_written_as_a_file_reads_back_equal(tmp_path, preset):
    for task in tasks.TASKS:
        for kind in models.names():
            config = preset_config(task, kind, preset)
            write_config_file(tmp_path / "c.json", dotted_config(config))
            choices, values = read_config_file(tmp_path / "c.json")
            assert choices == {"task.name": task, "model.kind": kind}
            # What ntm train --config does: the fast preset of the file's task and model, then
            # every value of the file (every task parameter, defaults too: the fast preset of
            # associative recall sets near items, which the paper's must not get).
            read = apply_overrides(preset_config(task, kind, "fast"), file_overrides(values))
            assert dotted_config(read) == dotted_config(config)
            assert build_task(read.task, training=True).params == build_task(
                config.task, training=True).params


def test_dotted_config_puts_first_keys_first_and_leaves_out_keys():
    values = dotted_config(preset_config("copy", "ntm-lstm", "fast"), first=("optim.lr",),
                           leave_out=("train.seed",))
    assert list(values)[0] == "optim.lr" and "train.seed" not in values
    assert "task.module" not in values and values["task.name"] == "copy"
    with pytest.raises(ConfigError, match="cannot be read"):
        read_config_file("/nonexistent/c.json")


def test_a_sweep_gives_the_files_values_to_every_seed(tmp_path, capsys, monkeypatch):
    from ntm.training import ray_sweep

    monkeypatch.setattr(ray_sweep, "available", lambda: False)  # local processes: faster here
    config_file = _write(tmp_path / "c.json", {"task.name": "copy", **TINY, "optim.lr": 0.005,
                                               "task.max_length": 3})
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", config_file, "--seeds", "4", "--steps", "1",
                 "--out", str(out), *SMALL]) == 0
    config = json.loads((out / "seed4" / "config.json").read_text())
    assert (config["optim"]["lr"], config["train"]["seed"], config["model"]["memory_slots"]) == \
        (0.005, 4, 12)
    summary = json.loads((out / "summary.json").read_text())
    sets = summary["train_args"][summary["train_args"].index("--set"):]
    assert sets[:2] == ["--set", "model.memory_slots=12"] and "optim.lr=0.005" in sets
