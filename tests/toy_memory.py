"""A toy memory for the core's tests: one learned vector that the interface overwrites.

It shows what the core needs of a memory and has no backend of its own, so it runs on plain
autograd (tests/test_core.py, tests/test_lengths.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ntm.access import AccessStep, MemoryAccess


class ToyState(NamedTuple):
    value: torch.Tensor  # [B, width]


class ToyTrace(NamedTuple):
    value: torch.Tensor  # [B, width]
    gate: torch.Tensor  # [B, 1]


class ToyAccess(MemoryAccess):
    """``v' = g v + (1 - g) tanh(x)``: reads the new value. Interface: x (width) and g (1)."""

    State, Trace = ToyState, ToyTrace

    def __init__(self, width: int = 3):
        super().__init__()
        self.width, self.interface_size, self.read_size = width, width + 1, width
        self.start = nn.Parameter(torch.linspace(-1, 1, width))

    def initial_state(self, batch_size, *, device=None, dtype=None, generator=None):
        return ToyState(self.start.to(device=device, dtype=dtype).expand(batch_size, -1))

    def state_shapes(self, batch_size):
        return ToyState((batch_size, self.width))

    def trace_shapes(self, batch_size):
        return ToyTrace((batch_size, self.width), (batch_size, 1))

    def step(self, interface, state, *, record=False):
        candidate, gate = torch.tanh(interface[:, :-1]), torch.sigmoid(interface[:, -1:])
        value = gate * state.value + (1 - gate) * candidate
        return AccessStep(value, ToyState(value), ToyTrace(value, gate) if record else None)
