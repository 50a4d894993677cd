"""Figures in the style of the NTM paper (:mod:`ntm.plots.figures`: pure functions of arrays
and records) and the figures of run directories that ``ntm plot`` draws
(:mod:`ntm.plots.runs`).

Imported on its own (``import ntm.plots``), not with ``ntm``: it loads matplotlib, which only
figures need.
"""

from . import figures, runs
from .figures import (
    _focus,  # noqa: F401 - tests/test_plots.py checks it
    generalisation_figure,
    learning_curve_figure,
    save_figure,
    sequence_figure,
    weightings_figure,
)
from .runs import curve_records, draw_curves, draw_runs, example, run_labels

__all__ = [
    "curve_records",
    "draw_curves",
    "draw_runs",
    "example",
    "figures",
    "generalisation_figure",
    "learning_curve_figure",
    "run_labels",
    "runs",
    "save_figure",
    "sequence_figure",
    "weightings_figure",
]
