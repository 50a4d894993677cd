"""Neural Turing Machines for PyTorch (Graves, Wayne & Danihelka 2014).

The public API, re-exported name by name. The modules below are imported with the package, so
``import ntm`` is enough for ``ntm.tasks.make``, ``ntm.training.train`` and the rest;
``ntm.plots`` (matplotlib) is imported on its own, when figures are wanted.
"""

from . import (
    access,
    addressing,
    backends,
    errors,
    fields,
    functional,
    memory,
    metrics,
    models,
    pretrained,
    rundir,
    tasks,
    training,
)
from .baselines import LSTMBaseline, LSTMState
from .core import MemoryCell, MemoryRNN, MemoryState, MemoryTrace
from .dnc import DNC, DNCCell, DNCState, DNCTrace
from .model import NTM, NTMCell, NTMState, NTMTrace
from .sam import SAM, SAMCell, SparseState, SparseTrace

__all__ = [
    "DNC",
    "NTM",
    "SAM",
    "DNCCell",
    "DNCState",
    "DNCTrace",
    "LSTMBaseline",
    "LSTMState",
    "MemoryCell",
    "MemoryRNN",
    "MemoryState",
    "MemoryTrace",
    "NTMCell",
    "NTMState",
    "NTMTrace",
    "SAMCell",
    "SparseState",
    "SparseTrace",
    "access",
    "addressing",
    "backends",
    "errors",
    "fields",
    "functional",
    "memory",
    "metrics",
    "models",
    "pretrained",
    "rundir",
    "tasks",
    "training",
]
__version__ = "0.1.0"
