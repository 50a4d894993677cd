"""Reading from and writing to the memory matrix (Graves et al. 2014, sections 3.1-3.2).

Pure functions, vectorised over the batch and the heads. Shapes: ``[batch, memory_slots,
memory_width]`` for the memory, ``[batch, heads, memory_slots]`` for weightings.
"""

from __future__ import annotations

import torch
from torch import Tensor


def read(memory: Tensor, weights: Tensor) -> Tensor:
    """Blurry read: ``r = sum_i w(i) M(i)`` for every head (paper eq. 2).

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        weights: ``[batch, heads, memory_slots]``.

    Returns:
        ``[batch, heads, memory_width]``.
    """
    return torch.bmm(weights, memory)


def write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Erase then add, with all write heads applied together (paper eq. 3-4).

    ``M' = M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T``: the erasures multiply, so the
    order of the heads does not matter, and the additions sum.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        weights: ``[batch, heads, memory_slots]``.
        erase: ``[batch, heads, memory_width]``, in ``(0, 1)``.
        add: ``[batch, heads, memory_width]``.

    Returns:
        The new memory, ``[batch, memory_slots, memory_width]``.
    """
    columns = weights.transpose(1, 2)  # (B, N, H)
    if weights.size(1) == 1:
        # One head: (M + w a^T) - M * (w e^T), without a [B, 1, N, M] temporary and a product.
        erased = torch.bmm(columns, erase)  # (B, N, M): w e^T
        return torch.addcmul(torch.baddbmm(memory, columns, add), memory, erased, value=-1.0)
    kept = (1.0 - weights.unsqueeze(-1) * erase.unsqueeze(-2)).prod(dim=1)  # (B, N, M)
    return torch.baddbmm(memory * kept, columns, add)  # + sum over heads of w_h a_h^T
