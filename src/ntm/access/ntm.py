"""The Neural Turing Machine's heads and memory (Graves et al. 2014, section 3) as an access.

Order of a step (as Collier & Beel 2018): every head is addressed against the memory as it was
before this step; the read heads read it; then the write heads erase and add. The interface
vector splits into the heads' parameters by the one table of :class:`ntm.heads.HeadLayout`,
which also applies the activations.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import address, bound_gradient, read, write
from ..heads import HeadLayout
from .base import AccessStep, MemoryAccess

MEMORY_INITS = ("constant", "learned", "random")
# Collier & Beel 2018: a small constant memory converged about twice as fast as the next best.
CONSTANT_MEMORY_VALUE = 1e-6
# Standard deviation of the "random" memory, and of the starting value of the "learned" one.
RANDOM_MEMORY_STD = 0.5


class NTMAccessState(NamedTuple):
    """What the NTM's memory carries from one step to the next."""

    memory: Tensor  # [B, N, M]
    read_weights: Tensor  # [B, read_heads, N]
    write_weights: Tensor  # [B, write_heads, N]


class NTMAccessTrace(NamedTuple):
    """What one step of the NTM's heads did (stacked over steps by ``trace``)."""

    read_weights: Tensor  # [B, read_heads, N]
    write_weights: Tensor  # [B, write_heads, N]


class NTMAccess(MemoryAccess):
    """The paper's read and write heads over one ``[memory_slots, memory_width]`` memory.

    Args:
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a row.
        read_heads, write_heads: numbers of heads.
        shift_range: largest shift of location addressing (shifts ``-shift_range..shift_range``).
        memory_init: ``"constant"`` (1e-6 everywhere), ``"learned"`` (an ``[N, M]`` parameter,
            drawn from N(0, 0.5^2) at initialisation) or ``"random"`` (drawn from N(0, 0.5^2)
            afresh for every sequence).
        device, dtype: factory arguments for the learned memory.

    ``interface_size`` is the size of :class:`ntm.heads.HeadLayout`; ``read_size`` is
    ``read_heads * memory_width`` (the read vectors, flattened).
    """

    State = NTMAccessState
    Trace = NTMAccessTrace

    def __init__(
        self,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "constant",
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_arguments(memory_slots, memory_width, read_heads, write_heads, shift_range,
                         memory_init)
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.shift_range, self.memory_init = shift_range, memory_init
        self.layout = HeadLayout(read_heads, write_heads, memory_width, shift_range)
        self.interface_size = self.layout.size
        self.read_size = read_heads * memory_width
        if memory_init == "learned":
            self.initial_memory = nn.Parameter(
                torch.empty(memory_slots, memory_width, device=device, dtype=dtype)
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the learned memory afresh from N(0, 0.5^2) (nothing to do for the others)."""
        if self.memory_init == "learned":
            with torch.no_grad():
                self.initial_memory.normal_(0.0, 1.0).mul_(RANDOM_MEMORY_STD)

    def initial_state(
        self, batch_size: int, *, device=None, dtype=None, generator: torch.Generator | None = None
    ) -> NTMAccessState:
        """Memory per ``memory_init``; every head's weighting on slot 0.

        Slot 0 gives location addressing a defined origin. ``generator`` draws the
        ``"random"`` memory.
        """
        factory = {"device": device, "dtype": dtype}
        shape = (batch_size, self.memory_slots, self.memory_width)
        if self.memory_init == "constant":
            memory = torch.full(shape, CONSTANT_MEMORY_VALUE, **factory)
        elif self.memory_init == "learned":
            memory = self.initial_memory.expand(shape)
        else:
            memory = torch.randn(shape, generator=generator, **factory) * RANDOM_MEMORY_STD
        weights = torch.zeros(batch_size, self.read_heads + self.write_heads, self.memory_slots,
                              **factory)
        weights[:, :, 0] = 1.0
        read_weights, write_weights = weights.split([self.read_heads, self.write_heads], dim=1)
        return NTMAccessState(memory, read_weights, write_weights)

    def state_shapes(self, batch_size: int) -> NTMAccessState:
        slots = self.memory_slots
        return NTMAccessState((batch_size, slots, self.memory_width),
                              (batch_size, self.read_heads, slots),
                              (batch_size, self.write_heads, slots))

    def step(self, interface: Tensor, state: NTMAccessState, *, record: bool = False
             ) -> AccessStep:
        """Address, read, write: ``interface [B, interface_size]`` -> reads ``[B, R * M]``."""
        # Bounds the gradient carried back along the memory and the weightings (see
        # bound_gradient): keeps backpropagation through time finite in float32.
        memory = bound_gradient(state.memory)
        previous = bound_gradient(torch.cat([state.read_weights, state.write_weights], dim=1))
        p = self.layout.activate(interface)
        weights = address(
            memory, previous, p.keys, p.key_strengths, p.gates, p.shift_weights, p.sharpening
        )  # (B, read_heads + write_heads, N)
        read_weights, write_weights = weights.split([self.read_heads, self.write_heads], dim=1)
        reads = read(memory, read_weights).flatten(1)  # (B, read_heads * M)
        memory = write(memory, write_weights, p.erase, p.add)
        trace = NTMAccessTrace(read_weights, write_weights) if record else None
        return AccessStep(reads, NTMAccessState(memory, read_weights, write_weights), trace)

    def extra_repr(self) -> str:
        defaults = {name: parameter.default for name, parameter
                    in inspect.signature(NTMAccess.__init__).parameters.items()
                    if name not in ("self", "device", "dtype")}
        return ", ".join(f"{k}={getattr(self, k)!r}" for k, v in defaults.items()
                         if getattr(self, k) != v)


def _check_arguments(memory_slots, memory_width, read_heads, write_heads, shift_range,
                     memory_init) -> None:
    if memory_init not in MEMORY_INITS:
        raise ValueError(f"memory_init must be one of {list(MEMORY_INITS)}, got {memory_init!r}")
    sizes = {"memory_slots": memory_slots, "memory_width": memory_width,
             "read_heads": read_heads, "write_heads": write_heads}
    for name, value in sizes.items():
        check_positive_int(name, value)
    if (isinstance(shift_range, bool) or not isinstance(shift_range, int)
            or not 0 <= 2 * shift_range < memory_slots):
        raise ValueError(
            "shift_range must be an integer with 0 <= 2 * shift_range < memory_slots, "
            f"got {shift_range!r} with memory_slots={memory_slots}"
        )


def check_positive_int(name: str, value) -> None:
    """Raise a ValueError unless ``value`` is an int (not a bool) of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
