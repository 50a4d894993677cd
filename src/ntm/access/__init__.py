"""Memories as modules: each one heads and memory with its own explicit state.

:class:`MemoryAccess` is the interface :class:`ntm.MemoryRNN` drives; :class:`NTMAccess` the
Neural Turing Machine's heads and memory on it, :class:`DNCAccess` the Differentiable Neural
Computer's, :class:`SparseAccess` sparse access memory's (Rae et al. 2016).
"""

from .base import AccessStep, MemoryAccess
from .dnc import DNCAccess, DNCLayout, DNCState, DNCTrace
from .ntm import NTMAccess, NTMAccessState, NTMAccessTrace
from .sparse import SparseAccess, SparseLayout, SparseState, SparseTrace

__all__ = ["AccessStep", "DNCAccess", "DNCLayout", "DNCState", "DNCTrace", "MemoryAccess",
           "NTMAccess", "NTMAccessState", "NTMAccessTrace", "SparseAccess", "SparseLayout",
           "SparseState", "SparseTrace"]
