"""The repeat copy task (Graves et al. 2014, section 4.2)."""

from __future__ import annotations

import torch

from ntm.tasks.base import (
    Batch,
    Task,
    check_int,
    check_order,
    random_bits,
    random_ints,
    steps_between,
    time_index,
)

# The repeat count is fed normalised with the mean and standard deviation of the TRAINING
# distribution (K uniform in 1..10), fixed as constants so that a generalisation test with
# K = 20 shows the model a value it never saw, as in the paper.
REPEAT_MEAN = 5.5
REPEAT_STD = 2.872


def normalise_repeats(repeats: torch.Tensor) -> torch.Tensor:
    """The input encoding of the repeat count K: ``(K - 5.5) / 2.872``."""
    return (repeats - REPEAT_MEAN) / REPEAT_STD


class RepeatCopyTask(Task):
    """Reproduce a sequence of random bit vectors K times, then emit an end marker.

    A sequence with length L and repeat count K is, step by step::

        steps 0..L-1           input: L random vectors on channels 0..width-1
        step  L                input: channel width = 1 and channel width+1 = (K - 5.5) / 2.872
        steps L+1..L+L*K       input: zero; target: K copies of the L vectors (data channels)
        step  L+L*K+1          input: zero; target: end marker, channel width = 1, data 0

    so ``steps = L * (K + 1) + 2``, ``input_size = width + 2``, ``output_size = width + 1``, and
    the L*K + 1 answer steps are scored. L and K are drawn per sequence, each uniform in its range.

    Args:
        min_length, max_length: range of L (paper training: 1..10).
        min_repeats, max_repeats: range of K (paper training: 1..10).
        width: bits per vector (paper: 8).
    """

    name = "repeat_copy"
    # A length curriculum (task.curriculum) grows these from those: ntm.tasks.curriculum.
    curriculum = {"max_length": "min_length", "max_repeats": "min_repeats"}

    def __init__(
        self,
        *,
        min_length: int = 1,
        max_length: int = 10,
        min_repeats: int = 1,
        max_repeats: int = 10,
        width: int = 8,
    ) -> None:
        self.min_length = check_int("min_length", min_length)
        self.max_length = check_int("max_length", max_length)
        check_order("min_length", self.min_length, "max_length", self.max_length)
        self.min_repeats = check_int("min_repeats", min_repeats)
        self.max_repeats = check_int("max_repeats", max_repeats)
        check_order("min_repeats", self.min_repeats, "max_repeats", self.max_repeats)
        self.width = check_int("width", width)
        self.input_size = self.width + 2
        self.output_size = self.width + 1


    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        batch_size = check_int("batch_size", batch_size)
        lengths = random_ints(self.min_length, self.max_length, batch_size, generator)  # (B,)
        repeats = random_ints(self.min_repeats, self.max_repeats, batch_size, generator)  # (B,)
        longest = int(lengths.max())
        answer_start = lengths + 1  # (B,)
        end_marker_step = answer_start + lengths * repeats  # (B,)
        steps = int(end_marker_step.max()) + 1
        width = self.width

        bits = random_bits((longest, batch_size, width), generator)
        bits = bits * (time_index(longest, lengths) < lengths).unsqueeze(-1)  # (L_max, B, W)
        t = time_index(steps, lengths)  # (T, 1)

        inputs = torch.zeros(steps, batch_size, self.input_size)
        inputs[:longest, :, :width] = bits
        at_delimiter = t == lengths  # (T, B)
        inputs[:, :, width] = at_delimiter.float()
        inputs[:, :, width + 1] = at_delimiter * normalise_repeats(repeats.float())

        # The k-th copy of vector i sits at answer_start + k*L + i: read it back with a modulo
        # (a remainder in 0..L-1 at every step, so the gather never leaves the bits).
        source = ((t - answer_start) % lengths).unsqueeze(-1).expand(steps, batch_size, width)
        copies = bits.gather(0, source)  # (T, B, W)
        in_copies = steps_between(answer_start, end_marker_step, steps)  # (T, B)

        targets = torch.zeros(steps, batch_size, self.output_size)
        targets[:, :, :width] = copies * in_copies.unsqueeze(-1)
        targets[:, :, width] = (t == end_marker_step).float()
        mask = steps_between(answer_start, end_marker_step + 1, steps)  # (T, B)
        return Batch(inputs, targets, mask, lengths=end_marker_step + 1)
