"""Fast paths registered per access type; ``"autograd"`` is the reference (see registry.py).

Registered here: the NTM's two, fastest first, and the DNC's one. ``"kernel"``: the sequence
node compiled from C++ (:mod:`ntm.backends.kernel`; CPU, float32 and float64; 5-12x faster
per training step than autograd on the paper's sizes). ``"python"``: the same node in Python
(:mod:`ntm.backends.python`; any device, 1.2-1.5x), which CUDA uses. For the DNC,
``"kernel"``: its sequence node compiled from C++ (:mod:`ntm.backends.dnc_kernel`; CPU,
float32 and float64, one write head and none of Csordas & Schmidhuber's options; 5-20x faster
per training step than autograd at the NTM's sizes), registered for
:class:`~ntm.backends.dnc_kernel.SupportedDNCAccess`, the DNCs it runs.
"""

from ..access.ntm import NTMAccess
from . import dnc_kernel, kernel, python
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
           "check_choice", "choices", "choose", "dnc_kernel", "kernel", "python", "register",
           "registered"]


def _run_on_kernel(cell, projected, carry) -> SequenceRun:
    return python.run_sequence(cell, projected, carry, node=kernel.KernelSequence)


def _run_packed_on_kernel(cell, projected, carry, batch_sizes) -> SequenceRun:
    return python.run_sequence(cell, projected, carry, node=kernel.KernelSequence,
                               batch_sizes=batch_sizes)


register("kernel", NTMAccess, _run_on_kernel, kernel.unavailable, packed=_run_packed_on_kernel)
register("python", NTMAccess, python.run_sequence)
register("kernel", dnc_kernel.SupportedDNCAccess, dnc_kernel.run_sequence, dnc_kernel.unavailable)
