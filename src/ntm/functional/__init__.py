"""The pure functions of every memory's math, batched, one equation a function.

The NTM's (Graves et al. 2014) are re-exported here: :mod:`ntm.functional.addressing`
(content and location addressing) and :mod:`ntm.functional.memory` (reading and writing).
Other memories keep theirs in submodules of their own: :mod:`ntm.functional.dnc` (the
Differentiable Neural Computer's allocation, usage, precedence and temporal links) and
:mod:`ntm.functional.sparse` (sparse access memory's top-K reads and sparse writes).
Modules (:mod:`ntm.access`) own the parameters and call these; the fast backends
(:mod:`ntm.backends`) call them too, so each equation is written once in Python.

The shape vocabulary, mapped once to the paper's letters:

    batch          B    sequences in a batch
    heads          H    heads addressed together (read and write heads are stacked)
    memory_slots   N    rows of the memory matrix
    memory_width   M    width of a row
    shift_range    K    largest shift of location addressing: shifts -K..K (2K+1 of them)
    read_heads     R    read heads; write_heads W
"""

from . import dnc, sparse
from .addressing import (
    CARRY_GRAD_BOUND,
    LOG_FLOOR,
    NORM_EPS,
    address,
    bound_gradient,
    content_weights,
    cosine_similarity,
    interpolate,
    sharpen,
    shift,
)
from .memory import read, write

__all__ = [
    "CARRY_GRAD_BOUND",
    "LOG_FLOOR",
    "NORM_EPS",
    "address",
    "bound_gradient",
    "content_weights",
    "cosine_similarity",
    "dnc",
    "interpolate",
    "read",
    "sharpen",
    "shift",
    "sparse",
    "write",
]
