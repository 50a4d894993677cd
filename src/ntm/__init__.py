"""Neural Turing Machines for PyTorch (Graves, Wayne & Danihelka 2014).

The public API, re-exported name by name.
"""

from .model import NTM, NTMCell, NTMState, NTMTrace

__all__ = ["NTM", "NTMCell", "NTMState", "NTMTrace"]
__version__ = "0.1.0"
