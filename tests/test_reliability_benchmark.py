"""benchmarks/reliability.py: its scoring of run directories against hand-made metrics, its
table, bad input, and one real row trained end to end on a tiny budget."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reliability.py"


def _script():
    spec = importlib.util.spec_from_file_location("reliability_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(folder: Path, seed: int, costs, *, steps=None, optimal=None, opening=None):
    """A run directory whose validations (one per 100 steps, 3,200 sequences) are ``costs``."""
    folder.mkdir(parents=True)
    records = []
    for index, cost in enumerate(costs, start=1):
        record = {"step": 100 * index, "sequences": 3200 * index, "seconds": 2.0 * index,
                  "cost": cost, "val_cost": cost}
        if optimal is not None:
            record["val_optimal_cost"] = optimal
        records.append(record)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {"train": {"seed": seed, "steps": steps or 100 * len(costs), "batch_size": 32}}
    if opening is not None:
        config["task"] = {"opening": opening}
    (folder / "config.json").write_text(json.dumps(config))


def test_rows_are_scored_by_the_reliability_measure(tmp_path):
    bench = _script()
    row = bench.Row("toy", "copy", "ntm-lstm", "defaults", seeds=4)
    _fake_run(tmp_path / "toy" / "seed1", 1, [80.0, 0.05, 0.01, 0.02])  # solved, no spike
    _fake_run(tmp_path / "toy" / "seed2", 2, [80.0, 0.5, 0.09, 40.0, 0.08])  # a spike, solved
    _fake_run(tmp_path / "toy" / "seed3", 3, [80.0, 60.0, 0.09, 70.0])  # spiked, unsolved
    _fake_run(tmp_path / "toy" / "seed4", 4, [80.0, 0.01], steps=1000)  # not finished yet
    score = bench.score_row(tmp_path, row)
    assert (score["seeds_finished"], score["solved"], score["spikes"],
            score["seeds_with_spikes"]) == (3, 2, 2, 2)
    # First validations under 0.1: 6,400 / 9,600 / 9,600 sequences (4 / 6 / 6 seconds).
    assert (score["median_sequences"], score["worst_sequences"]) == (9600, 9600)
    assert (score["median_seconds"], score["worst_seconds"]) == (6.0, 6.0)
    line = bench.table([score]).splitlines()[-1]
    assert line == "| copy | ntm-lstm | defaults | 2/3 | 2 (2) | 9,600 / 9,600 | 6 / 6 |"


def test_spikes_during_an_opening_still_count_and_the_table_says_how_many(tmp_path):
    bench = _script()
    row = bench.Row("open", "repeat_copy", "dnc", "defaults", seeds=2)
    # Validation (on the task) rises while the opening trains on other lengths, to 9,600
    # sequences (step 300); seed 2's later spike is after it.
    _fake_run(tmp_path / "open" / "seed1", 1, [80.0, 5.0, 30.0, 0.05, 0.01], opening=9600)
    _fake_run(tmp_path / "open" / "seed2", 2, [80.0, 5.0, 30.0, 0.05, 40.0, 0.01], opening=9600)
    score = bench.score_row(tmp_path, row)
    assert (score["spikes"], score["spikes_in_opening"]) == (3, 2)
    assert [s["spikes_in_opening"] for s in score["seeds"]] == [1, 1]
    assert "| 2/2 | 3 (2), 2 in the opening |" in bench.table([score])


def test_a_seed_that_never_reaches_the_target_has_no_worst_and_ngrams_is_relative(tmp_path):
    bench = _script()
    row = bench.Row("never", "copy", "ntm-lstm", "defaults")
    _fake_run(tmp_path / "never" / "seed1", 1, [80.0, 0.05])
    _fake_run(tmp_path / "never" / "seed2", 2, [80.0, 30.0])
    score = bench.score_row(tmp_path, row)
    assert score["median_sequences"] == 6400 and score["worst_sequences"] is None
    ngrams = bench.Row("ng", "ngrams", "ntm-lstm", "defaults", target=2.0, above_optimal=True)
    _fake_run(tmp_path / "ng" / "seed1", 1, [180.0, 140.0, 131.5], optimal=130.0)
    score = bench.score_row(tmp_path, ngrams)
    assert score["solved"] == 1 and score["median_sequences"] == 9600


def test_held_out_seeds_are_scored_apart_with_the_command_that_trains_them(tmp_path):
    bench = _script()
    row = bench.Row("toy", "copy", "ntm-lstm", "defaults", seeds=2)
    for seed, costs in ((1, [80.0, 0.05]), (2, [80.0, 0.05]), (3, [80.0, 30.0]),
                        (4, [80.0, 0.01]), (5, [80.0, 0.01])):
        _fake_run(tmp_path / "toy" / f"seed{seed}", seed, costs)
    score = bench.score_row(tmp_path, row)
    assert ([s["seed"] for s in score["seeds"]], score["solved"]) == ([1, 2], 2)
    assert score["command"] == "python benchmarks/reliability.py --rows toy"
    held_out = bench.score_row(tmp_path, row, first_seed=3)
    assert ([s["seed"] for s in held_out["seeds"]], held_out["solved"]) == ([3, 4], 1)
    assert held_out["command"] == "python benchmarks/reliability.py --rows toy --first-seed 3"
    assert held_out["first_seed"] == 3


def test_unknown_rows_are_one_line_and_list_names_them(capsys):
    bench = _script()
    assert bench.main(["--rows", "copy-nope", "--report-only"]) == 2
    assert "unknown row 'copy-nope'; rows: copy-ntm-lstm" in capsys.readouterr().err
    assert bench.main(["--list"]) == 0
    assert "ngrams-ntm-lstm" in capsys.readouterr().out
    assert bench.main(["--first-seed", "0", "--report-only"]) == 2
    assert "--first-seed and --seeds must be 1 or more" in capsys.readouterr().err


def test_one_row_trains_its_seeds_and_is_reported(tmp_path, monkeypatch, capsys):
    bench = _script()
    tiny = ("model.controller_size=8", "model.memory_slots=8", "model.memory_width=4",
            "train.steps=4", "train.batch_size=2", "train.log_every=2", "train.val_every=2",
            "train.val_batches=1", "train.val_batch_size=2", "task.max_length=3")
    monkeypatch.setattr(bench, "ROWS", [bench.Row("tiny", "copy", "ntm-lstm", "tiny", tiny,
                                                  seeds=2)])
    assert bench.main(["--out", str(tmp_path), "--jobs", "2"]) == 0
    score = json.loads((tmp_path / "reliability.json").read_text())[0]
    assert score["seeds_finished"] == 2 and [s["seed"] for s in score["seeds"]] == [1, 2]
    assert "| copy | ntm-lstm | tiny |" in capsys.readouterr().out
    # Run again: the trained seeds are read, not trained again.
    before = (tmp_path / "tiny" / "seed1" / "metrics.jsonl").stat().st_mtime_ns
    assert bench.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "tiny" / "seed1" / "metrics.jsonl").stat().st_mtime_ns == before
    # Held-out seeds: 3 and 4 trained beside them, and scored alone.
    assert bench.main(["--out", str(tmp_path), "--first-seed", "3"]) == 0
    score = json.loads((tmp_path / "reliability.json").read_text())[0]
    assert [s["seed"] for s in score["seeds"]] == [3, 4]
    assert sorted(p.name for p in (tmp_path / "tiny").glob("seed*")) == [f"seed{s}" for s in
                                                                         range(1, 5)]



def test_every_row_is_a_config_ntm_train_accepts():
    from ntm.training import apply_overrides, preset_config

    bench = _script()
    for row in bench.ROWS:
        presets = [item.split("=", 1)[1] for item in row.settings if item.startswith("--preset")]
        overrides = [item for item in row.settings if not item.startswith("--")]
        config = apply_overrides(preset_config(row.task, row.model, *presets), overrides)
        assert config.task.name == row.task, row.name


def test_every_result_file_is_the_row_its_command_reproduces():
    # A row renamed or changed after it was measured (say, when its recipe became the default)
    # would leave RESULTS.md pointing at a command that trains something else.
    bench = _script()
    rows = {row.name: row for row in bench.ROWS}
    scored = 0
    # results/reliability/heldout/ROW.json: the row on seeds from --first-seed on.
    for path in sorted((SCRIPT.parents[1] / "results" / "reliability").glob("**/*.json")):
        data = json.loads(path.read_text())
        for score in data if isinstance(data, list) else [data]:
            if "row" not in score:
                continue  # another script's file (validation breakdowns, older summaries)
            row = rows[score["row"]]
            assert path.stem == row.name
            first = score.get("first_seed", 1)
            assert (path.parent.name == "heldout") == (first != 1), path
            assert (score["recipe"], score["settings"], score["command"]) == (
                row.recipe, list(row.settings), bench.command(row, first)), row.name
            assert (score["task"], score["model"], score["target"]) == (
                row.task, row.model, row.target), row.name
            assert score.get("seeds_planned", row.seeds) == row.seeds, row.name
            scored += 1
    assert scored >= 10
