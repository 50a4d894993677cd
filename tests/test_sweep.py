"""Tests of ``ntm sweep`` and ntm.training.sweep: seeds, child runs, the summary, bad input."""

import doctest
import json
import re

import pytest

from ntm.cli import main
from ntm.training import ConfigError, parse_seeds, read_metrics
from ntm.training import sweep as ntm_sweep

TINY = ["model.memory_slots=8", "model.memory_width=4", "model.controller_size=8",
        "train.batch_size=2", "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=2", "train.device=cpu", "task.max_length=3"]
SETS = [item for setting in TINY for item in ("--set", setting)]


def test_sweep_trains_each_seed_and_summarises(tmp_path, capsys):
    out = tmp_path / "sweep"
    # 3 steps validated at step 2: the final model's cost is scored again by the sweep. A target
    # of 1000 bits counts the first validation as converged.
    assert main(["sweep", "copy", "--seeds", "1-2", "--jobs", "2", "--steps", "3",
                 "--target", "1000", "--out", str(out), *SETS]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^seed\s+status\s+steps\s+sequences\s+val_cost\s+converged\s+"
                     r"sequences to 1000$", table, re.MULTILINE), table
    assert re.search(r"^\s*1\s+finished\s+3\s+6\s+\d+\.\d{3}\s+yes\s+4$", table, re.MULTILINE)
    assert "Converged: 2 of 2 seeds (100%) under 1000 bits per sequence; median sequences to " \
           "converge: 4." in table

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seeds"], summary["finished"], summary["converged"]) == (2, 2, 2)
    assert summary["converged_fraction"] == 1.0 and summary["median_sequences_to_target"] == 4
    assert summary["target"] == 1000.0
    runs = summary["runs"]
    assert [(r["seed"], r["steps"], r["sequences"], r["returncode"]) for r in runs] == \
        [(1, 3, 6, 0), (2, 3, 6, 0)]
    for run in runs:
        folder = out / f"seed{run['seed']}"
        config = json.loads((folder / "config.json").read_text())
        assert (config["train"]["seed"], config["train"]["threads"]) == (run["seed"], 1)
        assert [r["step"] for r in read_metrics(folder)] == [1, 2, 3]
        # The child printed its final validation cost (3 digits): the sweep's re-scoring agrees.
        printed = re.search(r"validation cost ([\d.e+-]+)", (folder / "train.log").read_text())
        assert run["val_cost"] == pytest.approx(float(printed.group(1)), rel=5e-3)
    assert runs[0]["val_cost"] != runs[1]["val_cost"]  # the seeds trained differently


def test_a_seed_that_fails_is_reported_and_the_sweep_exits_1(tmp_path, capsys):
    out = tmp_path / "sweep"
    (out / "seed4" / "train.log").mkdir(parents=True)  # the log cannot be written: no start
    assert main(["sweep", "copy", "--seeds", "4", "--out", str(out), *SETS]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^\s*4\s+not started\s+-\s+-\s+-\s+no\s+-$", captured.out, re.MULTILINE)
    assert "Seed 4 failed: could not start ntm train" in captured.out
    assert "[1/1] seed 4 failed" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["finished"], summary["converged_fraction"]) == (0, 0.0)
    assert summary["median_sequences_to_target"] is None
    assert summary["runs"][0]["returncode"] is None


def test_seed_lists():
    assert parse_seeds("1-10") == list(range(1, 11))
    assert parse_seeds("1,3,5") == [1, 3, 5]
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    assert parse_seeds(" 0 , 2-2 ,1-2") == [0, 2, 1]  # in the order given, each once
    for bad in ["", "a", "1-", "-1", "3-1", "1,,2", "1.5", "1-2-3", "0-10000"]:
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert doctest.testmod(ntm_sweep, verbose=False).failed == 0


@pytest.mark.parametrize("argv", [
    ["sweep", "copy"],  # no --seeds
    ["sweep", "copy", "--seeds", "3-1"],
    ["sweep", "copy", "--seeds", "x"],
    ["sweep", "copy", "--seeds", "1", "--jobs", "0"],
    ["sweep", "copy", "--seeds", "1", "--target", "0"],
    ["sweep", "copy", "--seeds", "1", "--set", "model.memory_slots=0"],
    ["sweep", "nosuchtask", "--seeds", "1"],
])
def test_bad_input_exits_2_with_one_line_and_starts_nothing(tmp_path, capsys, argv):
    out = tmp_path / "sweep"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntm: error: "), err
    assert not out.exists()


def test_a_sweep_does_not_overwrite_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    (out / "seed2").mkdir(parents=True)
    (out / "seed2" / "metrics.jsonl").write_text("")
    assert main(["sweep", "copy", "--seeds", "1-2", "--out", str(out), *SETS]) == 2
    assert "seed2 already holds a run" in capsys.readouterr().err
    assert not (out / "seed1").exists()
