"""Tests of the figure functions (ntm.plots)."""

import numpy as np
import pytest
import torch

from ntm import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_sequence_figure(tmp_path):
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 2, (9, 9))
    figure = plots.sequence_figure(inputs, rng.integers(0, 2, (9, 8)),
                                   torch.rand(9, 8), title="copy")  # tensors are accepted
    assert len([axis for axis in figure.axes if axis.images]) == 3
    plots.save_figure(figure, tmp_path / "s.png")
    assert _is_png(tmp_path / "s.png")


def test_weightings_figure_one_panel_per_head(tmp_path):
    weights = np.zeros((6, 2, 32))
    weights[np.arange(6), :, (30 + np.arange(6)) % 32] = 1.0  # heads wrapping past slot 31
    figure = plots.weightings_figure(weights, weights[:, :1])
    images = [axis for axis in figure.axes if axis.images]
    assert len(images) == 3
    assert images[0].images[0].get_array().shape[0] == 6 + 2 * 2  # focused: used slots + margin
    plots.save_figure(figure, tmp_path / "w.png")
    assert _is_png(tmp_path / "w.png")


@pytest.mark.parametrize(("used", "expected"), [
    ([14, 15, 0, 1], [12, 13, 14, 15, 0, 1, 2, 3]),
    ([5, 6], [3, 4, 5, 6, 7, 8]),
    (list(range(16)), list(range(16))),
])
def test_focus_keeps_used_slots_in_circular_order(used, expected):
    weights = np.zeros((3, 1, 16))
    weights[:, 0, used] = 0.5
    assert plots._focus(weights).tolist() == expected


def test_learning_curve_and_generalisation_figures(tmp_path):
    records = [{"step": s, "sequences": 16 * s, "cost": 80 / s} for s in range(1, 5)]
    records[1]["val_cost"] = 30.0
    records[3].update(val_cost=10.0, val_optimal_cost=5.0)
    figure = plots.learning_curve_figure({"a": records, "b": records[:2]})
    assert len(figure.axes[0].lines) == 5  # 2 runs x (training, validation) + optimal
    plots.save_figure(figure, tmp_path / "c.png")

    rows = [{"setting": "length=10", "bit_errors": 0.0, "cost": 1.0, "optimal_cost": 0.5},
            {"setting": "length=20", "bit_errors": 2.5, "cost": 3.0, "optimal_cost": 0.5}]
    for metric in ("bit_errors", "cost"):
        figure = plots.generalisation_figure({"a": rows, "b": rows[:1]}, metric=metric)
        plots.save_figure(figure, tmp_path / f"g-{metric}.png")
        assert _is_png(tmp_path / f"g-{metric}.png")
    assert _is_png(tmp_path / "c.png")


def test_the_learning_curve_marks_each_restart_from_fresh_weights_once_in_its_legend():
    records = [{"step": s, "sequences": 16 * s, "cost": 80.0, "val_cost": 80.0}
               for s in range(1, 7)]
    records[1]["restart"], records[3]["restart"] = 1, 2
    axis = plots.learning_curve_figure({"a": records}).axes[0]
    marks = [line for line in axis.lines if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in marks] == [0.032, 0.064]  # thousands of sequences
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels.count("a (restart from fresh weights)") == 1
    plain = plots.learning_curve_figure({"a": [{k: v for k, v in r.items() if k != "restart"}
                                               for r in records]})
    assert not [line for line in plain.axes[0].lines if line.get_linestyle() == ":"]
