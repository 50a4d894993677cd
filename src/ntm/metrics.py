"""Scores of a model's logits against a task's targets (the paper's cost, section 4).

The paper reports cost in **bits per sequence**: binary cross-entropy in base 2, summed over the
scored bits of a sequence, averaged over sequences. Every function here takes

- ``logits``  ``[steps, batch, channels]``, before the sigmoid;
- ``targets`` ``[steps, batch, channels]``, 0 or 1;
- ``mask``    ``[steps, batch]`` bool, True on the scored steps (``Batch.mask``);

and returns a scalar tensor averaged over the ``batch`` sequences, padding excluded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN_2 = math.log(2.0)


def _check_shapes(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
    if logits.dim() != 3:
        raise ValueError(
            f"logits must be [steps, batch, channels], got {logits.dim()} dimensions "
            f"{list(logits.shape)}"
        )
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets must have the shape of logits. Expected {list(logits.shape)}, "
            f"got {list(targets.shape)}"
        )
    if mask.shape != logits.shape[:2]:
        raise ValueError(
            f"mask must be [steps, batch]. Expected {list(logits.shape[:2])}, "
            f"got {list(mask.shape)}"
        )


def _cross_entropy_per_sequence(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy in nats, summed over scored steps and channels. Shape ``[batch]``."""
    _check_shapes(logits, targets, mask)
    # From logits, not probabilities: stable for large |logits| (log-sum-exp inside).
    per_bit = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    # where, not a product: a non-finite value on an unscored (padding) step must not leak in.
    zero = torch.zeros((), dtype=per_bit.dtype, device=per_bit.device)
    scored = torch.where(mask.bool().unsqueeze(-1), per_bit, zero)
    return scored.sum(dim=(0, 2))  # (B,)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training loss: binary cross-entropy in nats, summed per sequence, mean over the batch.

    Equals ``bits_per_sequence * ln 2``; differentiable with respect to ``logits``.

    Args:
        logits: ``[steps, batch, channels]``.
        targets: ``[steps, batch, channels]``, 0 or 1.
        mask: ``[steps, batch]`` bool, the scored steps.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: the shapes do not match.
    """
    return _cross_entropy_per_sequence(logits, targets, mask).mean()


def bits_per_sequence(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The paper's cost: binary cross-entropy in bits, summed per sequence, mean over the batch.

    ``-(1/B) sum_b sum_{t scored} sum_c [y log2 sigmoid(x) + (1 - y) log2(1 - sigmoid(x))]``.
    Logits of 0 cost exactly 1 bit per scored bit.

    Args:
        logits: ``[steps, batch, channels]``.
        targets: ``[steps, batch, channels]``, 0 or 1.
        mask: ``[steps, batch]`` bool, the scored steps.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: the shapes do not match.
    """
    return _cross_entropy_per_sequence(logits, targets, mask).mean() / LN_2


def bit_errors_per_sequence(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Scored bits whose thresholded output differs from the target, per sequence, batch mean.

    A bit is predicted 1 where ``logits > 0`` (probability above 0.5) and the target is 1 where
    ``targets > 0.5``.

    Args:
        logits: ``[steps, batch, channels]``.
        targets: ``[steps, batch, channels]``, 0 or 1.
        mask: ``[steps, batch]`` bool, the scored steps.

    Returns:
        A scalar float tensor (a mean of integer counts).

    Raises:
        ValueError: the shapes do not match.
    """
    _check_shapes(logits, targets, mask)
    wrong = (logits > 0) != (targets > 0.5)  # (T, B, C)
    wrong = wrong & mask.bool().unsqueeze(-1)
    return wrong.sum(dim=(0, 2)).to(torch.promote_types(logits.dtype, torch.float32)).mean()
