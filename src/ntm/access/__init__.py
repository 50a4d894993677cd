"""Memories as modules: each one heads and memory with its own explicit state.

:class:`MemoryAccess` is the interface :class:`ntm.MemoryRNN` drives; :class:`NTMAccess` the
Neural Turing Machine's heads and memory on it, :class:`DNCAccess` the Differentiable Neural
Computer's.
"""

from .base import AccessStep, MemoryAccess
from .dnc import DNCAccess, DNCLayout, DNCState, DNCTrace
from .ntm import NTMAccess, NTMAccessState, NTMAccessTrace

__all__ = ["AccessStep", "DNCAccess", "DNCLayout", "DNCState", "DNCTrace", "MemoryAccess",
           "NTMAccess", "NTMAccessState", "NTMAccessTrace"]
