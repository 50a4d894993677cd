"""The copy task (Graves et al. 2014, section 4.1)."""

from __future__ import annotations

import torch

from ntm.tasks.base import (
    Batch,
    Task,
    check_int,
    check_order,
    place,
    random_bits,
    random_ints,
    steps_between,
    time_index,
)


class CopyTask(Task):
    """Reproduce a sequence of random bit vectors after a delimiter.

    A sequence of length L is, step by step::

        steps 0..L-1     input: L random vectors on channels 0..width-1
        step  L          input: delimiter, channel ``width`` = 1
        steps L+1..2L    input: zero; target: the L vectors again (the scored steps)

    so ``steps = 2L + 1``, ``input_size = width + 1`` and ``output_size = width``. L is drawn
    per sequence, uniform in ``min_length..max_length``; shorter sequences are padded at the end.

    Args:
        min_length: shortest sequence (paper training: 1).
        max_length: longest sequence (paper training: 20; generalisation up to 120).
        width: bits per vector (paper: 8).
    """

    name = "copy"
    # A length curriculum (task.curriculum) grows these from those: ntm.tasks.curriculum.
    curriculum = {"max_length": "min_length"}

    def __init__(self, *, min_length: int = 1, max_length: int = 20, width: int = 8) -> None:
        self.min_length = check_int("min_length", min_length)
        self.max_length = check_int("max_length", max_length)
        check_order("min_length", self.min_length, "max_length", self.max_length)
        self.width = check_int("width", width)
        self.input_size = self.width + 1
        self.output_size = self.width

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        batch_size = check_int("batch_size", batch_size)
        lengths = random_ints(self.min_length, self.max_length, batch_size, generator)  # (B,)
        longest = int(lengths.max())
        steps = 2 * longest + 1

        bits = random_bits((longest, batch_size, self.width), generator)
        # Zero the bits past each sequence's own length so that they can be placed wholesale.
        bits = bits * (time_index(longest, lengths) < lengths).unsqueeze(-1)  # (L_max, B, W)

        inputs = torch.zeros(steps, batch_size, self.input_size)
        inputs[:longest, :, : self.width] = bits
        inputs[:, :, self.width] = (time_index(steps, lengths) == lengths).float()  # delimiter

        targets = place(bits, start=lengths + 1, steps=steps)  # (T, B, W)
        mask = steps_between(lengths + 1, 2 * lengths + 1, steps)  # (T, B)
        return Batch(inputs, targets, mask, lengths=2 * lengths + 1)
