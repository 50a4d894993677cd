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


@pytest.fixture(autouse=True)
def _local_processes(monkeypatch):
    """These tests are of the sweep itself, in local processes (what it does without Ray);
    the same sweep on Ray is tests/test_ray.py's."""
    from ntm.training import ray_sweep

    monkeypatch.setattr(ray_sweep, "available", lambda: False)


def test_sweep_trains_each_seed_and_summarises(tmp_path, capsys):
    out = tmp_path / "sweep"
    # 3 steps validated at step 2: the loop scores the final model after step 3, and the sweep
    # reads that cost from the state file. A target of 1000 bits counts the first validation
    # as converged.
    assert main(["sweep", "copy", "--seeds", "1-2", "--jobs", "2", "--steps", "3",
                 "--target", "1000", "--out", str(out), *SETS]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^seed\s+status\s+steps\s+sequences\s+val_cost\s+converged\s+"
                     r"sequences to 1000\s+seconds\s+collapses\s+solved at end$", table,
                     re.MULTILINE), table
    assert re.search(r"^\s*1\s+finished\s+3\s+6\s+\d+\.\d{3}\s+yes\s+4\s+\d+\.\d\s+0\s+yes$",
                     table, re.MULTILINE), table
    assert "Stayed solved to the end: 2 of 2; collapsed after learning: 0 seed(s)" in table
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
        # The child printed its final validation cost (3 digits): the state file's agrees.
        printed = re.search(r"validation cost ([\d.e+-]+)", (folder / "train.log").read_text())
        assert run["val_cost"] == pytest.approx(float(printed.group(1)), rel=5e-3)
    assert runs[0]["val_cost"] != runs[1]["val_cost"]  # the seeds trained differently


def test_a_seed_that_fails_is_reported_and_the_sweep_exits_1(tmp_path, capsys):
    out = tmp_path / "sweep"
    (out / "seed4" / "train.log").mkdir(parents=True)  # the log cannot be written: no start
    assert main(["sweep", "copy", "--seeds", "4", "--out", str(out), *SETS]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^\s*4\s+not started\s+-\s+-\s+-\s+no\s+-\s+-\s+-\s+-$", captured.out,
                     re.MULTILINE)
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
    with pytest.raises(ConfigError, match=r"seeds must be less than 2\*\*63|less than 9223"):
        parse_seeds(str(2**63))
    assert parse_seeds(str(2**63 - 1)) == [2**63 - 1]
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


def test_a_second_sweep_into_the_directory_keeps_the_first_seeds(tmp_path, capsys):
    out = tmp_path / "sweep"
    common = ["--steps", "2", "--target", "1000", "--out", str(out), *SETS]
    assert main(["sweep", "copy", "--seeds", "3", *common]) == 0
    first = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["sweep", "copy", "--seeds", "1", *common]) == 0
    table = capsys.readouterr().out  # every seed of the folder, the first sweep's too
    assert [line.split()[0] for line in table.splitlines()[2:4]] == ["1", "3"]
    summary = json.loads((out / "summary.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [1, 3]  # sorted by seed
    assert summary["runs"][1] == first["runs"][0]  # the first sweep's entry, unchanged
    assert (summary["seeds"], summary["finished"], summary["converged"]) == (2, 2, 2)
    assert (summary["train_args"], summary["target"]) == (first["train_args"], 1000.0)
    assert sorted(path.name for path in out.iterdir()) == ["seed1", "seed3", "summary.json"]
    assert "Seed" not in capsys.readouterr().out  # no failures


def _fake_seeds(monkeypatch, results):
    """Replace the child processes: seed S ends as ``results[S]`` (sequences to target, or
    "failed"); a seed not in ``results`` fails the test."""

    def run_seed(seed, folder, train_args, environment, target):
        outcome = results[seed]
        if outcome == "failed":
            return ntm_sweep.SeedRun(seed, str(folder), 2, error="boom")
        return ntm_sweep.SeedRun(seed, str(folder), 0, steps=50, sequences=100, val_cost=0.5,
                                 sequences_to_target=outcome)

    monkeypatch.setattr(ntm_sweep, "_run_seed", run_seed)


def test_merged_summary_counts_over_every_seed(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    _fake_seeds(monkeypatch, {5: 40, 1: None})
    ntm_sweep.run_sweep(["copy"], [5, 1], out, jobs=1, target=0.5)
    _fake_seeds(monkeypatch, {3: 10, 2: "failed", 1: 70})
    runs = ntm_sweep.run_sweep(["copy"], [3, 2, 1], out, jobs=1, target=0.5)
    assert [run.seed for run in runs] == [3, 2, 1]  # this sweep's, in the order asked
    summary = json.loads((out / "summary.json").read_text())
    # Seed 1 (its directory held no run) was run again: its new result replaces the old one.
    assert [(run["seed"], run["sequences_to_target"], run["returncode"])
            for run in summary["runs"]] == [(1, 70, 0), (2, None, 2), (3, 10, 0), (5, 40, 0)]
    assert (summary["seeds"], summary["finished"], summary["converged"]) == (4, 3, 3)
    assert summary["converged_fraction"] == 0.75 and summary["median_sequences_to_target"] == 40
    assert summary == {**summary, **ntm_sweep.summarize(ntm_sweep.read_summary(out)["runs"])}
    assert [path.name for path in out.iterdir()] == ["summary.json"]  # no temporary file left


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "Expecting property name"),
    ("[]", "expected a JSON object, got list"),
    ('{"train_args": ["copy"], "target": 0.1}', "'runs' is missing"),
    ('{"train_args": ["copy"], "target": 0.1, "runs": [{"seed": 1}]}',
     "runs[0].out_dir is missing or of the wrong type"),
    ('{"train_args": ["copy"], "target": 0.1, "runs": [{"seed": "1", "out_dir": "x", '
     '"returncode": 0}]}', "runs[0].seed is missing or of the wrong type"),
    ('{"train_args": ["copy"], "target": 0.1, "runs": [{"seed": 1, "out_dir": "x", '
     '"returncode": 0}, {"seed": 1, "out_dir": "x", "returncode": 0}]}', "listed twice"),
])
def test_a_corrupt_summary_is_refused_before_any_seed_trains(tmp_path, monkeypatch, capsys,
                                                             text, problem):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "summary.json").write_text(text)
    _fake_seeds(monkeypatch, {})  # a seed that starts fails the test
    with pytest.raises(ntm_sweep.RunDirError, match=re.escape(problem)):
        ntm_sweep.run_sweep(["copy"], [1], out)
    assert main(["sweep", "copy", "--seeds", "1", "--out", str(out), *SETS]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the "Training" banner
    assert error.startswith("ntm: error: ") and "summary.json is corrupt" in error, error
    assert error.endswith("; repair or remove it, or choose another output directory")
    assert (out / "summary.json").read_text() == text
    assert [path.name for path in out.iterdir()] == ["summary.json"]


@pytest.mark.parametrize(("train_args", "target", "problem"), [
    (["copy", "--steps", "3"], 0.5, "trained with copy --steps 2, not copy --steps 3"),
    (["copy", "--steps", "2"], 0.1, "under a target of 0.5, not 0.1"),
])
def test_seeds_of_another_sweep_are_not_added(tmp_path, monkeypatch, train_args, target,
                                              problem):
    out = tmp_path / "sweep"
    _fake_seeds(monkeypatch, {1: 10})
    ntm_sweep.run_sweep(["copy", "--steps", "2"], [1], out, target=0.5)
    before = (out / "summary.json").read_text()
    _fake_seeds(monkeypatch, {})
    with pytest.raises(ntm_sweep.RunDirError, match=re.escape(problem)):
        ntm_sweep.run_sweep(train_args, [2], out, target=target)
    assert (out / "summary.json").read_text() == before


def test_the_table_and_summary_count_collapses_and_seeds_that_stayed_solved(tmp_path):
    runs = [ntm_sweep.SeedRun(1, "a", 0, 300, 9600, 0.01, 6400, None, 12.5, 0, True),
            ntm_sweep.SeedRun(2, "b", 0, 300, 9600, 55.0, 3200, None, 8.0, 2, False),
            ntm_sweep.SeedRun(3, "c", 0, 300, 9600, 80.0, None, None, None, 0, False)]
    totals = ntm_sweep.summarize(runs)
    assert (totals["solved_at_end"], totals["collapsed"], totals["collapses"]) == (1, 1, 2)
    table = ntm_sweep.sweep_table(runs, 0.1)
    assert re.search(r"^\s*2\s+finished\s+300\s+9600\s+55\.000\s+yes\s+3200\s+8\.0\s+2\s+no$",
                     table, re.MULTILINE), table
    assert ("Stayed solved to the end: 1 of 3; collapsed after learning: 1 seed(s), "
            "2 collapse(s) in all.") in table
    # summary.json keeps them, and one written before them still reads (they are None).
    ntm_sweep._write_summary(tmp_path, ["copy"], 0.1, runs)
    assert ntm_sweep.read_summary(tmp_path)["runs"] == runs
    old = json.loads((tmp_path / "summary.json").read_text())
    for run in old["runs"]:
        for key in ("seconds_to_target", "collapses", "solved_at_end"):
            del run[key]
    (tmp_path / "summary.json").write_text(json.dumps(old))
    assert [run.collapses for run in ntm_sweep.read_summary(tmp_path)["runs"]] == [None] * 3


def test_collapses_during_an_opening_are_counted_and_said_apart(tmp_path, monkeypatch):
    # A run directory with an opening of 9,600 sequences: validations every 3,200, the first
    # collapse (index 2) in the opening, the second (index 4) after it.
    folder = tmp_path / "seed1"
    folder.mkdir()
    costs = [80.0, 5.0, 30.0, 0.05, 40.0, 0.01]
    records = [{"step": 100 * (i + 1), "sequences": 3200 * (i + 1), "seconds": 1.0 * (i + 1),
                "val_cost": cost} for i, cost in enumerate(costs)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "config.json").write_text(json.dumps({"task": {"opening": 9600}}))
    assert ntm_sweep._opening(folder) == 9600
    # The checkpoint's counters: only the file's presence is read here, the rest is faked.
    (folder / "training_state.safetensors").write_bytes(b"")
    monkeypatch.setattr(ntm_sweep, "read_counters", lambda path: {
        "step": 600, "sequences": 19200, "val_step": 600, "val_cost": 0.01})
    run = ntm_sweep.SeedRun(1, str(folder), 0)
    ntm_sweep._read_results(run, folder, 0.1)
    assert (run.collapses, run.collapses_in_opening, run.solved_at_end) == (2, 1, True)
    table = ntm_sweep.sweep_table([run], 0.1)
    assert "2 (1 in opening)" in table, table
    assert "2 collapse(s) in all, 1 of them in an opening (task.opening)." in table
    (folder / "config.json").write_text("{")  # unreadable: no opening, nothing fails
    assert ntm_sweep._opening(folder) is None
