"""One recurrent core for every memory: controller -> interface -> access -> output.

:class:`MemoryRNN` runs sequences and :class:`MemoryCell` one step, like ``torch.nn.LSTM`` and
``torch.nn.LSTMCell``. The memory is any :class:`ntm.access.MemoryAccess`. Per step (as the
NTM and DNC papers): the controller sees the input and the previous read vectors; a linear
layer maps its output to the access's interface vector; the access reads and writes; the
output layer sees the controller's output and this step's read vectors.

Shapes: batch ``B``, steps ``T``, input ``I``, output ``O``, controller_size ``C``,
controller_layers ``L``; ``read_size`` and ``interface_size`` are the access's.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import backends
from .access.base import MemoryAccess
from .backends import Carry
from .controllers import CONTROLLERS
from .functional import bound_gradient
from .lengths import check_lengths, join_tensors, map_tensors, plan, valid_steps


class MemoryState(NamedTuple):
    """Everything a :class:`MemoryRNN` carries from one step to the next.

    For unbatched input the batch dimension is absent from every field.
    """

    controller: tuple[Tensor, ...]  # LSTM: (hidden [L, B, C], cell [L, B, C]); feedforward: ()
    access: Any  # the access's own state NamedTuple, batch first
    reads: Tensor  # [B, read_size], the last read vectors

    def detach(self) -> MemoryState:
        """The same state with every tensor detached (truncated backpropagation)."""
        return MemoryState(tuple(t.detach() for t in self.controller),
                           type(self.access)(*(t.detach() for t in self.access)),
                           self.reads.detach())


class MemoryTrace(NamedTuple):
    """What :meth:`MemoryRNN.trace` records at every step, time-major."""

    access: Any  # the access's Trace NamedTuple, each field [T, B, ...]
    reads: Tensor  # [T, B, read_size]


class MemoryCell(nn.Module):
    """One step of a memory-augmented network.

    Args:
        input_size: channels of the input ``I``.
        output_size: channels of the output ``O``.
        access: the memory, a :class:`ntm.access.MemoryAccess`.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_size: width ``C`` of each controller layer.
        controller_layers: number of controller layers ``L``.
        device, dtype: factory arguments for the parameters (the access is moved too).

    ``forward(input [B, I] or [I], state=None) -> (logits [B, O] or [O], state)``.
    """

    def __init__(self, input_size: int, output_size: int, access: MemoryAccess, *,
                 controller: str = "lstm", controller_size: int = 100,
                 controller_layers: int = 1, device=None, dtype=None):
        super().__init__()
        check_core_arguments(input_size, output_size, access, controller, controller_size,
                             controller_layers)
        check_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.output_size = input_size, output_size
        self.controller_kind, self.controller_size = controller, controller_size
        self.controller_layers = controller_layers
        # The access is registered first: parameters() then lists the NTM's in the order of
        # the releases before the core (initial reads, initial memory, controller, heads,
        # output), which the optimiser states in their checkpoints rely on.
        self.access = access.to(**factory) if device is not None or dtype is not None else access
        read_size = access.read_size
        self.controller = CONTROLLERS[controller](
            input_size, read_size, controller_size, controller_layers, **factory
        )
        self.interface = nn.Linear(controller_size, access.interface_size, **factory)
        self.output = nn.Linear(controller_size + read_size, output_size, **factory)
        # The paper learns the starting read vectors as biases; they start at zero.
        self.initial_reads = nn.Parameter(torch.zeros(read_size, **factory))

    # -- state ------------------------------------------------------------------------------

    def initial_state(self, batch_size: int, *,
                      generator: torch.Generator | None = None) -> MemoryState:
        """The state before the first step, on the parameters' device and dtype.

        The access starts from its own initial state; the read vectors from learned biases
        (zero at initialisation); the controller state at zero.
        """
        like = self.initial_reads
        factory = {"device": like.device, "dtype": like.dtype}
        access = self.access.initial_state(batch_size, generator=generator, **factory)
        controller = self.controller.initial_state(batch_size, **factory)
        return self._pack(Carry(controller, access, like.reshape(1, -1).expand(batch_size, -1)))

    def _pack(self, carry: Carry) -> MemoryState:
        """Loop form -> public form."""
        layers = carry.controller
        controller = (torch.stack(layers[0::2]), torch.stack(layers[1::2])) if layers else ()
        return MemoryState(controller, carry.access, carry.reads)

    def _unpack(self, state: MemoryState) -> Carry:
        """Public form -> loop form."""
        layers = ()
        if state.controller:
            hidden, cell = state.controller
            layers = tuple(t for pair in zip(hidden.unbind(0), cell.unbind(0), strict=True)
                           for t in pair)
        return Carry(layers, state.access, state.reads)

    def check_state(self, state: MemoryState, batch_size: int) -> None:
        """Raise a ValueError naming the first part of ``state`` that does not fit."""
        if not isinstance(state, MemoryState):
            raise ValueError(f"state must be a MemoryState, got {type(state).__name__}")
        dtype = self.initial_reads.dtype
        self.access.check_state(state.access, batch_size, dtype, "state.access")
        expected = [(batch_size, self.access.read_size)]
        names = ["reads"]
        if self.controller.states_per_layer:
            expected += [(self.controller_layers, batch_size, self.controller_size)] * 2
            names += ["controller[0]", "controller[1]"]
        if len(state.controller) != len(expected) - 1:
            raise ValueError(f"state.controller must hold {len(expected) - 1} tensors for a "
                             f"{self.controller_kind} controller, got {len(state.controller)}")
        for name, tensor, shape in zip(names, (state.reads, *state.controller), expected,
                                       strict=True):
            check_tensor(f"state.{name}", tensor, shape, dtype)

    def _start(self, batch_size: int, state: Any) -> Carry:
        """The loop form of a public state (``None``: the initial state), checked first."""
        if state is None:
            return self._unpack(self.initial_state(batch_size))
        state = self._to_core(state, batch_size)
        self.check_state(state, batch_size)
        return self._unpack(state)

    # -- one step ---------------------------------------------------------------------------

    def _step(self, projected_input: Tensor, carry: Carry, record: bool = False,
              running: Tensor | None = None, **access_options):
        """Advance the loop form by one step.

        Args:
            projected_input: ``[B, gates]``, from ``controller.project_input``.
            carry: the state after the previous step.
            running: ``[B]`` bool, the sequences that take the step (``None``: all); the
                others keep their state (an access that ``freezes_ended`` only).
            access_options: passed on to the access's ``step``.

        Returns:
            ``(carry, controller_output [B, C], access trace or None)``.
        """
        # Every recurrent path bounds the gradient it carries back (see bound_gradient; the
        # access bounds its own): keeps backpropagation through time finite in float32.
        reads = bound_gradient(carry.reads)
        state = tuple(bound_gradient(tensor) for tensor in carry.controller)
        output, controller = self.controller.step(projected_input, reads, state)
        if running is not None:
            access_options["running"] = running
        reads, access, trace = self.access.step(self.interface(output), carry.access,
                                                record=record, **access_options)
        if running is not None:  # an ended sequence keeps its controller state and reads
            keep = running.unsqueeze(-1)
            controller = tuple(torch.where(keep, new, old)
                               for new, old in zip(controller, carry.controller, strict=True))
            reads = torch.where(keep, reads, carry.reads)
        return Carry(controller, access, reads), output, trace

    def forward(self, input: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step: ``input [B, I]`` (or ``[I]``) -> ``(logits [B, O], state)``."""
        check_dtype(self.initial_reads.dtype)  # also after model.half()
        check_input(input, self.input_size, self.initial_reads.dtype, batched_rank=2)
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
            state = None if state is None else self._add_batch(state)
        carry = self._start(input.size(0), state)
        carry, output, _ = self._step(self.controller.project_input(input), carry)
        logits = self.output(torch.cat([output, carry.reads], dim=1))
        new_state = self._from_core(self._pack(carry))
        if unbatched:
            return logits.squeeze(0), self._drop_batch(new_state)
        return logits, new_state

    # -- the public state's form (a subclass may show it otherwise, as NTMCell does) --------

    def _to_core(self, state: Any, batch_size: int) -> MemoryState:
        """A public state (checked against ``batch_size``) -> the core's MemoryState."""
        return state

    def _from_core(self, state: MemoryState) -> Any:
        return state

    def _add_batch(self, state: Any) -> Any:
        """Unbatched state -> batch of one (the controller's batch dimension is its second)."""
        return _map_batch(state, lambda t: t.unsqueeze(0), lambda t: t.unsqueeze(1))

    def _drop_batch(self, state: Any) -> Any:
        return _map_batch(state, lambda t: t.squeeze(0), lambda t: t.squeeze(1))

    def extra_repr(self) -> str:
        return _changed_arguments(self, f"{self.input_size}, {self.output_size}")

    def __prepare_scriptable__(self):
        # torch.jit.script calls this before compiling: TorchScript cannot type the core.
        raise NotImplementedError(
            f"torch.jit.script does not support {type(self).__name__}: use "
            "torch.compile(model) or torch.export.export(model, (input,)) instead")


def _map_batch(state: MemoryState, batch_first, controller) -> MemoryState:
    return MemoryState(tuple(controller(t) for t in state.controller),
                       type(state.access)(*(batch_first(t) for t in state.access)),
                       batch_first(state.reads))


class MemoryRNN(nn.Module):
    """A memory-augmented network over sequences, used like ``torch.nn.LSTM``.

    Args:
        input_size, output_size, access, controller, controller_size, controller_layers:
            as in :class:`MemoryCell`.
        batch_first: input and output as ``[B, T, *]`` instead of ``[T, B, *]``.
        device, dtype: factory arguments for the parameters.
        backend: ``"auto"`` (the fastest registered backend that can run the input, else
            plain autograd), the name of a backend registered for the access
            (:mod:`ntm.backends`; for the NTM ``"kernel"``, the C++ CPU kernel, and
            ``"python"``), or ``"autograd"`` (every operation recorded by autograd: the
            reference, and the one that allows double backward). Backends run when gradients
            are needed; they give the same numbers to rounding.

    ``forward(input, state=None) -> (logits, state)``: ``input [T, B, I]`` (or ``[T, I]``
    unbatched), ``logits [T, B, O]`` before any output activation, ``state`` a
    :class:`MemoryState`. Running ``T`` steps at once equals running them in two calls that
    pass the state along.

    Sequences of different lengths, as ``torch.nn.LSTM``: ``forward(input, state=None, *,
    lengths=None)`` with ``lengths [B]`` (integers in ``0..T``; a tensor or a list) beside
    padded input, or a ``torch.nn.utils.rnn.PackedSequence`` as input (then the logits are a
    PackedSequence too). The logits past each sequence's end are zero and the state is each
    sequence's after its own last step (a sequence of length 0 keeps the given state), equal
    to running each alone; the batch shrinks as sequences end, or, for a large state changed
    in place (SAM's, past ``FREEZE_ELEMENTS``), ended sequences are frozen (:mod:`ntm.lengths`).

    Example:
        >>> import torch, ntm
        >>> access = ntm.access.NTMAccess(memory_slots=16, memory_width=4)
        >>> model = ntm.MemoryRNN(9, 8, access, controller_size=12)
        >>> logits, state = model(torch.zeros(5, 3, 9))
        >>> tuple(logits.shape), tuple(state.access.memory.shape), tuple(state.reads.shape)
        ((5, 3, 8), (3, 16, 4), (3, 4))
    """

    def __init__(self, input_size: int, output_size: int, access: MemoryAccess, *,
                 controller: str = "lstm", controller_size: int = 100,
                 controller_layers: int = 1, batch_first: bool = False, device=None,
                 dtype=None, backend: str = "auto"):
        super().__init__()
        cell = MemoryCell(input_size, output_size, access, controller=controller,
                          controller_size=controller_size, controller_layers=controller_layers,
                          device=device, dtype=dtype)
        self._attach(cell, batch_first=batch_first, backend=backend)

    def _attach(self, cell: MemoryCell, *, batch_first: bool, backend: str) -> None:
        backends.check_choice(backend, cell.access)
        self.cell, self.batch_first, self.backend = cell, batch_first, backend
        self.input_size, self.output_size = cell.input_size, cell.output_size

    @property
    def fused(self) -> bool:
        """The older switch: ``True`` for ``backend="auto"``, ``False`` for ``"autograd"``."""
        return self.backend != backends.AUTOGRAD

    @fused.setter
    def fused(self, value: bool) -> None:
        self.backend = backends.AUTO if value else backends.AUTOGRAD

    def initial_state(self, batch_size: int, *, generator: torch.Generator | None = None):
        """See :meth:`MemoryCell.initial_state`."""
        return self.cell._from_core(self.cell.initial_state(batch_size, generator=generator))

    def forward(self, input: Tensor | PackedSequence, state: Any = None, *,
                lengths: Tensor | list[int] | None = None) -> tuple[Tensor | PackedSequence, Any]:
        """Run a sequence: ``(logits, state)``; see the class docstring and :mod:`ntm.lengths`."""
        logits, state, _ = self._run(input, state, lengths, record=False)
        return logits, state

    def trace(self, input: Tensor | PackedSequence, state: Any = None, *,
              lengths: Tensor | list[int] | None = None):
        """Like :meth:`forward`, also returning every step's :class:`MemoryTrace`.

        The trace is time-major (``[T, B, ...]``; ``[T, ...]`` for unbatched input) whatever
        ``batch_first`` is, padded with zeros past each sequence's end (also for a
        PackedSequence input).
        """
        return self._run(input, state, lengths, record=True)

    def _run(self, input: Tensor | PackedSequence, state: Any, lengths: Any, record: bool):
        if isinstance(input, PackedSequence):
            return self._run_packed(input, state, lengths, record)
        cell = self.cell
        check_dtype(cell.initial_reads.dtype)  # also after model.half()
        check_input(input, cell.input_size, cell.initial_reads.dtype, batched_rank=3)
        unbatched = input.dim() == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("lengths needs a batched input [T, B, I] (or a PackedSequence), "
                                 f"got an unbatched input of shape {tuple(input.shape)}")
            input = input.unsqueeze(1)
            state = None if state is None else cell._add_batch(state)
        elif self.batch_first:
            input = input.transpose(0, 1)
        steps, batch = input.shape[:2]
        if lengths is not None:
            lengths = check_lengths(lengths, batch, steps)
            lengths = None if bool((lengths == steps).all()) else lengths  # nothing padded
        carry = cell._start(batch, state)
        if lengths is None:
            projected = cell.controller.project_input(input)  # (T, B, gates), all steps at once
            run = self._sequence(projected, carry, record)
            # The output layer is not recurrent: one matrix product for the whole sequence.
            logits = cell.output(torch.cat([run.outputs, run.reads], dim=-1))  # (T, B, O)
        else:
            logits, run = self._run_lengths(input, carry, lengths, record)
        new_state = cell._from_core(cell._pack(run.carry))
        trace = self._public_trace(MemoryTrace(run.trace, run.reads)) if record else None
        if unbatched:
            logits = logits.squeeze(1)
            new_state = cell._drop_batch(new_state)
            trace = None if trace is None else _map_trace(trace, lambda t: t.squeeze(1))
        elif self.batch_first:
            logits = logits.transpose(0, 1)
        return logits, new_state, trace

    def _run_packed(self, input: PackedSequence, state: Any, lengths: Any, record: bool):
        """A PackedSequence in, a PackedSequence out (with the input's sorted_indices), as
        ``torch.nn.LSTM``; the state in the batch's own order (unsorted)."""
        if lengths is not None:
            raise ValueError("lengths must be None for a PackedSequence input, which carries "
                             f"its own; got {type(lengths).__name__}")
        batch_first = self.batch_first
        padded, lengths = pad_packed_sequence(input, batch_first=batch_first)
        logits, new_state, trace = self._run(padded, state, lengths, record)
        indices = input.sorted_indices
        if indices is not None:  # back to the order the data was packed in, longest first
            logits = logits.index_select(0 if batch_first else 1, indices)
            lengths = lengths[indices.cpu()]
        packed = pack_padded_sequence(logits, lengths, batch_first=batch_first)
        output = PackedSequence(packed.data, packed.batch_sizes, indices, input.unsorted_indices)
        return output, new_state, trace

    def _backend(self, projected: Tensor) -> backends.Backend | None:
        """The backend that runs ``projected`` (``[T, B, gates]``): ``None`` for the plain
        loop, which is also what runs where no gradient is needed."""
        if torch.is_grad_enabled() and projected.size(0) > 0:
            return backends.choose(self.backend, self.cell.access, projected)
        return None

    def _sequence(self, projected: Tensor, carry: Carry, record: bool,
                  running: list[Tensor | None] | None = None) -> backends.SequenceRun:
        """Run every step, on the chosen backend where gradients are needed; with ``running``
        (per step, ``[B]`` bool or ``None``: see :meth:`_run_frozen`), the plain loop."""
        if running is not None:
            return self._loop(projected, carry, record, running)
        backend = self._backend(projected)
        if backend is not None:
            return backend.run(self.cell, projected, carry)
        return self._loop(projected, carry, record)

    def _run_lengths(self, input: Tensor, carry: Carry, lengths: Tensor, record: bool):
        """Run sequences that end at ``lengths`` (``[B]``, CPU): ``(logits [T, B, O], run)``.

        Sorted longest first (:func:`ntm.lengths.plan`), the sequences not yet ended are a
        prefix of the batch at every step. A backend that runs packed batches (the C++
        kernel) runs them in one call that shrinks the batch as they end; any other runs
        :meth:`_sequence` once per time segment between consecutive distinct lengths, on the
        sequences still running (split runs equal one run). Back in the batch's own order:
        the logits and the run's reads and trace zero past each end, its carry each
        sequence's after its own last step (its outputs are not kept). An access that
        ``freezes_ended`` runs :meth:`_run_frozen` instead where its state is large.
        """
        # The padding is zeroed: the input projection runs over it, and a NaN there would
        # reach the weights' gradient as 0 * NaN (and, frozen, a sequence's memory).
        valid = valid_steps(lengths, input.size(0), input.device)  # (T, B)
        input = input.masked_fill(~valid.unsqueeze(-1), 0.0)
        access = self.cell.access
        if access.freezes_ended and _elements(carry.access) > FREEZE_ELEMENTS:
            return self._run_frozen(input, carry, lengths, valid, record)
        layout = plan(lengths)
        order = layout.order.to(input.device)
        restore = layout.restore.to(input.device)
        input = input.index_select(1, order)  # (T, B, I), longest first
        carry = map_tensors(carry, lambda t: t.index_select(0, order))
        projected = self.cell.controller.project_input(input)  # (T, B, gates)
        backend, longest = self._backend(projected), layout.segments[-1].stop
        if backend is not None and backend.packed is not None and longest > 0:
            sizes = [active for start, stop, active, _ in layout.segments
                     for _ in range(start, stop)]  # per step, those still running
            runs = [backend.packed(self.cell, projected[:longest], carry, sizes)]
            final = runs[0].carry
        else:
            runs, final = self._segments(projected, carry, layout, record)
        steps, batch = projected.shape[:2]
        outputs = _pad_steps([r.outputs for r in runs], steps, batch)  # (T, B, C), zero past ends
        reads = _pad_steps([r.reads for r in runs], steps, batch)
        logits = self.cell.output(torch.cat([outputs, reads], dim=-1))  # (T, B, O)
        valid = valid.index_select(1, order).unsqueeze(-1)  # (T, B, 1), sorted
        logits = torch.where(valid, logits, logits.new_zeros(()))  # the bias past the ends
        trace = None
        if record:
            trace = join_tensors([r.trace for r in runs], lambda pieces: _pad_steps(
                pieces, steps, batch).index_select(1, restore))
            reads = reads.index_select(1, restore)
        unsorted = map_tensors(final, lambda t: t.index_select(0, restore))
        return (logits.index_select(1, restore),
                backends.SequenceRun(None, reads, trace, unsorted))

    def _run_frozen(self, input: Tensor, carry: Carry, lengths: Tensor, valid: Tensor,
                    record: bool):
        """:meth:`_run_lengths` for an access that ``freezes_ended``: the batch in its own
        order, every sequence taking the steps up to the longest length, a sequence past its
        end frozen (its state kept, its outputs zero). ``valid``: ``[T, B]`` bool, the steps
        within each sequence. Nothing of the state is copied; a registered backend is not
        used (the plain loop runs it)."""
        steps, batch = input.shape[:2]
        longest, shortest = int(lengths.max()), int(lengths.min())
        running = valid[:longest]  # (T', B)
        # A frozen sequence still computes its steps (then thrown away) on the padding,
        # which _run_lengths zeroed.
        projected = self.cell.controller.project_input(input[:longest])  # (T', B, gates)
        # Before the shortest sequence ends every sequence runs: no mask to apply there.
        masks = [None if t < shortest else running[t] for t in range(longest)]
        run = self._sequence(projected, carry, record, masks)

        def zero_past_ends(piece: Tensor) -> Tensor:  # [T', B, ...] -> [T, B, ...]
            valid = running.view(*running.shape, *[1] * (piece.dim() - 2))
            return _pad_steps([torch.where(valid, piece, 0.0)], steps, batch)

        reads = zero_past_ends(run.reads)
        logits = self.cell.output(torch.cat([zero_past_ends(run.outputs), reads], dim=-1))
        logits = torch.where(valid.unsqueeze(-1), logits, logits.new_zeros(()))  # the bias
        trace = map_tensors(run.trace, zero_past_ends) if record else None
        return logits, backends.SequenceRun(None, reads, trace, run.carry)

    def _segments(self, projected: Tensor, carry: Carry, layout, record: bool):
        """:meth:`_sequence` per segment of ``layout`` (an :class:`ntm.lengths.Plan`) on the
        sorted batch: ``(runs, final carry)``, the runs' pieces ``[t_k, active_k, ...]``."""
        runs = [self._loop(projected[:0], carry, record)]  # no steps: the shapes of the pieces
        # split, not slicing: the backward of a slice fills a tensor of the whole's size.
        steps = [stop - start for start, stop, _, _ in layout.segments]
        pieces = projected.split([*steps, projected.size(0) - sum(steps)])
        ended = []
        for piece, (start, stop, active, ending) in zip(pieces, layout.segments, strict=False):
            if stop > start:
                runs.append(self._sequence(piece[:, :active], carry, record))
                carry = runs[-1].carry
            carry, done = _split_rows(carry, ending)
            ended.append(done)
        # The shortest ended first: their rows come last in the sorted batch.
        return runs, join_tensors(ended[::-1], torch.cat)

    def _loop(self, projected: Tensor, carry: Carry, record: bool,
              running: list[Tensor | None] | None = None,
              **access_options) -> backends.SequenceRun:
        """The plain step loop (autograd records every operation); the reference path.
        ``running``: per step what :meth:`MemoryCell._step` takes (``None``: all run);
        ``access_options``: passed to the access's ``step``."""
        outputs, reads, traces = [], [], []
        for t, projected_step in enumerate(projected.unbind(0)):
            carry, output, trace = self.cell._step(
                projected_step, carry, record, None if running is None else running[t],
                **access_options)
            outputs.append(output)
            reads.append(carry.reads)
            traces.append(trace)
        cell, batch = self.cell, projected.size(1)
        if not outputs:
            factory = {"device": projected.device, "dtype": projected.dtype}
            empty = torch.zeros(0, batch, cell.controller_size, **factory)
            return backends.SequenceRun(empty, empty.new_zeros(0, batch, cell.access.read_size),
                                        _empty_trace(cell.access, batch, factory), carry)
        trace = type(traces[0])(*map(torch.stack, zip(*traces, strict=True))) if record else None
        return backends.SequenceRun(torch.stack(outputs), torch.stack(reads), trace, carry)

    def _public_trace(self, trace: MemoryTrace) -> Any:
        return trace

    def __prepare_scriptable__(self):
        # torch.jit.script calls this before compiling: TorchScript cannot type the core.
        raise NotImplementedError(
            f"torch.jit.script does not support {type(self).__name__}: use "
            "torch.compile(model) or torch.export.export(model, (input,)) instead")

    def extra_repr(self) -> str:
        flags = [("batch_first=True", self.batch_first),
                 (f"backend={self.backend!r}", self.backend != backends.AUTO)]
        return ", ".join(text for text, on in flags if on)


# An access that freezes_ended runs a batch with lengths frozen once its state holds more than
# this many elements. Below, sorting and splitting copies little and the batch shrinks as
# sequences end: SAM at 128 slots on copy (benchmarks/lengths.py --backends sam, batch 32,
# results/lengths_sam*.json), sorted, a training step with lengths took 0.93-1.00 of the
# padded one's; frozen, 1.09. Above, the copies grow with the memory: at 1,048,576 slots,
# batch 8, sorting took 5.3 GiB, frozen 0.36 (benchmarks/sam_lengths_memory.py). The
# crossover between was not measured.
FREEZE_ELEMENTS = 1 << 20


def _elements(state: Any) -> int:
    """The number of elements of every tensor of a (nested) state."""
    return sum(tensor.numel() for tensor in _flat_state(state))


def _split_rows(carry: Carry, at: int) -> tuple[Carry, Carry]:
    """Rows ``:at`` and ``at:`` of the batch of every tensor of a loop-form state (batch
    first), by one split each."""
    halves = [t.split([at, t.size(0) - at]) for t in _flat_state(carry)]
    first, second = iter([h[0] for h in halves]), iter([h[1] for h in halves])
    return map_tensors(carry, lambda t: next(first)), map_tensors(carry, lambda t: next(second))


def _pad_steps(pieces: list[Tensor], steps: int, batch: int) -> Tensor:
    """Time segments ``[t_k, b_k, ...]`` (``b_k <= batch``) -> ``[steps, batch, ...]``: each
    padded with zeros to ``batch`` sequences, one after another, zeros to ``steps``."""
    rest = pieces[0].shape[2:]
    padded = [p if p.size(1) == batch else
              torch.cat([p, p.new_zeros(p.size(0), batch - p.size(1), *rest)], dim=1)
              for p in pieces if p.size(0)]
    done = sum(p.size(0) for p in pieces)
    if done < steps or not padded:
        padded.append(pieces[0].new_zeros(steps - done, batch, *rest))
    return padded[0] if len(padded) == 1 else torch.cat(padded)


def _empty_trace(access: MemoryAccess, batch: int, factory: dict) -> Any:
    """The access's Trace of a sequence of no steps: each field ``[0, B, ...]``."""
    shapes = access.trace_shapes(batch)
    return type(shapes)(*(torch.zeros(0, *shape, **factory) for shape in shapes))


def _flat_state(state: Any) -> list[Tensor]:
    """Every tensor of a (nested) state or trace, in field order."""
    if isinstance(state, Tensor):
        return [state]
    return [tensor for field in state for tensor in _flat_state(field)]


def _map_trace(trace: Any, function) -> Any:
    """Apply ``function`` to every tensor of a trace (nested NamedTuples of tensors)."""
    if isinstance(trace, Tensor):
        return function(trace)
    return type(trace)(*(_map_trace(field, function) for field in trace))


# -- validation --------------------------------------------------------------------------------


def check_core_arguments(input_size, output_size, access, controller, controller_size,
                         controller_layers) -> None:
    """Raise a ValueError naming the first argument of a core that is not valid."""
    if not isinstance(access, MemoryAccess):
        raise ValueError(f"access must be an ntm.access.MemoryAccess, got {type(access).__name__}")
    if controller not in CONTROLLERS:
        raise ValueError(f"controller must be one of {sorted(CONTROLLERS)}, got {controller!r}")
    sizes = {"input_size": input_size, "output_size": output_size,
             "controller_size": controller_size, "controller_layers": controller_layers}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_dtype(dtype: torch.dtype | None) -> None:
    """Refuse float16, which gives NaN from the first step, naming what works instead.

    Its largest number is 65,504: the content softmax's ``exp(beta * K)`` with beta up to
    softplus(20) and the sharpening's ``gamma * log w`` overflow it, as do the memory's
    squared norms, and the loss is NaN from the first step. bfloat16 keeps float32's range
    in the same two bytes.
    """
    if dtype == torch.float16:
        raise ValueError("dtype torch.float16 is not supported: its range (65,504) overflows in "
                         "the addressing and the model gives NaN from the first step; use "
                         "torch.bfloat16 (same size, float32's range) or torch.float32")


def check_tensor(name: str, tensor: Any, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Raise a ValueError unless ``tensor`` is a Tensor of ``shape`` and ``dtype``."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a Tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    if tensor.dtype != dtype:
        raise ValueError(f"{name} must have the model's dtype {dtype}, got {tensor.dtype}")


def check_input(input: Tensor, input_size: int, dtype: torch.dtype, batched_rank: int) -> None:
    """Raise a ValueError naming what is wrong with a model's ``input``."""
    if not isinstance(input, Tensor):
        raise ValueError(f"input must be a Tensor, got {type(input).__name__}")
    if input.dim() not in (batched_rank - 1, batched_rank):
        raise ValueError(
            f"input must be {batched_rank - 1}-D (unbatched) or {batched_rank}-D (batched), "
            f"got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    if input.size(-1) != input_size:
        raise ValueError(
            "input.size(-1) must be equal to input_size. "
            f"Expected {input_size}, got {input.size(-1)}"
        )
    check_input_dtype(input, dtype)


def check_input_dtype(input: Tensor, dtype: torch.dtype) -> None:
    """Raise a ValueError naming both dtypes and the fix if ``input`` is not of ``dtype``."""
    if input.dtype != dtype:
        # Else the first matrix product fails with "mat1 and mat2 must have the same dtype".
        fixes = [f"the input with input{_conversion(dtype)}"]
        if input.is_floating_point():
            fixes.insert(0, f"the model with model{_conversion(input.dtype)}")
        raise ValueError(
            f"input has dtype {input.dtype} but the model's parameters are {dtype}; "
            f"convert {' or '.join(fixes)}"
        )


def _conversion(dtype: torch.dtype) -> str:
    """The method call that converts a module or tensor to ``dtype``: ``.double()``, ..."""
    methods = {torch.float64: "double", torch.float32: "float", torch.float16: "half",
               torch.bfloat16: "bfloat16"}
    return f".{methods[dtype]}()" if dtype in methods else f".to({dtype})"


def _changed_arguments(cell: MemoryCell, head: str) -> str:
    """``extra_repr``: ``head``, then the controller's arguments that differ from the defaults."""
    parameters = inspect.signature(MemoryCell.__init__).parameters
    values = {"controller": cell.controller_kind, "controller_size": cell.controller_size,
              "controller_layers": cell.controller_layers}
    changed = [f"{k}={v!r}" for k, v in values.items() if v != parameters[k].default]
    return ", ".join([head, *changed])
