"""The task interface, the batch type, and helpers shared by the task generators.

Every task produces time-major batches (as in the paper, section 4):

- ``inputs``  ``[steps, batch, input_size]``  float32
- ``targets`` ``[steps, batch, output_size]`` float32, values 0 or 1 for the paper's tasks (a
  custom task's may lie anywhere in [0, 1])
- ``mask``    ``[steps, batch]``              bool, True on the steps that are scored
- ``lengths`` ``[batch]``                     int64, the steps of each sequence, padding
  excluded (``None`` in a custom task's batch that does not give them: all ``steps``)

Data bits occupy input channels ``0..width-1`` and control channels follow them. A batch whose
sequences differ in length is padded at the end of the time axis with zeros, and padding is
never scored; training and evaluation pass ``lengths`` to the model (``model(inputs,
lengths=lengths)``), which then stops each sequence at its own end.
"""

from __future__ import annotations

import abc
import inspect
import operator
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch


class Batch(NamedTuple):
    """One batch of a task, time-major, on the CPU unless moved.

    Attributes:
        inputs: ``[steps, batch, input_size]`` float32.
        targets: ``[steps, batch, output_size]`` float32, 0 or 1.
        mask: ``[steps, batch]`` bool, True where the target is scored.
        lengths: ``[batch]`` int64, the steps of each sequence (``1..steps``; no step past a
            sequence's end is scored), or ``None``: every sequence has all ``steps``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Returns the same batch with ``inputs``, ``targets`` and ``mask`` moved to ``device``.

        ``lengths`` stays on the CPU, where ``torch.nn.utils.rnn.pack_padded_sequence`` and the
        models' plan of the run read it.
        """
        moved = (t.to(device, non_blocking=non_blocking) for t in self[:3])
        return Batch(*moved, self.lengths)


class Task(abc.ABC):
    """A source of batches. Custom tasks subclass it (or implement the same members).

    A subclass sets ``input_size`` and ``output_size`` and implements :meth:`sample`; its
    parameters are the keyword arguments of ``__init__``, each stored as an attribute of the
    same name so that the default :attr:`params` can read them back. Registered with
    :func:`ntm.tasks.register`, it trains like the paper's tasks (see ``docs/custom-tasks.md``).

    Example: a task whose target is its input, one step later.

        >>> import torch
        >>> from ntm.tasks import Batch, Task
        >>> class Delay(Task):
        ...     name = "delay"
        ...     def __init__(self, *, length: int = 5, width: int = 4) -> None:
        ...         self.length, self.width = length, width
        ...         self.input_size = self.output_size = width
        ...     def sample(self, batch_size, generator=None):
        ...         bits = torch.randint(0, 2, (self.length + 1, batch_size, self.width),
        ...                              generator=generator).float()
        ...         bits[-1] = 0  # the input ends one step before the target
        ...         mask = torch.ones(self.length + 1, batch_size, dtype=torch.bool)
        ...         mask[0] = False  # nothing to echo yet
        ...         return Batch(bits, bits.roll(1, dims=0), mask)
        >>> Delay(length=3).params
        {'length': 3, 'width': 4}
        >>> Delay(length=3).sample(2).inputs.shape
        torch.Size([4, 2, 4])

    Attributes:
        name: the name the task is registered under.
        input_size: channels of ``Batch.inputs``.
        output_size: channels of ``Batch.targets`` (and of the model's logits).
        training_only: names of parameters that shape only the training data; a run draws its
            held-out data (validation, ``ntm eval``, plots) with them at their defaults.
    """

    name: str
    input_size: int
    output_size: int
    # Parameters that shape only the training data (associative recall's near items): a run's
    # validation, evaluation and plots draw from the task with these at their defaults.
    training_only: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        """The resolved parameters (JSON-serialisable); ``make(name, **params)`` rebuilds it.

        By default the keyword parameters of ``__init__``, each read from the attribute of the
        same name; their types are the ones ``--set task.<param>=value`` converts to.

        Raises:
            TypeError: an ``__init__`` parameter has no attribute of the same name.
        """
        signature = inspect.signature(type(self).__init__)
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = [p.name for p in list(signature.parameters.values())[1:] if p.kind in kinds]
        missing = [name for name in names if not hasattr(self, name)]
        if missing:
            raise TypeError(f"{type(self).__name__}.params: store the parameter "
                            f"{missing[0]!r} as self.{missing[0]} in __init__, or override params")
        return {name: getattr(self, name) for name in names}

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
# Interface checks: a custom task's mistakes surface before training, not as a shape error
# deep inside the model or the loss.

# Sequences drawn by `check_task`: more than one, so that a task ignoring batch_size shows.
CHECK_BATCH_SIZE = 2


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(size) for size in tensor.shape) + "]"


def check_batch(task: Any, batch: Any, batch_size: int) -> None:
    """Checks that ``batch`` is what ``task.sample(batch_size)`` promises.

    Expected: a :class:`Batch` with ``inputs [steps, batch_size, task.input_size]`` float32 and
    finite, ``targets [steps, batch_size, task.output_size]`` float32 in [0, 1] (they are scored
    by binary cross-entropy) and ``mask [steps, batch_size]`` bool with at least one step to
    score, one ``steps`` for all three; ``lengths`` ``None`` or as
    :func:`check_batch_lengths` says.

    Raises:
        ValueError: one line naming the field, what was expected and what came.
    """
    if not isinstance(batch, Batch):
        raise ValueError(f"sample() must return an ntm.tasks.Batch, got {type(batch).__name__}")
    fields = (("inputs", batch.inputs, task.input_size, "input_size"),
              ("targets", batch.targets, task.output_size, "output_size"))
    for field, tensor, size, size_name in fields:
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
            got = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"Batch.{field} must be a float32 tensor, got {got}")
        if tensor.dim() != 3 or tensor.shape[1:] != (batch_size, size):
            raise ValueError(f"Batch.{field} must have shape [steps, batch, {size_name}] = "
                             f"[steps, {batch_size}, {size}], got {_shape(tensor)}")
    steps = batch.inputs.shape[0]
    if batch.targets.shape[0] != steps:
        raise ValueError(f"Batch.targets must have as many steps as Batch.inputs ({steps}), "
                         f"got {_shape(batch.targets)}")
    mask = batch.mask
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"Batch.mask must be a bool tensor, got {got}")
    if mask.shape != (steps, batch_size):
        raise ValueError(f"Batch.mask must have shape [steps, batch] = [{steps}, {batch_size}], "
                         f"got {_shape(mask)}")
    if not torch.isfinite(batch.inputs).all():
        raise ValueError("Batch.inputs must be finite, got NaN or infinite values")
    targets = batch.targets
    outside = ~((targets >= 0) & (targets <= 1))  # NaN fails both comparisons
    if outside.any():
        raise ValueError("Batch.targets must lie in [0, 1] (they are scored by binary "
                         f"cross-entropy), got {targets[outside][0].item()}")
    if not mask.any():
        raise ValueError("Batch.mask marks no step to score (all False), so every cost would "
                         "be 0; set it True where the targets are scored")
    if batch.lengths is not None:
        check_batch_lengths(batch.lengths, mask)


def check_batch_lengths(lengths: Any, mask: torch.Tensor) -> None:
    """Checks ``Batch.lengths`` against ``mask [steps, batch]``: ``[batch]`` int64 in
    ``1..steps``, no step scored past a sequence's end.

    Raises:
        ValueError: one line naming what was expected and what came.
    """
    steps, batch_size = mask.shape
    if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64:
        got = lengths.dtype if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"Batch.lengths must be an int64 tensor or None, got {got}")
    if lengths.shape != (batch_size,):
        raise ValueError(f"Batch.lengths must have shape [batch] = [{batch_size}], "
                         f"got {_shape(lengths)}")
    lengths = lengths.cpu()
    if ((lengths < 1) | (lengths > steps)).any():
        raise ValueError(f"Batch.lengths must lie in 1..{steps} (the steps), got "
                         f"{lengths.tolist()}")
    scored_past_end = mask.cpu() & (time_index(steps, lengths) >= lengths)  # (T, B)
    if scored_past_end.any():
        step, sequence = (int(i) for i in scored_past_end.nonzero()[0])
        raise ValueError(f"Batch.mask scores step {step} of sequence {sequence}, past its end: "
                         f"Batch.lengths[{sequence}] = {int(lengths[sequence])}; expected "
                         f"lengths > the last scored step")


def check_task(task: Any) -> None:
    """Checks the members of a task and the shapes of one batch it draws.

    Draws ``CHECK_BATCH_SIZE`` sequences from a generator of its own, so the caller's random
    streams are untouched (unless the task ignores ``generator``).

    Raises:
        ValueError: ``input_size``/``output_size`` not positive integers, or a wrong batch
            (see :func:`check_batch`).
        TypeError: no ``sample`` method or ``params`` mapping.
    """
    for size_name in ("input_size", "output_size"):
        check_int(size_name, getattr(task, size_name, None))
    if not callable(getattr(task, "sample", None)):
        raise TypeError(f"{type(task).__name__} has no sample(batch_size, generator=None) method")
    if not isinstance(task.params, Mapping):
        raise TypeError(f"{type(task).__name__}.params must be a dict of parameter values, "
                        f"got {type(task.params).__name__}")
    generator = torch.Generator().manual_seed(0)
    check_batch(task, task.sample(CHECK_BATCH_SIZE, generator=generator), CHECK_BATCH_SIZE)


# ---------------------------------------------------------------------------------------------
# Parameter checks: each error names the parameter, as `make` promises.


def check_fraction(name: str, value: Any) -> float:
    """Returns ``value`` as a float in ``[0, 1]``, or raises ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


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
