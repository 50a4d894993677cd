"""Head addressing: content focus, then location focus (Graves et al. 2014, section 3.3).

Every function is pure and vectorised over the batch and the heads. The shape vocabulary,
mapped once to the paper's letters:

    batch          B    sequences in a batch
    heads          H    heads addressed together (read and write heads are stacked)
    memory_slots   N    rows of the memory matrix
    memory_width   M    width of a row
    shift_range    K    largest shift: the 2K+1 allowed circular shifts are -K..K

(``R`` is not used for the shifts: elsewhere it counts read heads.)

A step of addressing is ``sharpen(shift(interpolate(content_weights(...), ...), ...), ...)``;
:func:`address` chains the four.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Added to squared norms in the cosine similarity, so that a zero key or a zero memory row
# gives a similarity of 0 (not 0/0) and a finite gradient (the gradient of |x| at 0 is not).
NORM_EPS = 1e-8
# Weights below this are treated as this in `sharpen`: log(0) would be -inf and its gradient
# infinite. 1e-30 is a normal float32 number, and 1e-30 ** gamma is 0 to any precision we use.
LOG_FLOOR = 1e-30
# Bound on each component of the gradient that a step sends back into the state it received
# (memory, weightings, read vectors, controller state); see `bound_gradient`.
CARRY_GRAD_BOUND = 1e6


def cosine_similarity(memory: Tensor, keys: Tensor) -> Tensor:
    """Cosine similarity of every key with every memory row.

    ``K(k, m) = k . m / (sqrt(|k|^2 + eps) * sqrt(|m|^2 + eps))`` with ``eps = NORM_EPS``.

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        keys: ``[batch, heads, memory_width]``.

    Returns:
        ``[batch, heads, memory_slots]``, in ``[-1, 1]``.
    """
    return cosine_similarity_parts(memory, keys)[0]


def cosine_similarity_parts(memory: Tensor, keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`cosine_similarity` with the inverse norms it used (the fused backward needs them).

    Returns:
        ``(similarity [B, H, N], key_inv_norm [B, H, 1], row_inv_norm [B, 1, N])``.
    """
    dot = torch.bmm(keys, memory.transpose(1, 2))  # (B, H, N)
    key_inv_norm = torch.rsqrt(keys.pow(2).sum(-1, keepdim=True) + NORM_EPS)  # (B, H, 1)
    # One pass over the memory (vector_norm) instead of two (square, then sum).
    row_norm = torch.linalg.vector_norm(memory, dim=-1)  # (B, N)
    row_inv_norm = torch.rsqrt(row_norm.square() + NORM_EPS).unsqueeze(1)  # (B, 1, N)
    return dot * key_inv_norm * row_inv_norm, key_inv_norm, row_inv_norm


def content_weights(memory: Tensor, keys: Tensor, strengths: Tensor) -> Tensor:
    """Content addressing: ``w_c(i) = softmax_i(beta * K(k, M(i)))`` (paper eq. 5-6).

    Args:
        memory: ``[batch, memory_slots, memory_width]``.
        keys: ``[batch, heads, memory_width]``, the keys ``k``.
        strengths: ``[batch, heads]``, the key strengths ``beta > 0``.

    Returns:
        ``[batch, heads, memory_slots]``, each row non-negative and summing to 1.
    """
    return content_weights_parts(memory, keys, strengths)[0]


def content_weights_parts(memory: Tensor, keys: Tensor, strengths: Tensor
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`content_weights` with the intermediates a hand-written backward pass needs.

    Returns:
        ``(weights [B, H, N], similarity [B, H, N], key_inv_norm [B, H, 1],
        row_inv_norm [B, 1, N])``.
    """
    similarity, key_inv_norm, row_inv_norm = cosine_similarity_parts(memory, keys)
    weights = torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)
    return weights, similarity, key_inv_norm, row_inv_norm


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """Interpolation gate: ``w_g = g * w_c + (1 - g) * w_prev`` (paper eq. 7).

    Args:
        content: ``[batch, heads, memory_slots]``, the content weights ``w_c``.
        previous: ``[batch, heads, memory_slots]``, the previous step's weights.
        gate: ``[batch, heads]``, ``g`` in ``(0, 1)``.

    Returns:
        ``[batch, heads, memory_slots]``.
    """
    return torch.lerp(previous, content, gate.unsqueeze(-1))


def shift(weights: Tensor, shift_weights: Tensor) -> Tensor:
    """Circular convolution with the shift weighting (paper eq. 8).

    ``w_s(i) = sum_j w(j) * s(i - j mod N)``, where ``shift_weights[..., k]`` holds the weight of
    the shift ``k - K``: a weighting focused on slot ``i`` with all shift weight on ``+1``
    moves to slot ``i + 1 (mod N)``.

    Args:
        weights: ``[batch, heads, memory_slots]``.
        shift_weights: ``[batch, heads, 2K+1]``, ``2K < memory_slots``.

    Returns:
        ``[batch, heads, memory_slots]``.
    """
    windows = shift_windows(weights, (shift_weights.size(-1) - 1) // 2)  # (B, H, 2K+1, N)
    return torch.matmul(shift_weights.flip(-1).unsqueeze(-2), windows).squeeze(-2)


def shift_windows(weights: Tensor, reach: int) -> Tensor:
    """Every circular roll of ``weights`` by ``K - j``, for ``j = 0..2K``, as views of one tensor.

    Window ``j`` at position ``i`` holds ``w(i + j - K)``: the row rolled by the shift ``K - j``,
    whose weight in :func:`shift` is ``s[2K - j]``.

    Args:
        weights: ``[batch, heads, memory_slots]``.
        reach: ``K``.

    Returns:
        ``[batch, heads, 2K+1, memory_slots]``.
    """
    slots = weights.size(-1)
    padded = torch.cat([weights[..., slots - reach :], weights, weights[..., :reach]], dim=-1)
    return padded.unfold(-1, slots, 1)


def sharpen(weights: Tensor, sharpening: Tensor) -> Tensor:
    """Sharpening: ``w(i) = w_s(i)^gamma / sum_j w_s(j)^gamma`` (paper eq. 9).

    Computed as ``softmax(gamma * log(max(w_s, LOG_FLOOR)))``, which is the same quantity but
    cannot divide zero by zero when every ``w_s(i)^gamma`` underflows (uniform weights over 128
    slots to the power 21 already do in float32).

    Args:
        weights: ``[batch, heads, memory_slots]``, non-negative.
        sharpening: ``[batch, heads]``, ``gamma >= 1``.

    Returns:
        ``[batch, heads, memory_slots]``, each row summing to 1.
    """
    return sharpen_parts(weights, sharpening)[0]


def sharpen_parts(weights: Tensor, sharpening: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`sharpen` with the floored logarithm it used: ``(sharpened, log_weights)``."""
    log_weights = torch.log(weights.clamp_min(LOG_FLOOR))
    return torch.softmax(log_weights * sharpening.unsqueeze(-1), dim=-1), log_weights


def address(
    memory: Tensor,
    previous: Tensor,
    keys: Tensor,
    strengths: Tensor,
    gate: Tensor,
    shift_weights: Tensor,
    sharpening: Tensor,
) -> Tensor:
    """One full addressing step (paper figure 2): content, interpolation, shift, sharpening.

    Shapes as in the four functions it chains; returns ``[batch, heads, memory_slots]``.
    """
    focus = content_weights(memory, keys, strengths)
    focus = interpolate(focus, previous, gate)
    focus = shift(focus, shift_weights)
    return sharpen(focus, sharpening)


class _BoundedGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, bound: float) -> Tensor:
        ctx.bound = bound
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad.clamp(-ctx.bound, ctx.bound), None


def bound_gradient(tensor: Tensor, bound: float = CARRY_GRAD_BOUND) -> Tensor:
    """``tensor`` itself, whose gradient is clamped to ``[-bound, bound]`` on the way back.

    The NTM applies it at every step to the whole state it carries from the step before: the
    memory, the weightings, the read vectors and the controller's state. Sharpening with a
    large gamma can make the location addressing chaotic: a near-uniform weighting's small
    differences grow gamma-fold per step, and so does the gradient flowing back along the
    weightings. Over a long sequence (ngrams has 200 steps) that gradient overflows float32 to
    inf and the update to NaN, though the loss is finite (seen in training, with gradients
    growing 6-fold per step). Bounding the weightings' path alone was not enough: a
    feedforward-controller NTM on ngrams later reached gradients of 1e35 (float64) through the
    memory and the read vectors, which float32 turned into NaN. The bound is far above what
    training otherwise sees (the gradient is then clipped to +-10 anyway) and keeps every
    gradient finite.
    """
    return _BoundedGradient.apply(tensor, bound)
