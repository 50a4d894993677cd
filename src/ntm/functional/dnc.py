"""The Differentiable Neural Computer's memory math (Graves et al. 2016, Nature 538, Methods),
with the options of Csordas & Schmidhuber 2019 (ICLR, "Improving Differentiable Neural
Computers Through Memory Masking, De-allocation, and Link Distribution Sharpness Control").

Every function is pure and vectorised over the batch and the heads; several write heads are
allowed, as in deepmind/dnc. The shape vocabulary, mapped once to letters (the paper writes
``W`` for the memory width; here ``W`` counts write heads and ``M`` is the width):

    batch          B    sequences in a batch
    memory_slots   N    rows of the memory matrix
    memory_width   M    width of a row
    read_heads     R    read heads
    write_heads    W    write heads
    heads          H    heads addressed together by content (any of the above)

A step, in the order the paper applies it (``'`` marks the previous step's value):

    psi = retention(f, w^r')                       u = usage(u', w^w', f, w^r')
    a = allocation(u, g^w)                         c^w = content_weights(M', k^w, beta^w)
    w^w = write_weights(a, c^w, g^a, g^w)          M = erase_and_write(M', w^w, e, v)
    L = link(L', p', w^w)                          p = precedence(p', w^w)
    f, b = directional_weights(L, w^r')            w^r = read_weights(c^r, f, b, pi)

Csordas & Schmidhuber add :func:`masked_content_weights` (in place of ``content_weights``),
:func:`deallocate` (``M' <- deallocate(M', psi)`` before the write) and
:func:`sharpen_directional` (applied to ``f`` and ``b`` before the read weighting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .addressing import NORM_EPS
from .memory import write

# Usages are mapped to ALLOCATION_EPS + (1 - ALLOCATION_EPS) u before allocating, as
# deepmind/dnc does: a usage of exactly 0 would make every later slot's product 0, and its
# gradient with it.
ALLOCATION_EPS = 1e-6
# Floor of the maximum and of the sum in `sharpen_directional`: a link distribution that is
# all zeros (nothing was written after, or before, the slots read) stays all zeros, not 0/0.
SHARPEN_EPS = 1e-8


def oneplus(x: Tensor) -> Tensor:
    """``oneplus(x) = 1 + log(1 + e^x)``, in ``(1, inf)``: the key and sharpness strengths."""
    return 1.0 + F.softplus(x)


def retention(free_gates: Tensor, prev_read_weights: Tensor) -> Tensor:
    """Memory retention: ``psi = prod_r (1 - f_r w^r'_r)``.

    Args:
        free_gates: ``[batch, read_heads]``, the free gates ``f`` in ``[0, 1]``.
        prev_read_weights: ``[batch, read_heads, memory_slots]``, the previous read weights.

    Returns:
        ``[batch, memory_slots]``, in ``[0, 1]``: how much of each slot is not freed.
    """
    return (1.0 - free_gates.unsqueeze(-1) * prev_read_weights).prod(dim=1)


def usage(prev_usage: Tensor, prev_write_weights: Tensor, free_gates: Tensor,
          prev_read_weights: Tensor) -> Tensor:
    """Usage: ``u = (u' + (1 - u') (1 - prod_w (1 - w^w'_w))) * psi``.

    With one write head this is the paper's ``(u' + w^w' - u' * w^w') * psi``; with several,
    the slot counts as written by any of them (deepmind/dnc).

    Args:
        prev_usage: ``[batch, memory_slots]``, ``u'`` in ``[0, 1]``.
        prev_write_weights: ``[batch, write_heads, memory_slots]``.
        free_gates: ``[batch, read_heads]``.
        prev_read_weights: ``[batch, read_heads, memory_slots]``.

    Returns:
        ``[batch, memory_slots]``, in ``[0, 1]``.
    """
    written = 1.0 - (1.0 - prev_write_weights).prod(dim=1)  # (B, N)
    kept = retention(free_gates, prev_read_weights)  # (B, N)
    return (prev_usage + (1.0 - prev_usage) * written) * kept


def allocation(usage: Tensor, write_gates: Tensor) -> Tensor:
    """Allocation weights, one write head after another.

    ``u`` is first mapped to ``ALLOCATION_EPS + (1 - ALLOCATION_EPS) u``. With ``phi`` the
    slots sorted by ascending usage (ties by slot index: a stable sort),
    ``a[phi_j] = (1 - u[phi_j]) prod_{l<j} u[phi_l]``. Head ``w`` allocates on the usage the
    heads before it leave, ``u <- u + (1 - u) g^w_w a_w`` (deepmind/dnc). The sort order is a
    constant for the gradient (the paper); the gradient flows through the usage values.

    Args:
        usage: ``[batch, memory_slots]``, ``u`` in ``[0, 1]``.
        write_gates: ``[batch, write_heads]``, ``g^w`` in ``[0, 1]``: how much each head
            writes by allocation. The DNC passes ``g^a g^w`` (allocation gate times write
            gate), as deepmind/dnc does, so that a head writing by content does not use up
            the slots the next head would allocate.

    Returns:
        ``[batch, write_heads, memory_slots]``, non-negative, each head summing to at most 1.
    """
    # Mapping once and updating the mapped usage equals deepmind's mapping before each head:
    # e + (1 - e) (u + (1 - u) g a) = u_e + (1 - u_e) g a, with u_e = e + (1 - e) u.
    usage = ALLOCATION_EPS + (1.0 - ALLOCATION_EPS) * usage  # (B, N)
    heads = []
    for head in range(write_gates.size(1)):
        heads.append(_allocate(usage))
        usage = usage + (1.0 - usage) * write_gates[:, head : head + 1] * heads[-1]
    return torch.stack(heads, dim=1)  # (B, W, N)


def _allocate(usage: Tensor) -> Tensor:
    """One head's allocation ``[B, N]`` from an already mapped usage ``[B, N]``."""
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)  # (B, N), ascending
    # Exclusive cumulative product: the first free slot's factor is the empty product 1.
    before = torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=-1)
    sorted_allocation = (1.0 - sorted_usage) * torch.cumprod(before, dim=-1)  # (B, N)
    return torch.zeros_like(sorted_allocation).scatter(-1, order, sorted_allocation)


def precedence(prev_precedence: Tensor, write_weights: Tensor) -> Tensor:
    """Precedence: ``p = (1 - sum_i w^w[i]) p' + w^w``, one per write head (``p_0 = 0``).

    Args:
        prev_precedence: ``[batch, write_heads, memory_slots]``.
        write_weights: ``[batch, write_heads, memory_slots]``.

    Returns:
        ``[batch, write_heads, memory_slots]``, summing to at most 1 when ``p'`` and
        ``w^w`` do.
    """
    return (1.0 - write_weights.sum(-1, keepdim=True)) * prev_precedence + write_weights


def link(prev_link: Tensor, prev_precedence: Tensor, write_weights: Tensor) -> Tensor:
    """Temporal link: ``L[i,j] = (1 - w[i] - w[j]) L'[i,j] + w[i] p'[j]``, ``L[i,i] = 0``.

    ``L[i,j]`` is how much slot ``i`` was written right after slot ``j``; one matrix per write
    head, each with that head's write weights and previous precedence (``L_0 = 0``).

    Args:
        prev_link: ``[batch, write_heads, memory_slots, memory_slots]``.
        prev_precedence: ``[batch, write_heads, memory_slots]``, ``p'`` (before this write).
        write_weights: ``[batch, write_heads, memory_slots]``.

    Returns:
        ``[batch, write_heads, memory_slots, memory_slots]``.
    """
    row = write_weights.unsqueeze(-1)  # (B, W, N, 1): w[i]
    column = write_weights.unsqueeze(-2)  # (B, W, 1, N): w[j]
    new_link = (1.0 - row - column) * prev_link + row * prev_precedence.unsqueeze(-2)
    slots = write_weights.size(-1)
    off_diagonal = 1.0 - torch.eye(slots, dtype=new_link.dtype, device=new_link.device)
    return new_link * off_diagonal  # (B, W, N, N)


def directional_weights(link: Tensor, prev_read_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Forward and backward weightings: ``f = L w^r'``, ``b = L^T w^r'``.

    Args:
        link: ``[batch, write_heads, memory_slots, memory_slots]``.
        prev_read_weights: ``[batch, read_heads, memory_slots]``.

    Returns:
        ``(forward, backward)``, each ``[batch, read_heads, write_heads, memory_slots]``.
    """
    forward = torch.einsum("bwij,brj->brwi", link, prev_read_weights)  # (B, R, W, N)
    backward = torch.einsum("bwij,bri->brwj", link, prev_read_weights)  # (B, R, W, N)
    return forward, backward


def read_weights(content: Tensor, forward: Tensor, backward: Tensor, read_modes: Tensor) -> Tensor:
    """Read weights: ``w^r = sum_w pi[w] b_w + sum_w pi[W + w] f_w + pi[2W] c``.

    The read modes are ordered (backward for each write head, forward for each write head,
    content), as in deepmind/dnc; with one write head, ``(backward, forward, content)``.

    Args:
        content: ``[batch, read_heads, memory_slots]``, the read content weights ``c``.
        forward: ``[batch, read_heads, write_heads, memory_slots]``.
        backward: ``[batch, read_heads, write_heads, memory_slots]``.
        read_modes: ``[batch, read_heads, 2 * write_heads + 1]``, ``pi`` (a softmax).

    Returns:
        ``[batch, read_heads, memory_slots]``.
    """
    heads = forward.size(2)
    backward_mode = read_modes[..., :heads].unsqueeze(-2)  # (B, R, 1, W)
    forward_mode = read_modes[..., heads : 2 * heads].unsqueeze(-2)  # (B, R, 1, W)
    content_mode = read_modes[..., 2 * heads :]  # (B, R, 1)
    directional = (backward_mode @ backward + forward_mode @ forward).squeeze(-2)  # (B, R, N)
    return directional + content_mode * content


def write_weights(allocation: Tensor, content: Tensor, allocation_gates: Tensor,
                  write_gates: Tensor) -> Tensor:
    """Write weights: ``w^w = g^w (g^a a + (1 - g^a) c)``.

    Args:
        allocation: ``[batch, write_heads, memory_slots]``, ``a``.
        content: ``[batch, write_heads, memory_slots]``, the write content weights ``c``.
        allocation_gates: ``[batch, write_heads]``, ``g^a`` in ``[0, 1]``.
        write_gates: ``[batch, write_heads]``, ``g^w`` in ``[0, 1]``.

    Returns:
        ``[batch, write_heads, memory_slots]``.
    """
    mixed = torch.lerp(content, allocation, allocation_gates.unsqueeze(-1))  # (B, W, N)
    return write_gates.unsqueeze(-1) * mixed


def erase_and_write(memory: Tensor, write_weights: Tensor, erase: Tensor,
                    values: Tensor) -> Tensor:
    """The memory update: ``M = M' * prod_w (1 - w_w e_w^T) + sum_w w_w v_w^T``.

    The erasures of the write heads multiply and their writes add (deepmind/dnc); it is the
    NTM's :func:`ntm.functional.memory.write`, whose equation this is.

    Args:
        memory: ``[batch, memory_slots, memory_width]``, ``M'``.
        write_weights: ``[batch, write_heads, memory_slots]``.
        erase: ``[batch, write_heads, memory_width]``, ``e`` in ``[0, 1]``.
        values: ``[batch, write_heads, memory_width]``, the write vectors ``v``.

    Returns:
        ``[batch, memory_slots, memory_width]``.
    """
    return write(memory, write_weights, erase, values)


def masked_content_weights(memory: Tensor, keys: Tensor, strengths: Tensor,
                           mask: Tensor) -> Tensor:
    """Masked content addressing (Csordas & Schmidhuber 2019, memory masking).

    ``c[i] = softmax_i(beta * cos(k * m, M[i] * m))``, with the cosine of
    :func:`ntm.functional.cosine_similarity` (norms ``sqrt(|x|^2 + NORM_EPS)``). A mask of
    ones gives :func:`ntm.functional.content_weights`.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        keys: ``[batch, heads, memory_width]``.
        strengths: ``[batch, heads]``, ``beta > 0``.
        mask: ``[batch, heads, memory_width]``, ``m`` in ``[0, 1]``.

    Returns:
        ``[batch, heads, memory_slots]``, each row non-negative and summing to 1.
    """
    # Each head masks the memory differently; rather than build the masked memories,
    # [B, H, N, M], for content_weights, the masked dot products and row norms are two bmm.
    masked_keys = keys * mask  # (B, H, M)
    dot = torch.bmm(masked_keys * mask, memory.transpose(1, 2))  # (B, H, N)
    row_norm_sq = torch.bmm(mask.square(), memory.square().transpose(1, 2))  # (B, H, N)
    key_norm_sq = masked_keys.square().sum(-1, keepdim=True)  # (B, H, 1)
    similarity = dot * torch.rsqrt(key_norm_sq + NORM_EPS) * torch.rsqrt(row_norm_sq + NORM_EPS)
    return torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)


def deallocate(memory: Tensor, retention: Tensor) -> Tensor:
    """De-allocation (Csordas & Schmidhuber 2019): freed rows are wiped, ``M' * psi``.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        retention: ``[batch, memory_slots]``, ``psi`` from :func:`retention`.

    Returns:
        ``[batch, memory_slots, memory_width]``.
    """
    return memory * retention.unsqueeze(-1)


def sharpen_directional(weights: Tensor, sharpness: Tensor) -> Tensor:
    """Link distribution sharpness: ``S(d, s)[i] = d[i]^s / sum_j d[j]^s``.

    Csordas & Schmidhuber 2019 (sharpness enhancement) apply it to the forward and backward
    weightings, with ``s = oneplus(...)`` from the controller. As the paper writes it, ``S``
    renormalises: the result sums to 1 even where the weighting summed to less. An all-zero
    weighting (no link) stays all zeros. ``d`` is first divided by its maximum, which leaves
    ``S`` unchanged but keeps the largest term at 1: small weights to a large power would
    otherwise all underflow to 0.

    Args:
        weights: ``[..., memory_slots]``, non-negative, e.g. ``[batch, read_heads,
            write_heads, memory_slots]``.
        sharpness: ``[...]``, ``s >= 1`` (a :func:`oneplus`).

    Returns:
        ``[..., memory_slots]``.
    """
    # A link entry can come out of `link` a rounding error below 0, where (1 - w[i] - w[j])
    # should be 0; a negative number to a fractional power is NaN.
    weights = weights.clamp_min(0.0)
    # S does not depend on the scale, so the maximum is a constant for the gradient.
    scale = weights.detach().amax(dim=-1, keepdim=True).clamp_min(SHARPEN_EPS)
    powered = (weights / scale).pow(sharpness.unsqueeze(-1))
    return powered / powered.sum(dim=-1, keepdim=True).clamp_min(SHARPEN_EPS)
