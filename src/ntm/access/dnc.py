"""The Differentiable Neural Computer's heads and memory (Graves et al. 2016, Nature 538,
Methods) as an access: dynamic allocation (usage, free gates) and temporal links.

Order of a step, as the paper's Methods: the usage is updated from the previous step's
weightings and free gates; the write head is addressed by allocation and by content against
the memory before this step, erases and writes; the link and precedence follow the new write
weighting; the read heads are addressed by content against the written memory and by the
links, and read it. The interface vector splits into the heads' parameters by one table
(:class:`DNCLayout`), which also applies the activations.

The options of Csordas & Schmidhuber 2019 (ICLR), each off by default:
``content_masking`` (a learned sigmoid mask on every key and on the memory rows it is compared
with), ``deallocation`` (the retention vector also wipes freed rows before the write, so that
content lookups no longer find what was freed) and ``link_sharpness`` (a learned exponent,
``oneplus``, per read head, sharpens the forward and backward weightings).
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import Tensor

from ..functional import bound_gradient, content_weights, read
from ..functional import dnc as F
from .base import AccessStep, MemoryAccess
from .ntm import check_positive_int

# Bound on the raw interface vector before the activations, as the NTM's heads (Collier &
# Beel 2018): it bounds the strengths (oneplus) and keeps every gate away from exactly 0 or 1.
CLIP = 20.0


class DNCState(NamedTuple):
    """What the DNC's memory carries from one step to the next (``W`` write heads, ``R`` read
    heads, ``N`` slots, ``M`` width)."""

    memory: Tensor  # [B, N, M]
    usage: Tensor  # [B, N], u in [0, 1]
    link: Tensor  # [B, W, N, N], L: L[i, j] how much slot i was written right after slot j
    precedence: Tensor  # [B, W, N], p: how much each slot was the last one written
    read_weights: Tensor  # [B, R, N]
    write_weights: Tensor  # [B, W, N]


class DNCTrace(NamedTuple):
    """What one step of the DNC's heads did (stacked over steps by ``trace``)."""

    read_weights: Tensor  # [B, R, N]
    write_weights: Tensor  # [B, W, N]
    usage: Tensor  # [B, N], after the step's free gates and before its write
    allocation: Tensor  # [B, W, N]
    read_modes: Tensor  # [B, R, 2W + 1]: backward per write head, forward per write head, content


class DNCParameters(NamedTuple):
    """The activated interface of one step."""

    read_keys: Tensor  # k^r, linear: [B, R, M]
    read_strengths: Tensor  # beta^r, oneplus: [B, R]
    write_keys: Tensor  # k^w, linear: [B, W, M]
    write_strengths: Tensor  # beta^w, oneplus: [B, W]
    erase: Tensor  # e, sigmoid: [B, W, M]
    values: Tensor  # v, linear: [B, W, M]
    free_gates: Tensor  # f, sigmoid: [B, R]
    allocation_gates: Tensor  # g^a, sigmoid: [B, W]
    write_gates: Tensor  # g^w, sigmoid: [B, W]
    read_modes: Tensor  # pi, softmax over 2W + 1: [B, R, 2W + 1]
    read_masks: Tensor | None  # content masking, sigmoid: [B, R, M]
    write_masks: Tensor | None  # content masking, sigmoid: [B, W, M]
    link_sharpness: Tensor | None  # link sharpness, oneplus: [B, R]


class DNCLayout:
    """How the interface vector splits into the DNC's head parameters: one table of
    ``(name, shape after the batch, activation)``, in the order of the vector."""

    def __init__(self, read_heads: int, write_heads: int, memory_width: int, *,
                 content_masking: bool = False, link_sharpness: bool = False):
        R, W, M = read_heads, write_heads, memory_width
        self.table = [
            ("read_keys", (R, M), "linear"), ("read_strengths", (R,), "oneplus"),
            ("write_keys", (W, M), "linear"), ("write_strengths", (W,), "oneplus"),
            ("erase", (W, M), "sigmoid"), ("values", (W, M), "linear"),
            ("free_gates", (R,), "sigmoid"), ("allocation_gates", (W,), "sigmoid"),
            ("write_gates", (W,), "sigmoid"), ("read_modes", (R, 2 * W + 1), "softmax"),
        ]
        if content_masking:
            self.table += [("read_masks", (R, M), "sigmoid"), ("write_masks", (W, M), "sigmoid")]
        if link_sharpness:
            self.table += [("link_sharpness", (R,), "oneplus")]
        self.sizes = [int(torch.Size(shape).numel()) for _, shape, _ in self.table]
        self.size = sum(self.sizes)

    def activate(self, raw: Tensor) -> DNCParameters:
        """``raw [B, size]`` -> the activated parameters (absent options are None)."""
        parts = {}
        for (name, shape, activation), block in zip(
                self.table, raw.clamp(-CLIP, CLIP).split(self.sizes, dim=-1), strict=True):
            block = block.unflatten(-1, shape)  # (B, *shape)
            if activation == "oneplus":
                block = F.oneplus(block)
            elif activation == "sigmoid":
                block = torch.sigmoid(block)
            elif activation == "softmax":
                block = torch.softmax(block, dim=-1)
            parts[name] = block
        missing = dict.fromkeys(("read_masks", "write_masks", "link_sharpness"))
        return DNCParameters(**{**missing, **parts})


class DNCAccess(MemoryAccess):
    """The DNC's read and write heads over one ``[memory_slots, memory_width]`` memory.

    Args:
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a row.
        read_heads: read heads ``R``.
        write_heads: write heads ``W`` (the paper has one; several as deepmind/dnc allows:
            each allocates in turn and has its own precedence and link).
        content_masking, deallocation, link_sharpness: the options of Csordas & Schmidhuber
            2019 (see the module's docstring).

    ``interface_size`` is :attr:`DNCLayout.size`; ``read_size`` is ``read_heads *
    memory_width`` (the read vectors, flattened). The state starts at zero: an empty memory,
    nothing used, linked or read.
    """

    State = DNCState
    Trace = DNCTrace
    # On CUDA its step is plain autograd (the fused kernel is the CPU's), and PyTorch's backward
    # of prod and cumprod (usage, retention, allocation) reads a value on the host to choose a
    # formula (whether any factor is zero): see MemoryAccess.graph_capturable.
    graph_capturable = False

    def __init__(self, memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 write_heads: int = 1, *, content_masking: bool = False,
                 deallocation: bool = False, link_sharpness: bool = False):
        super().__init__()
        for name, value in {"memory_slots": memory_slots, "memory_width": memory_width,
                            "read_heads": read_heads, "write_heads": write_heads}.items():
            check_positive_int(name, value)
        for name, value in {"content_masking": content_masking, "deallocation": deallocation,
                            "link_sharpness": link_sharpness}.items():
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.content_masking, self.deallocation = content_masking, deallocation
        self.link_sharpness = link_sharpness
        self.layout = DNCLayout(read_heads, write_heads, memory_width,
                                content_masking=content_masking, link_sharpness=link_sharpness)
        self.interface_size = self.layout.size
        self.read_size = read_heads * memory_width

    def initial_state(self, batch_size: int, *, device=None, dtype=None,
                      generator: torch.Generator | None = None) -> DNCState:
        """Every field zero (``generator`` is not used: nothing is drawn)."""
        factory = {"device": device, "dtype": dtype}
        return DNCState(*(torch.zeros(shape, **factory)
                          for shape in self.state_shapes(batch_size)))

    def state_shapes(self, batch_size: int) -> DNCState:
        B, N, M = batch_size, self.memory_slots, self.memory_width
        R, W = self.read_heads, self.write_heads
        return DNCState((B, N, M), (B, N), (B, W, N, N), (B, W, N), (B, R, N), (B, W, N))

    def trace_shapes(self, batch_size: int) -> DNCTrace:
        B, N, R, W = batch_size, self.memory_slots, self.read_heads, self.write_heads
        return DNCTrace((B, R, N), (B, W, N), (B, N), (B, W, N), (B, R, 2 * W + 1))

    def step(self, interface: Tensor, state: DNCState, *, record: bool = False) -> AccessStep:
        """Allocate, write, link, read: ``interface [B, interface_size]`` -> reads
        ``[B, R * M]``."""
        p = self.layout.activate(interface)
        # Bounds the gradient carried back along the state, as the NTM does (bound_gradient).
        memory, prev_reads = bound_gradient(state.memory), bound_gradient(state.read_weights)
        usage = F.usage(state.usage, state.write_weights, p.free_gates, prev_reads)  # (B, N)
        if self.deallocation:
            memory = F.deallocate(memory, F.retention(p.free_gates, prev_reads))
        # Between heads the usage grows by what each head writes by allocation, g^a g^w
        # (deepmind/dnc): a head that writes by content leaves the free slots to the next.
        allocation = F.allocation(usage, p.allocation_gates * p.write_gates)  # (B, W, N)
        write_content = self._content(memory, p.write_keys, p.write_strengths, p.write_masks)
        write_weights = F.write_weights(allocation, write_content, p.allocation_gates,
                                        p.write_gates)  # (B, W, N)
        memory = F.erase_and_write(memory, write_weights, p.erase, p.values)
        link = F.link(bound_gradient(state.link), state.precedence, write_weights)
        precedence = F.precedence(state.precedence, write_weights)
        forward, backward = F.directional_weights(link, prev_reads)  # (B, R, W, N) each
        if p.link_sharpness is not None:
            sharpness = p.link_sharpness.unsqueeze(-1)  # (B, R, 1): one per read head
            forward = F.sharpen_directional(forward, sharpness)
            backward = F.sharpen_directional(backward, sharpness)
        read_content = self._content(memory, p.read_keys, p.read_strengths, p.read_masks)
        read_weights = F.read_weights(read_content, forward, backward, p.read_modes)
        reads = read(memory, read_weights).flatten(1)  # (B, R * M)
        new_state = DNCState(memory, usage, link, precedence, read_weights, write_weights)
        trace = (DNCTrace(read_weights, write_weights, usage, allocation, p.read_modes)
                 if record else None)
        return AccessStep(reads, new_state, trace)

    @staticmethod
    def _content(memory: Tensor, keys: Tensor, strengths: Tensor,
                 masks: Tensor | None) -> Tensor:
        """Content weights ``[B, H, N]``, masked when content masking is on."""
        if masks is None:
            return content_weights(memory, keys, strengths)
        return F.masked_content_weights(memory, keys, strengths, masks)

    def extra_repr(self) -> str:
        defaults = {name: parameter.default for name, parameter
                    in inspect.signature(DNCAccess.__init__).parameters.items()
                    if name != "self"}
        return ", ".join(f"{k}={getattr(self, k)!r}" for k, v in defaults.items()
                         if getattr(self, k) != v)
