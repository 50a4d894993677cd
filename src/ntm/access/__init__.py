"""Memories as modules: each one heads and memory with its own explicit state.

:class:`MemoryAccess` is the interface :class:`ntm.MemoryRNN` drives; :class:`NTMAccess` the
Neural Turing Machine's heads and memory on it.
"""

from .base import AccessStep, MemoryAccess
from .ntm import NTMAccess, NTMAccessState, NTMAccessTrace

__all__ = ["AccessStep", "MemoryAccess", "NTMAccess", "NTMAccessState", "NTMAccessTrace"]
