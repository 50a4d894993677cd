"""Fast paths registered per access type; ``"autograd"`` is the reference (see registry.py).

Registered here: the NTM's two, fastest first. ``"kernel"``: the sequence node compiled from
C++ (:mod:`ntm.backends.kernel`; CPU, float32 and float64; 5-12x faster per training step than
autograd on the paper's sizes). ``"python"``: the same node in Python
(:mod:`ntm.backends.python`; any device, 1.2-1.5x), which CUDA uses.
"""

from ..access.ntm import NTMAccess
from . import kernel, python
from .registry import (
    AUTO,
    AUTOGRAD,
    Backend,
    Carry,
    SequenceRun,
    backends_for,
    check_choice,
    choices,
    choose,
    register,
    registered,
)

__all__ = ["AUTO", "AUTOGRAD", "Backend", "Carry", "SequenceRun", "backends_for",
           "check_choice", "choices", "choose", "kernel", "python", "register", "registered"]


def _run_on_kernel(cell, projected, carry) -> SequenceRun:
    return python.run_sequence(cell, projected, carry, node=kernel.KernelSequence)


def _run_packed_on_kernel(cell, projected, carry, batch_sizes) -> SequenceRun:
    return python.run_sequence(cell, projected, carry, node=kernel.KernelSequence,
                               batch_sizes=batch_sizes)


register("kernel", NTMAccess, _run_on_kernel, kernel.unavailable, packed=_run_packed_on_kernel)
register("python", NTMAccess, python.run_sequence)
