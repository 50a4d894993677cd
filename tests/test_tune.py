"""Tests of ntm.training.tune and ntm.plots.tune that need no Ray: the space, the score and the
choice of the best trial, the counts read from run directories, trials.csv and the figure.
(The search itself, on Ray: tests/test_ray.py.)"""

import csv
import json
from types import SimpleNamespace

import pytest

from ntm.plots import tune as tune_plots
from ntm.training import ConfigError, preset_config
from ntm.training import tune as ntm_tune


def _trial(number, solved, cost, **values):
    return ntm_tune.TrialResult(number, values or {"optim.lr": 0.001 * number},
                                [f"trial{number:03d}/seed1", f"trial{number:03d}/seed2"],
                                solved=solved, median_sequences=400 if solved else None,
                                best_cost=cost, median_cost=cost, budget=1000)


def test_the_best_trial_solves_most_seeds_and_is_the_first_of_equal_ones():
    trials = [_trial(1, 1, 0.05), _trial(2, 2, 0.01), _trial(3, 2, 0.02), _trial(4, 0, 3.0)]
    assert ntm_tune.best_trial(trials).number == 2  # 2 and 3 score the same: the first
    failed = ntm_tune.TrialResult(5, {"optim.lr": 0.1}, ["x"], solved=2, error="it failed")
    assert ntm_tune.best_trial([failed, _trial(6, 0, 1.0)]).number == 6
    assert ntm_tune.best_trial([failed]) is None and ntm_tune.best_trial([]) is None


def test_the_first_point_is_the_base_configs_values_spelled_as_set_spells_them():
    base = preset_config("copy", "ntm-lstm", "fast")
    space = ntm_tune.parse_space(["optim.lr=loguniform:1e-4:1e-2",
                                  "optim.centered=choice:true,false",
                                  "model.memory_slots=int:64:256"])
    assert ntm_tune.check_space(space, base) == {"optim.lr": 0.002, "optim.centered": "true",
                                                 "model.memory_slots": 128}
    outside = ntm_tune.parse_space(["optim.lr=uniform:0.1:0.2"])
    assert ntm_tune.check_space(outside, base) is None
    with pytest.raises(ConfigError, match="--space optim.clip"):
        ntm_tune.check_space(ntm_tune.parse_space(["optim.clip=choice:value,nope"]), base)


def test_trials_are_named_in_the_order_they_were_proposed(tmp_path):
    proposed = SimpleNamespace(experiment_tag="3_optim.lr=0.0020", trial_id="ab12cd34")
    assert ntm_tune._trial_name(proposed) == "trial003"
    untagged = SimpleNamespace(experiment_tag="", trial_id="ab12cd34")
    assert ntm_tune._trial_name(untagged) == "trial_ab12cd34"
    assert ntm_tune._trial_dir(tmp_path, "trial003") == tmp_path / "trial003"
    assert ntm_tune._trial_dir(tmp_path, "trial_ab12cd34") == tmp_path / "trial001"
    assert ntm_tune._trial_dir(tmp_path, "other") == tmp_path / "trial002"


def _write_metrics(folder, costs, torn=False):
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": 10 * (i + 1), "sequences": 20 * (i + 1), "val_cost": cost})
             for i, cost in enumerate(costs)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + ("\n{\"step\": 4" if torn else ""))


def test_counts_over_a_trials_seeds_read_from_their_metrics(tmp_path):
    _write_metrics(tmp_path / "seed1", [5.0, 0.05, 0.01], torn=True)
    _write_metrics(tmp_path / "seed2", [6.0, 4.0, 0.08])
    progress = [ntm_tune._progress(tmp_path / name, 0.1) for name in ("seed1", "seed2")]
    assert [p.costs for p in progress] == [[5.0, 0.05, 0.01], [6.0, 4.0, 0.08]]
    assert [(p.solved_at, p.sequences_to_target) for p in progress] == [(2, 40), (3, 60)]
    assert ntm_tune._summary(progress) == {"solved": 2, "median_sequences": 50,
                                           "val_cost": 0.045, "best_cost": 0.01,
                                           "median_cost": 0.045}
    # After two validations one seed had solved; ASHA sees the median of the latest costs.
    assert ntm_tune._summary(progress, 2) == {"solved": 1, "median_sequences": 40,
                                              "val_cost": 2.025, "best_cost": 0.05,
                                              "median_cost": 2.025}
    assert ntm_tune._progress(tmp_path / "none", 0.1).costs == []


def test_trials_csv_has_a_row_per_trial_and_the_table_puts_the_best_first(tmp_path):
    space = ntm_tune.parse_space(["optim.lr=loguniform:1e-4:1e-2"])
    trials = [_trial(1, 0, 2.0), _trial(2, 2, 0.01)]
    ntm_tune._write_trials(tmp_path / "trials.csv", trials, space)
    with open(tmp_path / "trials.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["trial"] for row in rows] == ["1", "2"]
    assert rows[1] == {"trial": "2", "optim.lr": "0.002", "seeds": "2", "seeds_solved": "2",
                       "median_sequences_to_target": "400", "best_cost": "0.01",
                       "median_best_cost": "0.01", "stopped_early": "False",
                       "score": f"{trials[1].score:.6g}",
                       "run_dirs": "trial002/seed1 trial002/seed2", "error": ""}
    table = ntm_tune.trials_table(trials, space, 0.1).splitlines()
    assert table[0].split() == ["trial", "optim.lr", "solved", "median", "sequences", "to",
                                "0.1", "best", "cost", "ended"]
    assert table[2].split()[:3] == ["2", "0.002", "2/2"]


def test_the_figure_has_a_panel_per_searched_key(tmp_path):
    space = ntm_tune.parse_space(["optim.lr=loguniform:1e-4:1e-2", "model.memory_slots=int:8:32",
                                  "optim.name=choice:rmsprop,adam"])
    values = [{"optim.lr": 0.001, "model.memory_slots": 8, "optim.name": "adam"},
              {"optim.lr": 0.005, "model.memory_slots": 32, "optim.name": "rmsprop"}]
    trials = [_trial(1, 2, 0.01, **values[0]), _trial(2, 0, 3.0, **values[1]),
              ntm_tune.TrialResult(3, values[0], error="it failed")]
    figure = tune_plots.trials_figure(trials, space, 0.1)
    panels = [ax for ax in figure.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == [d.key for d in space]
    assert panels[0].get_xscale() == "log" and len(figure.axes) == 4  # and the colour bar
    path = tune_plots.draw_trials(trials, space, tmp_path / "figures", 0.1)
    assert path.endswith("trials.png") and (tmp_path / "figures" / "trials.png").stat().st_size
    tune_plots.trials_figure([ntm_tune.TrialResult(1, values[0])], space, 0.1)  # none ran
