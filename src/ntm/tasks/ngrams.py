"""The dynamic N-grams task (Graves et al. 2014, section 4.4) and its optimal estimator."""

from __future__ import annotations

import math

import torch

from ntm.tasks.base import Batch, Task, check_int, random_bits

# Pseudo-counts of the optimal estimator for a Beta(1/2, 1/2) prior (the paper's eq. 23, the
# Krichevsky-Trofimov estimator): P(1 | c) = (N1 + 1/2) / (N1 + N0 + 1).
PRIOR_COUNT = 0.5


def sample_beta_half(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Beta(1/2, 1/2) samples as ``sin^2(pi U / 2)`` with U uniform in [0, 1).

    Beta(1/2, 1/2) is the arcsine distribution, whose inverse CDF is ``sin^2(pi u / 2)``;
    sampling through it honours ``generator``, which ``torch.distributions.Beta`` does not.
    """
    return torch.sin(torch.rand(shape, generator=generator) * (math.pi / 2)) ** 2


def contexts_of(bits: torch.Tensor, order: int) -> torch.Tensor:
    """The context index of every step: its ``order - 1`` previous bits read as a binary number.

    The oldest bit is the most significant, so the context of step t is
    ``sum_k bits[t - order + 1 + k] * 2^(order - 2 - k)`` for k = 0..order-2.

    Args:
        bits: ``[steps, batch]``, 0 or 1 (any dtype).
        order: the N of the N-gram; contexts have ``order - 1`` bits.

    Returns:
        ``[steps, batch]`` int64. Steps ``t < order - 1`` have no full context and hold 0.
    """
    context_bits = order - 1
    steps = bits.shape[0]
    contexts = torch.zeros(bits.shape, dtype=torch.long, device=bits.device)
    if steps <= context_bits:
        return contexts
    as_long = bits.long()
    for k in range(context_bits):  # a loop over the few context bits, not over time or batch
        contexts[context_bits:] += as_long[k : steps - context_bits + k] << (context_bits - 1 - k)
    return contexts


def optimal_predictions(bits: torch.Tensor, order: int) -> torch.Tensor:
    """The optimal Bayesian estimator's probability that each bit is 1, given the bits before it.

    ``P(1 | c) = (N1 + 1/2) / (N1 + N0 + 1)``, where N1 and N0 count the ones and zeros seen so
    far in this sequence right after context c (its ``order - 1`` previous bits). This is the
    posterior mean under the Beta(1/2, 1/2) prior the task draws its probabilities from.

    The first ``order - 1`` steps have no full context. There the estimator predicts 0.5, which
    is exactly the distribution those bits are drawn from (Bernoulli(0.5)), so each costs exactly
    1 bit; those steps update no count. With the paper's settings (order 6, 200 bits) the
    expected cost is then about 133.3 bits per sequence, 5 of them from the first 5 steps.

    Args:
        bits: ``[steps, batch, 1]`` (the task's targets) or ``[steps, batch]``, 0 or 1.
        order: the N of the N-gram (the task's ``order``).

    Returns:
        Probabilities of a one, the same shape and float dtype as ``bits`` (float32 for
        non-float input).
    """
    order = check_int("order", order)
    if bits.dim() == 3 and bits.shape[-1] == 1:
        flat = bits[..., 0]  # (T, B)
    elif bits.dim() == 2:
        flat = bits
    else:
        raise ValueError(
            f"bits must be [steps, batch, 1] or [steps, batch], got {list(bits.shape)}"
        )
    dtype = bits.dtype if bits.is_floating_point() else torch.float32
    steps, batch_size = flat.shape
    contexts = contexts_of(flat, order).unsqueeze(-1)  # (T, B, 1)
    values = flat.to(dtype).unsqueeze(-1)  # (T, B, 1)
    num_contexts = 2 ** (order - 1)
    ones_seen = torch.zeros(batch_size, num_contexts, dtype=dtype, device=bits.device)
    total_seen = torch.zeros(batch_size, num_contexts, dtype=dtype, device=bits.device)
    step_count = torch.ones(batch_size, 1, dtype=dtype, device=bits.device)

    predictions = [torch.full((batch_size, 1), 0.5, dtype=dtype, device=bits.device)] * min(
        order - 1, steps
    )
    for context, value in zip(contexts[order - 1 :], values[order - 1 :], strict=True):
        ones = ones_seen.gather(1, context)  # (B, 1)
        total = total_seen.gather(1, context)  # (B, 1)
        predictions.append((ones + PRIOR_COUNT) / (total + 2 * PRIOR_COUNT))
        ones_seen.scatter_add_(1, context, value)
        total_seen.scatter_add_(1, context, step_count)
    if not predictions:
        return torch.empty_like(bits, dtype=dtype)
    return torch.stack(predictions).reshape(bits.shape)


class NGramsTask(Task):
    """Predict the next bit of a sequence drawn from a random N-gram distribution.

    Per sequence, draw ``2^(order-1)`` probabilities ``p_c ~ Beta(1/2, 1/2)``, one per context
    of ``order - 1`` bits; then ``length`` bits: the first ``order - 1`` Bernoulli(0.5), then
    bit t ~ Bernoulli(p_c) with c the ``order - 1`` bits before it (see ``contexts_of``).

    The input at step t is bit t-1 (zero at t = 0) and the target is bit t; every step is
    scored. ``steps = length``, ``input_size = output_size = 1``.

    Args:
        order: the N of the N-gram (paper: 6, i.e. 32 five-bit contexts).
        length: bits per sequence (paper: 200).
    """

    name = "ngrams"
    input_size = 1
    output_size = 1

    def __init__(self, *, order: int = 6, length: int = 200) -> None:
        self.order = check_int("order", order)
        self.length = check_int("length", length)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        batch_size = check_int("batch_size", batch_size)
        context_bits = self.order - 1
        context_mask = 2**context_bits - 1
        probabilities = sample_beta_half((batch_size, 2**context_bits), generator)  # (B, C)
        first = random_bits((min(context_bits, self.length), batch_size), generator)  # (o-1, B)
        later_steps = self.length - first.shape[0]
        uniforms = torch.rand(later_steps, batch_size, 1, generator=generator)  # (T-o+1, B, 1)

        # Each bit depends on the previous ones, so time is a loop (of cheap ops on [B, 1]);
        # the batch is vectorised. The context is kept as a binary number, oldest bit first.
        context = torch.zeros(batch_size, 1, dtype=torch.long)  # (B, 1)
        for bit in first.long():
            context = (context << 1) | bit.unsqueeze(1)
        later = []
        for uniform in uniforms:
            bit = uniform < probabilities.gather(1, context)  # (B, 1) bool
            later.append(bit)
            context = (context * 2 + bit) & context_mask  # append the bit, drop the oldest
        bits = torch.cat([first, torch.cat(later, dim=1).T.float()]) if later else first  # (T, B)

        inputs = torch.zeros(self.length, batch_size, 1)
        inputs[1:, :, 0] = bits[:-1]
        targets = bits.unsqueeze(-1)  # (T, B, 1)
        mask = torch.ones(self.length, batch_size, dtype=torch.bool)
        return Batch(inputs, targets, mask, lengths=torch.full((batch_size,), self.length))

    def optimal_predictions(self, bits: torch.Tensor) -> torch.Tensor:
        """``optimal_predictions(bits, self.order)``: ``[steps, batch, 1]`` probabilities."""
        return optimal_predictions(bits, self.order)

    def optimal_bits_per_sequence(self, batch: Batch) -> float:
        """The optimal estimator's cost on ``batch``: base-2 cross-entropy summed over the
        scored steps of each sequence, averaged over sequences (the paper's ~133 bits)."""
        targets = batch.targets.double()
        probability_one = self.optimal_predictions(targets)
        probability_of_target = torch.where(targets > 0.5, probability_one, 1 - probability_one)
        scored = -torch.log2(probability_of_target).sum(-1) * batch.mask  # (T, B)
        return float(scored.sum(0).mean())
