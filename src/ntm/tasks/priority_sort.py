"""The priority sort task (Graves et al. 2014, section 4.5)."""

from __future__ import annotations

import torch

from ntm.tasks.base import Batch, Task, check_int, random_bits


class PrioritySortTask(Task):
    """Output the highest-priority vectors of a sequence, highest first.

    Step by step::

        steps 0..n_in-1           input: random vectors on channels 0..width-1, each with its
                                  priority, uniform in [-1, 1], on channel width
        step  n_in                input: delimiter, channel width+1 = 1
        steps n_in+1..n_in+n_out  input: zero; target: the n_out highest-priority vectors,
                                  in decreasing priority (scored)

    so ``steps = num_inputs + 1 + num_outputs``, ``input_size = width + 2``,
    ``output_size = width``. Every sequence has the same length.

    Args:
        num_inputs: vectors in the input (paper: 20).
        num_outputs: vectors to output, at most ``num_inputs`` (paper: 16).
        width: bits per vector (paper: 8).
    """

    name = "priority_sort"

    def __init__(self, *, num_inputs: int = 20, num_outputs: int = 16, width: int = 8) -> None:
        self.num_inputs = check_int("num_inputs", num_inputs)
        self.num_outputs = check_int("num_outputs", num_outputs)
        if self.num_outputs > self.num_inputs:
            raise ValueError(
                f"num_outputs must be <= num_inputs, got num_outputs={self.num_outputs} "
                f"> num_inputs={self.num_inputs}"
            )
        self.width = check_int("width", width)
        self.input_size = self.width + 2
        self.output_size = self.width


    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        batch_size = check_int("batch_size", batch_size)
        num_inputs, num_outputs, width = self.num_inputs, self.num_outputs, self.width
        steps = num_inputs + 1 + num_outputs

        bits = random_bits((num_inputs, batch_size, width), generator)
        priorities = torch.rand(num_inputs, batch_size, generator=generator) * 2.0 - 1.0

        inputs = torch.zeros(steps, batch_size, self.input_size)
        inputs[:num_inputs, :, :width] = bits
        inputs[:num_inputs, :, width] = priorities
        inputs[num_inputs, :, width + 1] = 1.0

        # topk returns the largest first; ties have probability zero for continuous priorities.
        order = priorities.topk(num_outputs, dim=0, sorted=True).indices  # (n_out, B)
        sorted_bits = bits.gather(0, order.unsqueeze(-1).expand(num_outputs, batch_size, width))

        targets = torch.zeros(steps, batch_size, self.output_size)
        targets[num_inputs + 1 :] = sorted_bits
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)
        mask[num_inputs + 1 :] = True
        return Batch(inputs, targets, mask, lengths=torch.full((batch_size,), steps))
