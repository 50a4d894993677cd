"""Neural Turing Machines for PyTorch (Graves, Wayne & Danihelka 2014).

The public API, re-exported name by name. The modules below are imported with the package, so
``import ntm`` is enough for ``ntm.tasks.make``, ``ntm.training.train`` and the rest;
``ntm.plots`` (matplotlib) is imported on its own, when figures are wanted.
"""

from . import addressing, memory, metrics, pretrained, tasks, training
from .baselines import LSTMBaseline, LSTMState
from .model import NTM, NTMCell, NTMState, NTMTrace

__all__ = [
    "NTM",
    "LSTMBaseline",
    "LSTMState",
    "NTMCell",
    "NTMState",
    "NTMTrace",
    "addressing",
    "memory",
    "metrics",
    "pretrained",
    "tasks",
    "training",
]
__version__ = "0.1.0"
