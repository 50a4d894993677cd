"""Sparse access memory's math (Rae et al. 2016, NeurIPS, "Scaling Memory-Augmented Neural
Networks with Sparse Reads and Writes").

Every head touches ``K`` rows per step, so weightings are kept sparse: a tensor of row numbers
and a tensor of weights of the same shape, zero on every other row. The shape vocabulary,
mapped once to letters:

    batch          B    sequences in a batch
    heads          H    heads addressed together (the read heads)
    read_heads     R    read heads
    sparse_reads   K    rows each read head reads (the paper's K, 4 or 8)
    memory_slots   N    rows of the memory matrix
    memory_width   M    width of a row
    write_rows     J    rows the write touches: the R K rows read last step, then the least
                        recently used row (J = R K + 1)

A step (``'`` marks the previous step's value, ``t`` the step's number from 1):

    U = least_used(T', O')                           the least recently accessed row
    rows^w, w^w = write_weights(rows^r', w^r', U, alpha, gamma)
    M = sparse_write(M', rows^w, w^w, U, a)          row U erased whole, then + w^w a^T
    rows^r = nearest_rows(M, k^r, K)                 a constant for the gradient
    w^r = sparse_content_weights(M[rows^r], k^r, beta^r)
    r = sparse_read(M[rows^r], w^r)
    T = update_last_access(T', [rows^w rows^r], [w^w w^r], t)
    O = update_oldest(O', T, [rows^w rows^r])        the oldest T per block of sqrt(N) rows

:func:`write_and_read` is the write and the gather of the read rows with autograd (the
memory copied once per step: the reference); :func:`write_and_read_` is the same in place,
with a hand-written backward pass that touches only the rows the step changed or read, so that
a step costs ``O(K M)`` plus the search and the saved state ``O(T K M)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .addressing import cosine_similarity

# The paper's delta: an access with a weight above it counts as an access for the usage.
ACCESS_DELTA = 0.005

# Up to this many elements (B N M), the in-place step's backward pass keeps the memory's
# gradient whole from the start: at these sizes a dense [B N, M] tensor costs less than the
# Python bookkeeping of the rows that have a gradient (a dict lookup per row per step), and
# it is still only one tensor per chain, not one per step.
DENSE_GRADIENT_ELEMENTS = 1 << 20

# search(memory [B, N, M], changed rows [B, J]) -> rows to read [B, R, K]: called on the
# memory just written (see write_and_read_).
Search = Callable[[Tensor, Tensor], Tensor]


def nearest_rows(memory: Tensor, keys: Tensor, sparse_reads: int) -> Tensor:
    """The ``K`` rows of highest cosine similarity to each key, over every row (exact).

    The similarity is :func:`ntm.functional.cosine_similarity`'s. The selection is a constant
    for the gradient (no gradient flows through which rows are chosen), so it runs without
    recording. Rows come in order of decreasing similarity; ties in an order ``torch.topk``
    fixes.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        keys: ``[batch, heads, memory_width]``.
        sparse_reads: ``K <= memory_slots``.

    Returns:
        ``[batch, heads, K]`` (int64), row numbers in ``0..N-1``.
    """
    with torch.no_grad():
        similarity = cosine_similarity(memory, keys)  # (B, H, N)
        return similarity.topk(sparse_reads, dim=-1).indices


def gather_rows(memory: Tensor, rows: Tensor) -> Tensor:
    """``M[rows]`` per batch: ``out[b, h, k] = M[b, rows[b, h, k]]``.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        rows: ``[batch, heads, K]`` (int64).

    Returns:
        ``[batch, heads, K, memory_width]``, a copy.
    """
    batch = torch.arange(memory.size(0), device=memory.device).view(-1, 1, 1)  # (B, 1, 1)
    return memory[batch, rows]


def sparse_content_weights(row_values: Tensor, keys: Tensor, strengths: Tensor) -> Tensor:
    """Content weights over the ``K`` rows found: ``w[k] = softmax_k(beta * cos(k, M[rows_k]))``.

    The softmax runs over those ``K`` only; every other row has weight 0. The cosine is
    :func:`ntm.functional.cosine_similarity`'s (norms ``sqrt(|x|^2 + NORM_EPS)``).

    Args:
        row_values: ``[batch, heads, K, memory_width]``, the rows ``M[rows]``.
        keys: ``[batch, heads, memory_width]``.
        strengths: ``[batch, heads]``, ``beta > 0``.

    Returns:
        ``[batch, heads, K]``, non-negative, each head summing to 1.
    """
    B, H, K, M = row_values.shape
    # Each (batch, head) pair is a batch of one key against its own K rows.
    similarity = cosine_similarity(row_values.reshape(B * H, K, M),
                                   keys.reshape(B * H, 1, M)).view(B, H, K)  # (B, H, K)
    return torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)


def sparse_read(row_values: Tensor, weights: Tensor) -> Tensor:
    """Sparse read: ``r = sum_k w[k] M[rows_k]``.

    Args:
        row_values: ``[batch, heads, K, memory_width]``.
        weights: ``[batch, heads, K]``.

    Returns:
        ``[batch, heads, memory_width]``.
    """
    return (weights.unsqueeze(-2) @ row_values).squeeze(-2)  # (B, H, 1, K) @ (B, H, K, M)


def least_used(last_access: Tensor, oldest: Tensor | None = None) -> Tensor:
    """The least recently accessed row ``U``: the oldest last access, the lowest row on ties.

    Rows never accessed have time 0, so the unused rows are taken first, in order. With the
    blocks' oldest times (:func:`oldest_in_blocks`) only the first oldest block is searched:
    ``O(sqrt N)`` instead of ``O(N)``, the same row.

    Args:
        last_access: ``[batch, memory_slots]``, each row's last access step (0: never).
        oldest: ``[batch, blocks]`` or ``None``, from :func:`oldest_in_blocks`.

    Returns:
        ``[batch]`` (int64).
    """
    if oldest is None:
        return last_access.argmin(dim=-1)  # documented: the first of equal minima
    size = block_size(last_access.size(-1))
    block = oldest.argmin(dim=-1, keepdim=True)  # (B, 1): the first block holding the oldest
    rows = _block_rows(block, size, last_access.size(-1))  # (B, 1, S)
    within = last_access.gather(1, rows[:, 0]).argmin(dim=-1, keepdim=True)  # (B, 1)
    return rows[:, 0].gather(1, within).squeeze(1)


def block_size(memory_slots: int) -> int:
    """Rows per block of :func:`oldest_in_blocks`: ``ceil(sqrt N)``."""
    return max(1, math.isqrt(memory_slots - 1) + 1)


def oldest_in_blocks(last_access: Tensor) -> Tensor:
    """The oldest last access in each block of :func:`block_size` consecutive rows.

    Args:
        last_access: ``[batch, memory_slots]``.

    Returns:
        ``[batch, ceil(N / S)]``.
    """
    slots = last_access.size(-1)
    size = block_size(slots)
    blocks = -(-slots // size)
    padded = torch.nn.functional.pad(last_access, (0, blocks * size - slots), value=math.inf)
    return padded.view(-1, blocks, size).amin(dim=-1)


def update_oldest(oldest: Tensor, last_access: Tensor, rows: Tensor, *,
                  in_place: bool = False) -> Tensor:
    """:func:`oldest_in_blocks` again after the rows ``rows [batch, A]`` changed: only their
    blocks are looked at (``O(A sqrt N)``).

    Args:
        oldest: ``[batch, blocks]`` before the change.
        last_access: ``[batch, memory_slots]`` after it.
        rows: ``[batch, A]`` (int64).
        in_place: change ``oldest`` itself.

    Returns:
        ``[batch, blocks]``.
    """
    slots = last_access.size(-1)
    size = block_size(slots)
    blocks = rows // size  # (B, A)
    members = _block_rows(blocks, size, slots)  # (B, A, S)
    minima = last_access.gather(1, members.flatten(1)).view(members.shape).amin(-1)  # (B, A)
    if in_place:
        return oldest.scatter_(1, blocks, minima)
    return oldest.scatter(1, blocks, minima)


def _block_rows(blocks: Tensor, size: int, slots: int) -> Tensor:
    """``[B, A]`` block numbers -> ``[B, A, S]`` their rows (the last block's end repeats
    its last row, which leaves minima and first argmins as they are)."""
    offsets = torch.arange(size, device=blocks.device)
    return (blocks.unsqueeze(-1) * size + offsets).clamp_max(slots - 1)


def write_weights(prev_read_rows: Tensor, prev_read_weights: Tensor, least_used: Tensor,
                  write_gate: Tensor, interpolation: Tensor) -> tuple[Tensor, Tensor]:
    """Sparse write weights: ``w^w = alpha (gamma w^r' + (1 - gamma) I^U)``.

    With several read heads ``w^r'`` is their mean, so that ``w^w`` sums to at most ``alpha``
    (the paper has one read weighting). Returned sparsely over the ``J = R K + 1`` rows the
    write touches: the rows read last step, then ``U``. A row may appear twice (a row read by
    two heads, or ``U`` read last step): its weight is the sum of its entries.

    Args:
        prev_read_rows: ``[batch, read_heads, K]`` (int64), ``rows^r'``.
        prev_read_weights: ``[batch, read_heads, K]``, ``w^r'``.
        least_used: ``[batch]`` (int64), ``U``.
        write_gate: ``[batch]``, ``alpha`` in ``[0, 1]``.
        interpolation: ``[batch]``, ``gamma`` in ``[0, 1]``.

    Returns:
        ``(rows [batch, J] int64, weights [batch, J])``.
    """
    heads = prev_read_rows.size(1)
    rows = torch.cat([prev_read_rows.flatten(1), least_used.unsqueeze(1)], dim=1)  # (B, J)
    alpha, gamma = write_gate.unsqueeze(1), interpolation.unsqueeze(1)  # (B, 1)
    weights = torch.cat([gamma * prev_read_weights.flatten(1) / heads, 1.0 - gamma], dim=1)
    return rows, alpha * weights  # (B, J)


def sparse_write(memory: Tensor, rows: Tensor, weights: Tensor, least_used: Tensor,
                 values: Tensor, erase: Tensor | None = None) -> Tensor:
    """The write: row ``U`` erased whole, then ``M = M' (row U zeroed) + w^w a^T``.

    Out of place (autograd records it; the memory is copied). Entries of ``rows`` that repeat
    add up.

    Args:
        memory: ``[batch, memory_slots, memory_width]``, ``M'``.
        rows: ``[batch, J]`` (int64), the rows written.
        weights: ``[batch, J]``, their weights ``w^w``.
        least_used: ``[batch]`` (int64), ``U``.
        values: ``[batch, memory_width]``, the write vector ``a``.
        erase: ``[batch]`` bool, the sequences whose row ``U`` is erased (``None``: every
            one). A sequence that has ended in a batch with lengths keeps its row ``U`` and
            writes with zero weights: its memory stays as it was.

    Returns:
        ``[batch, memory_slots, memory_width]``.
    """
    batch = torch.arange(memory.size(0), device=memory.device)  # (B,)
    erased = memory.index_put((batch, least_used), _erased_rows(memory, least_used, erase))
    added = weights.unsqueeze(-1) * values.unsqueeze(1)  # (B, J, M): w^w a^T on its rows
    return erased.index_put((batch.unsqueeze(1), rows), added, accumulate=True)


def update_last_access(last_access: Tensor, rows: Tensor, weights: Tensor, time: Tensor,
                       delta: float = ACCESS_DELTA, *, in_place: bool = False) -> Tensor:
    """Usage: rows accessed with a weight above ``delta`` get the time ``t``.

    ``T[i] = t if w[i] > delta else T'[i]``, where ``w[i]`` sums every entry of row ``i``
    (the write's and the reads' of this step: a row written and read counts once, with the
    sum). Not differentiable: the paper's usage U^(2), the time since the last non-negligible
    access.

    Args:
        last_access: ``[batch, memory_slots]``, ``T'``.
        rows: ``[batch, A]`` (int64), the rows accessed (write rows, read rows).
        weights: ``[batch, A]``, each entry's weight.
        time: ``[batch]``, ``t``, larger than every time in ``T'``.
        delta: the threshold.
        in_place: change ``last_access`` itself (``O(A^2)`` work) instead of a copy (``O(N)``).

    Returns:
        ``[batch, memory_slots]``.
    """
    with torch.no_grad():
        same = rows.unsqueeze(-1) == rows.unsqueeze(-2)  # (B, A, A): entries of one row
        totals = (same.to(weights.dtype) @ weights.unsqueeze(-1)).squeeze(-1)  # (B, A)
        now = time.to(last_access.dtype).unsqueeze(1).expand_as(totals)
        stamps = torch.where(totals > delta, now, torch.zeros_like(now))  # (B, A)
        # amax: times only grow, and an entry below delta leaves its row as it was.
        if in_place:
            return last_access.scatter_reduce_(1, rows, stamps, reduce="amax")
        return last_access.scatter_reduce(1, rows, stamps, reduce="amax")


def to_dense(rows: Tensor, weights: Tensor, memory_slots: int) -> Tensor:
    """A sparse weighting as a dense one: ``[batch, heads, K]`` -> ``[batch, heads, N]``.

    Entries of a repeated row add up.
    """
    dense = weights.new_zeros(*weights.shape[:-1], memory_slots)
    return dense.scatter_add(-1, rows, weights)


def write_and_read(memory: Tensor, rows: Tensor, weights: Tensor, least_used: Tensor,
                   values: Tensor, search: Search,
                   erase: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sparse_write`, then ``search`` for the rows to read and gather them.

    The reference: every operation recorded by autograd, the memory copied by the write.

    Args:
        memory, rows, weights, least_used, values, erase: as :func:`sparse_write`.
        search: ``(new memory [B, N, M], changed rows [B, J]) -> read rows [B, R, K]``.

    Returns:
        ``(memory [B, N, M], read rows [B, R, K] int64, their values [B, R, K, M])``.
    """
    memory = sparse_write(memory, rows, weights, least_used, values, erase)
    read_rows = search(memory, rows)
    return memory, read_rows, gather_rows(memory, read_rows)


def write_and_read_(memory: Tensor, rows: Tensor, weights: Tensor, least_used: Tensor,
                    values: Tensor, search: Search,
                    erase: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`write_and_read` with the memory changed in place (the paper's efficient form).

    ``memory`` itself is returned, written. The backward pass of a chain of these steps on one
    memory keeps the gradient of the memory for the rows that have one only (a few per step),
    and walks back step by step: it adds the read rows' gradient, gives ``w^w`` and ``a``
    theirs from the written rows, and zeroes row ``U``. A step saves ``w^w``, ``a`` and the
    row numbers (autograd keeps the read rows for the content weights): nothing of the size of
    the memory is saved or made (but one gradient per chain, for memories of at most
    :data:`DENSE_GRADIENT_ELEMENTS`), so a step backward costs ``O(K M)``. Gradients equal
    :func:`write_and_read`'s. Not twice differentiable. Where gradients are recorded, a
    ``memory`` that is a view of another tensor, or a leaf that wants a gradient, is copied
    first.
    """
    if not (torch.is_grad_enabled() and (memory.requires_grad or weights.requires_grad
                                         or values.requires_grad)):
        with torch.no_grad():
            return _write_and_read_in_place(memory, rows, weights, least_used, values, search,
                                            erase)
    if memory._base is not None or (memory.is_leaf and memory.requires_grad):
        # Autograd cannot change in place a view in a node with several outputs (a state
        # sliced by the caller, say), nor a leaf that wants a gradient: copied once.
        memory = memory.clone()
    return _SparseStep.apply(memory, rows, weights, least_used, values, search, erase)


def _erased_rows(memory: Tensor, least_used: Tensor, erase: Tensor | None) -> Tensor:
    """What row ``U`` of each sequence becomes: zero where ``erase`` (``[B]`` bool, ``None``:
    everywhere), else itself (``[B, M]``, or a zero scalar for every row)."""
    if erase is None:
        return memory.new_zeros(())
    batch = torch.arange(memory.size(0), device=memory.device)
    kept = memory[batch, least_used]  # (B, M)
    return torch.where(erase.unsqueeze(-1), kept.new_zeros(()), kept)


def _write_and_read_in_place(memory, rows, weights, least_used, values, search, erase):
    batch = torch.arange(memory.size(0), device=memory.device)  # (B,)
    memory[batch, least_used] = _erased_rows(memory, least_used, erase)
    added = weights.unsqueeze(-1) * values.unsqueeze(1)  # (B, J, M)
    memory.index_put_((batch.unsqueeze(1), rows), added, accumulate=True)
    read_rows = search(memory, rows)
    return memory, read_rows, gather_rows(memory, read_rows)


class _SparseStep(torch.autograd.Function):
    """:func:`write_and_read_`'s node: the memory changed in place, its gradient row by row.

    The steps of one chain (every step on one memory tensor) share a :class:`_RowGradients`,
    kept on the tensor, through which the memory's gradient passes from each step's backward
    to the one before: autograd is handed no gradient of the memory between them (the
    memory output of each step still orders their backward passes). The first step of the
    chain returns the whole gradient where its memory input needs one.
    """

    @staticmethod
    def forward(ctx, memory, rows, weights, least_used, values, search, erase):
        ctx.set_materialize_grads(False)
        tape = getattr(memory, "_row_gradients", None)
        # A memory no gradient flows into (a fresh state, a detached one) starts a chain.
        ctx.first = tape is None or not memory.requires_grad
        if ctx.first:
            tape = _RowGradients(memory)
        memory, read_rows, read_values = _write_and_read_in_place(
            memory, rows, weights, least_used, values, search, erase)
        memory._row_gradients = ctx.tape = tape
        ctx.mark_dirty(memory)
        ctx.mark_non_differentiable(read_rows)
        ctx.erase = erase
        ctx.save_for_backward(rows, weights, least_used, values, read_rows)
        return memory, read_rows, read_values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_memory, _grad_read_rows, grad_read_values):
        rows, weights, least_used, values, read_rows = ctx.saved_tensors
        tape = ctx.tape  # holds dL/dM after this step; becomes dL/dM before it
        if grad_memory is not None:  # the memory after this step is used outside the chain
            tape.add_whole(grad_memory)
        # Backwards through the step: the gather of the read rows, then the write.
        if grad_read_values is not None:
            tape.add(read_rows.flatten(1), grad_read_values.flatten(1, 2))
        written = tape.get(rows)  # (B, J, M): dL/dM on the rows written
        grad_weights = (written * values.unsqueeze(1)).sum(-1)  # (B, J)
        grad_values = (written * weights.unsqueeze(-1)).sum(1)  # (B, M)
        tape.zero(least_used, ctx.erase)  # the erased row's old value does not reach the output
        grad = None
        if ctx.first:
            grad = tape.whole() if ctx.needs_input_grad[0] else None
            tape.clear()  # ready for another backward pass through the chain
        return grad, None, grad_weights, None, grad_values, None, None


class _RowGradients:
    """The gradient of a memory ``[B, N, M]``, stored for the rows that have one (row ``b *
    N + i`` -> a position in ``values``), or whole: from the start for a memory of at most
    :data:`DENSE_GRADIENT_ELEMENTS`, else once a whole gradient came in."""

    def __init__(self, memory: Tensor):
        self.batch, self.slots, self.width = memory.shape
        self.factory = {"device": memory.device, "dtype": memory.dtype}
        self.clear()

    def clear(self) -> None:
        self.position: dict[int, int] = {}
        self.values = torch.zeros(64, self.width, **self.factory)  # (capacity, M)
        self.dense: Tensor | None = None  # (B * N, M) once whole
        self.small = self.batch * self.slots * self.width <= DENSE_GRADIENT_ELEMENTS

    def _whole_if_small(self) -> None:
        """A small memory's gradient is kept whole from its first row on (made here, not in
        :meth:`clear`: a state kept after its backward pass holds no gradient)."""
        if self.dense is None and self.small:
            self.dense = torch.zeros(self.batch * self.slots, self.width, **self.factory)

    def _flat(self, rows: Tensor) -> Tensor:
        """``[B, X]`` rows -> ``[B * X]`` rows of the flattened ``[B * N, M]`` memory."""
        batch = torch.arange(self.batch, device=rows.device).unsqueeze(1) * self.slots
        return (batch + rows).flatten()

    def _positions(self, rows: Tensor) -> Tensor:
        """Positions in ``values`` of ``rows [B, X]`` (new rows get a zero gradient)."""
        keys = self._flat(rows).tolist()
        for key in keys:
            self.position.setdefault(key, len(self.position))
        if len(self.position) > self.values.size(0):
            grown = torch.zeros(2 * len(self.position), self.width, **self.factory)
            grown[: self.values.size(0)] = self.values
            self.values = grown
        positions = [self.position[key] for key in keys]
        return torch.tensor(positions, device=self.values.device)

    def add(self, rows: Tensor, grads: Tensor) -> None:
        """``dL/dM[rows] += grads`` (``[B, X]``, ``[B, X, M]``; repeated rows add up)."""
        self._whole_if_small()
        where = self._flat(rows) if self.dense is not None else self._positions(rows)
        target = self.dense if self.dense is not None else self.values
        target.index_add_(0, where, grads.reshape(-1, self.width))

    def get(self, rows: Tensor) -> Tensor:
        """``dL/dM[rows]``: ``[B, X]`` -> ``[B, X, M]``."""
        self._whole_if_small()
        if self.dense is not None:
            return self.dense[self._flat(rows)].view(*rows.shape, self.width)
        positions = self._positions(rows)  # first: it may grow `values`
        return self.values[positions].view(*rows.shape, self.width)

    def zero(self, rows: Tensor, where: Tensor | None = None) -> None:
        """``dL/dM[rows] = 0`` for ``rows [B]``, in the sequences ``where`` is True (``[B]``
        bool; ``None``: all)."""
        self._whole_if_small()
        if self.dense is not None:
            target, at = self.dense, self._flat(rows.unsqueeze(1))
        else:
            at = self._positions(rows.unsqueeze(1))  # first: it may grow `values`
            target = self.values
        if where is None:
            target[at] = 0.0
        else:
            target[at] = torch.where(where.unsqueeze(-1), 0.0, target[at])

    def add_whole(self, grad: Tensor) -> None:
        """``dL/dM += grad`` (``[B, N, M]``): from now on the gradient is kept whole."""
        if self.dense is None:
            self.dense = grad.reshape(-1, self.width).clone(memory_format=torch.contiguous_format)
            if self.position:
                keys = torch.tensor(list(self.position), device=self.dense.device)
                positions = torch.tensor(list(self.position.values()), device=keys.device)
                self.dense.index_add_(0, keys, self.values[positions])
        else:
            self.dense += grad.reshape(-1, self.width)

    def whole(self) -> Tensor:
        """``dL/dM`` as a ``[B, N, M]`` tensor."""
        if self.dense is None:
            self.add_whole(torch.zeros(self.batch, self.slots, self.width, **self.factory))
        return self.dense.view(self.batch, self.slots, self.width)
