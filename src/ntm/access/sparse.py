"""Sparse access memory (Rae et al. 2016, NeurIPS) as an access: each read head reads the
``K`` rows nearest its key, the write goes to the rows read last step and to the least
recently used row, and a step touches ``O(K)`` rows.

Order of a step (:mod:`ntm.functional.sparse` has the equations): the least recently used
row ``U`` is taken from the last access times; the write weights ``alpha (gamma w^r' + (1 -
gamma) I^U)`` go to the rows read last step and to ``U``; row ``U`` is erased and the write
vector added; the read heads find their ``K`` nearest rows in the written memory (an index:
:mod:`ntm.access.sparse_index`), weight them by a softmax of their cosine similarities and
read them; the rows accessed above ``delta`` get this step's time.

The memory is changed in place (the paper's efficiency), except on the reference path:
:meth:`SparseAccess.step` with ``in_place=False``, which :class:`ntm.SAM` with
``backend="autograd"`` takes where gradients are recorded. The memory of a state passed in is
therefore not kept: clone it to keep it.
"""

from __future__ import annotations

import inspect
import math
import mmap
from typing import NamedTuple

import torch
from torch import Tensor

from ..functional import bound_gradient
from ..functional import sparse as F
from ..functional.dnc import oneplus
from .base import AccessStep, MemoryAccess
from .ntm import check_positive_int
from .sparse_index import INDEXES, Previous, make_index

# Bound on the raw interface vector before the activations, as the NTM's and DNC's heads.
CLIP = 20.0


# From this many bytes on, a CPU state's zeros are pages the OS has not handed out yet.
UNTOUCHED_BYTES = 1 << 20


def untouched_zeros(shape: tuple[int, ...], device=None, dtype=None) -> Tensor:
    """``torch.zeros(shape)``, for a large CPU tensor without writing its zeros.

    A sequence touches ``O(T K)`` rows of the memory, but ``torch.zeros`` writes every byte of
    it: at 1,048,576 slots and batch 8, 640 MiB and 0.3 s a sequence, more than its 100 steps
    of reads and writes. An anonymous ``mmap`` reads as zeros and the OS gives it a zeroed 4 KiB
    page where it is first written (not the 2 MiB pages numpy asks for, whose first write
    zeroes 2 MiB), so a state costs the rows the sequence touches. Elsewhere (CUDA, small
    tensors, other dtypes), ``torch.zeros``.
    """
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    device = torch.device(device if device is not None else "cpu")
    size = math.prod(shape) * dtype.itemsize
    if (device.type != "cpu" or size < UNTOUCHED_BYTES
            or dtype not in (torch.float32, torch.float64)):
        return torch.zeros(shape, device=device, dtype=dtype)
    # The storage holds the mmap: it is unmapped when the storage is freed. Not a view of the
    # flat tensor, which write_and_read_ would copy before changing it in place.
    flat = torch.frombuffer(mmap.mmap(-1, size), dtype=dtype)
    return torch.empty(0, dtype=dtype).set_(flat.untyped_storage(), 0, shape)


class SparseState(NamedTuple):
    """What sparse access memory carries from one step to the next (``R`` read heads reading
    ``K`` rows each, ``N`` slots, ``M`` width)."""

    memory: Tensor  # [B, N, M]
    last_access: Tensor  # [B, N], T: the step of each row's last access above delta (0: never)
    oldest: Tensor  # [B, ceil(N / S)]: the oldest T in each block of S = ceil(sqrt N) rows
    time: Tensor  # [B], t: steps taken
    read_rows: Tensor  # [B, R, K] int64, the rows read last step
    read_weights: Tensor  # [B, R, K], w^r on those rows (zero elsewhere)


class SparseTrace(NamedTuple):
    """What one step of the heads did. The weightings are dense over the slots, as the NTM's
    and the DNC's, for figures (a trace is for inspection: it costs ``O(N)`` a step); row
    numbers are in the model's dtype, as every field of a trace is."""

    read_weights: Tensor  # [B, R, N], w^r: zero but on the K rows each head read
    write_weights: Tensor  # [B, 1, N], w^w: zero but on the rows read the step before and U
    read_rows: Tensor  # [B, R, K], the rows read
    least_used: Tensor  # [B], U: the row erased


class SparseParameters(NamedTuple):
    """The activated interface of one step."""

    read_keys: Tensor  # k^r, linear: [B, R, M]
    read_strengths: Tensor  # beta^r, oneplus: [B, R]
    values: Tensor  # a, linear: [B, M]
    write_gate: Tensor  # alpha, sigmoid: [B]
    interpolation: Tensor  # gamma, sigmoid: [B]


class SparseLayout:
    """How the interface vector splits into the heads' parameters: one table of ``(name,
    shape after the batch, activation)``, in the order of the vector."""

    def __init__(self, read_heads: int, memory_width: int):
        R, M = read_heads, memory_width
        self.table = [
            ("read_keys", (R, M), "linear"), ("read_strengths", (R,), "oneplus"),
            ("values", (M,), "linear"), ("write_gate", (), "sigmoid"),
            ("interpolation", (), "sigmoid"),
        ]
        self.sizes = [int(torch.Size(shape).numel()) for _, shape, _ in self.table]
        self.size = sum(self.sizes)

    def activate(self, raw: Tensor) -> SparseParameters:
        """``raw [B, size]`` -> the activated parameters."""
        parts = {}
        for (name, shape, activation), block in zip(
                self.table, raw.clamp(-CLIP, CLIP).split(self.sizes, dim=-1), strict=True):
            block = block.reshape(*block.shape[:-1], *shape)  # (B, *shape)
            if activation == "oneplus":
                block = oneplus(block)
            elif activation == "sigmoid":
                block = torch.sigmoid(block)
            parts[name] = block
        return SparseParameters(**parts)


class SparseAccess(MemoryAccess):
    """Sparse reads and writes over one ``[memory_slots, memory_width]`` memory.

    Args:
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a row.
        read_heads: read heads ``R``.
        sparse_reads: rows ``K`` each read head reads (at most ``memory_slots``).
        index: how the nearest rows are found: ``"exact"`` (every row, ``torch.topk``),
            ``"faiss"`` (an approximate index, faiss-cpu) or ``"auto"`` (faiss from
            :data:`ntm.access.sparse_index.FAISS_CROSSOVER` slots on, where installed).

    ``interface_size`` is :attr:`SparseLayout.size` (``R M + R + M + 2``); ``read_size`` is
    ``R M``. The state starts empty: zero memory, no row accessed, nothing read.
    """

    State = SparseState
    Trace = SparseTrace
    freezes_ended = True  # its memory is changed in place: see MemoryAccess.freezes_ended
    # Its index (faiss) and the backward pass's rows (a dict from row to gradient) live on the
    # host: see MemoryAccess.graph_capturable.
    graph_capturable = False

    def __init__(self, memory_slots: int = 128, memory_width: int = 20, read_heads: int = 1,
                 sparse_reads: int = 4, index: str = "auto"):
        super().__init__()
        for name, value in {"memory_slots": memory_slots, "memory_width": memory_width,
                            "read_heads": read_heads, "sparse_reads": sparse_reads}.items():
            check_positive_int(name, value)
        if sparse_reads > memory_slots:
            raise ValueError(f"sparse_reads must be at most memory_slots ({memory_slots}), "
                             f"got {sparse_reads}")
        if index not in INDEXES:
            raise ValueError(f"index must be one of {list(INDEXES)}, got {index!r}")
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.sparse_reads, self.index = read_heads, sparse_reads, index
        self.finder = make_index(index, memory_slots)
        self.layout = SparseLayout(read_heads, memory_width)
        self.interface_size = self.layout.size
        self.read_size = read_heads * memory_width

    def initial_state(self, batch_size: int, *, device=None, dtype=None,
                      generator: torch.Generator | None = None) -> SparseState:
        """Zero memory, times and weights; rows ``0..K-1`` as the last read (with weight 0).
        ``generator`` is not used: nothing is drawn."""
        shapes = self.state_shapes(batch_size)
        rows = torch.arange(self.sparse_reads, device=device).expand(shapes.read_rows)
        zeros = SparseState(*(untouched_zeros(shape, device, dtype) for shape in shapes))
        self.finder.empty(zeros.memory)  # the index of an empty memory is empty: no pass
        return zeros._replace(read_rows=rows.contiguous())

    def _sizes(self, batch_size: int) -> tuple[int, int, int, int, int]:
        return (batch_size, self.memory_slots, self.memory_width, self.read_heads,
                self.sparse_reads)

    def state_shapes(self, batch_size: int) -> SparseState:
        B, N, M, R, K = self._sizes(batch_size)
        blocks = -(-N // F.block_size(N))
        return SparseState((B, N, M), (B, N), (B, blocks), (B,), (B, R, K), (B, R, K))

    def trace_shapes(self, batch_size: int) -> SparseTrace:
        B, N, _, R, K = self._sizes(batch_size)
        return SparseTrace((B, R, N), (B, 1, N), (B, R, K), (B,))

    def check_state(self, state, batch_size: int, dtype: torch.dtype,
                    where: str = "state") -> None:
        """As :meth:`MemoryAccess.check_state`, with ``read_rows`` int64 (row numbers)."""
        if isinstance(state, SparseState) and isinstance(state.read_rows, Tensor):
            if state.read_rows.dtype != torch.int64:
                raise ValueError(f"{where}.read_rows must have dtype torch.int64, "
                                 f"got {state.read_rows.dtype}")
            state = state._replace(read_rows=state.read_rows.to(dtype))
        super().check_state(state, batch_size, dtype, where)

    def step(self, interface: Tensor, state: SparseState, *, record: bool = False,
             in_place: bool = True, running: Tensor | None = None) -> AccessStep:
        """Write, find, read: ``interface [B, interface_size]`` -> reads ``[B, R * M]``.

        ``in_place``: change ``state.memory`` (and the usage) in place, with the backward pass
        row by row (:func:`ntm.functional.sparse.write_and_read_`), or copy them (the
        reference, every operation recorded by autograd).

        ``running``: ``[B]`` bool, the sequences that take this step (``None``: all). The
        others have ended: their state comes back as it was (no erase, zero write weights,
        no access counted, the last read rows kept) and their reads are to be ignored.
        """
        p = self.layout.activate(interface)
        # The access times are counters, not functions of the weights: no gradient flows into
        # or out of them, on either path (a given state's may be leaves that want one).
        times, oldest = state.last_access.detach(), state.oldest.detach()
        step = 1 if running is None else running.to(state.time.dtype)
        time = state.time.detach() + step
        least_used = F.least_used(times, oldest)  # (B,)
        write_rows, write_weights = F.write_weights(
            state.read_rows, bound_gradient(state.read_weights), least_used, p.write_gate,
            p.interpolation)  # (B, J) each
        if running is not None:
            write_weights = torch.where(running.unsqueeze(1), write_weights, 0.0)
        previous, keys = Previous(state.memory, state.memory._version), p.read_keys.detach()

        def search(memory: Tensor, changed: Tensor) -> Tensor:
            return self.finder.search(memory, keys, self.sparse_reads, changed, previous)

        write_and_read = F.write_and_read_ if in_place else F.write_and_read
        memory, read_rows, row_values = write_and_read(
            state.memory, write_rows, write_weights, least_used, p.values, search, running)
        self.finder.settle(memory)
        row_values = bound_gradient(row_values)  # (B, R, K, M)
        read_weights = F.sparse_content_weights(row_values, p.read_keys, p.read_strengths)
        reads = F.sparse_read(row_values, read_weights).flatten(1)  # (B, R * M)
        accessed = torch.cat([write_rows, read_rows.flatten(1)], dim=1)  # (B, J + R K)
        weights = torch.cat([write_weights, read_weights.flatten(1)], dim=1)
        if running is not None:  # an ended sequence accesses nothing and keeps its last read
            weights = torch.where(running.unsqueeze(1), weights, 0.0)
            keep = running.view(-1, 1, 1)  # (B, 1, 1), against (B, R, K)
            read_rows = torch.where(keep, read_rows, state.read_rows)
            read_weights = torch.where(keep, read_weights, state.read_weights)
        last_access = F.update_last_access(times, accessed, weights, time,
                                           in_place=in_place)
        oldest = F.update_oldest(oldest, last_access, accessed, in_place=in_place)
        new_state = SparseState(memory, last_access, oldest, time, read_rows, read_weights)
        trace = None
        if record:
            slots, dtype = self.memory_slots, read_weights.dtype
            trace = SparseTrace(F.to_dense(read_rows, read_weights, slots),
                                F.to_dense(write_rows.unsqueeze(1), write_weights.unsqueeze(1),
                                           slots),
                                read_rows.to(dtype), least_used.to(dtype))
        return AccessStep(reads, new_state, trace)

    def extra_repr(self) -> str:
        defaults = {name: parameter.default for name, parameter
                    in inspect.signature(SparseAccess.__init__).parameters.items()
                    if name != "self"}
        return ", ".join(f"{k}={getattr(self, k)!r}" for k, v in defaults.items()
                         if getattr(self, k) != v)
