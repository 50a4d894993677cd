"""The task interface, the batch type, and helpers shared by the task generators.

Every task produces time-major batches (SPEC.md, "Tasks"):

- ``inputs``  ``[steps, batch, input_size]``  float32
- ``targets`` ``[steps, batch, output_size]`` float32, values 0 or 1
- ``mask``    ``[steps, batch]``              bool, True on the steps that are scored

Data bits occupy input channels ``0..width-1`` and control channels follow them. A batch whose
sequences differ in length is padded at the end of the time axis with zeros, and padding is
never scored.
"""

from __future__ import annotations

import abc
import operator
from typing import Any, NamedTuple

import torch


class Batch(NamedTuple):
    """One batch of a task, time-major, on the CPU unless moved.

    Attributes:
        inputs: ``[steps, batch, input_size]`` float32.
        targets: ``[steps, batch, output_size]`` float32, 0 or 1.
        mask: ``[steps, batch]`` bool, True where the target is scored.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Returns the same batch with every tensor moved to ``device``."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


class Task(abc.ABC):
    """A source of batches. Custom tasks implement the same members.

    Attributes:
        name: the name the task is registered under.
        input_size: channels of ``Batch.inputs``.
        output_size: channels of ``Batch.targets`` (and of the model's logits).
    """

    name: str
    input_size: int
    output_size: int

    @property
    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The resolved parameters (JSON-serialisable); ``make(name, **params)`` rebuilds it."""

    @abc.abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Draws a batch of ``batch_size`` sequences.

        Args:
            batch_size: number of sequences, at least 1.
            generator: the source of randomness; the same seed gives the same batch.
                ``None`` uses torch's global generator.

        Returns:
            A ``Batch`` of CPU tensors; see the class docstring for shapes.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------------------
# Parameter checks: each error names the parameter, as `make` promises.


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Returns ``value`` as an int, or raises ValueError naming the parameter."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        # operator.index accepts ints and NumPy integers but rejects floats such as 2.5.
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if as_int < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {as_int}")
    return as_int


def check_order(low_name: str, low: int, high_name: str, high: int) -> None:
    """Raises ValueError naming both parameters when ``low > high``."""
    if low > high:
        raise ValueError(
            f"{low_name} must be <= {high_name}, got {low_name}={low} > {high_name}={high}"
        )


# ---------------------------------------------------------------------------------------------
# Vectorised building blocks: one call covers the whole batch, no loop over sequences.


def random_bits(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Independent Bernoulli(0.5) bits as float32, of the given shape."""
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.float32)


def random_ints(
    low: int, high: int, batch_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One integer per sequence, uniform in ``low..high`` inclusive. Shape ``[batch]``, int64."""
    return torch.randint(low, high + 1, (batch_size,), generator=generator)


def time_index(steps: int, like: torch.Tensor) -> torch.Tensor:
    """``[steps, 1]`` int64 column 0..steps-1, broadcastable against per-sequence ``[batch]``."""
    return torch.arange(steps, device=like.device).unsqueeze(1)


def place(values: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """Places each sequence's segment at its own start step on a zero timeline.

    ``out[t, b] = values[t - start[b], b]`` where ``0 <= t - start[b] < segment_steps``, else 0.
    Sequences of one batch have different lengths, so their answer segments begin at different
    steps; a gather with a per-sequence offset places them all in one operation.

    Args:
        values: ``[segment_steps, batch, channels]``.
        start: ``[batch]`` int64, the step at which each sequence's segment begins.
        steps: length of the output timeline.

    Returns:
        ``[steps, batch, channels]``, same dtype as ``values``.
    """
    segment_steps, batch_size, channels = values.shape
    offset = time_index(steps, start) - start  # (T, B)
    inside = (offset >= 0) & (offset < segment_steps)  # (T, B)
    source = offset.clamp(0, segment_steps - 1).unsqueeze(-1).expand(steps, batch_size, channels)
    gathered = values.gather(0, source)  # (T, B, C)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(inside.unsqueeze(-1), gathered, zero)


def steps_between(start: torch.Tensor, stop: torch.Tensor, steps: int) -> torch.Tensor:
    """``[steps, batch]`` bool, True where ``start[b] <= t < stop[b]``."""
    t = time_index(steps, start)  # (T, 1)
    return (t >= start) & (t < stop)
