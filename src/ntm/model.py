"""The Neural Turing Machine as a PyTorch module: :class:`NTMCell` (one step) and :class:`NTM`.

Shapes, mapped once to the paper's letters: batch ``B``, steps ``T``, memory_slots ``N``,
memory_width ``M``, read_heads ``R``, write_heads ``W``, controller_size ``C``,
controller_layers ``L``.

Order of a step (as Collier & Beel 2018): the controller sees the input and the previous read
vectors; every head is addressed against the memory as it was before this step; the read
heads read it; then the write heads erase and add. The output layer sees the controller
output and this step's read vectors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .addressing import address, bound_gradient
from .controllers import CONTROLLERS
from .fused import run_sequence
from .heads import HeadProjection
from .memory import read, write

MEMORY_INITS = ("constant", "learned", "random")
# Collier & Beel 2018: a small constant memory converged about twice as fast as the next best.
CONSTANT_MEMORY_VALUE = 1e-6
# Standard deviation of the "random" memory, and of the starting value of the "learned" one.
RANDOM_MEMORY_STD = 0.5


class NTMState(NamedTuple):
    """Everything an NTM carries from one step to the next; nothing is kept on the module.

    For unbatched input the batch dimension is absent from every field.
    """

    memory: Tensor  # [B, N, M]
    read_weights: Tensor  # [B, R, N]
    write_weights: Tensor  # [B, W, N]
    read_vectors: Tensor  # [B, R, M]
    controller: tuple[Tensor, ...]  # LSTM: (hidden [L, B, C], cell [L, B, C]); feedforward: ()

    def detach(self) -> NTMState:
        """The same state with every tensor, the controller's included, detached from the graph.

        For truncated backpropagation through time: the values carry on into the next chunk
        of steps, the gradient stops at the chunk boundary. (``NTMState(*(t.detach() for t in
        state))`` does not work: ``controller`` is a tuple of tensors.)

        Example:
            >>> import torch, ntm
            >>> model = ntm.NTM(9, 8, memory_slots=16, memory_width=4, controller_size=8)
            >>> optimiser = torch.optim.Adam(model.parameters())
            >>> state = None
            >>> for chunk in torch.rand(40, 2, 9).split(10):  # 4 chunks of 10 steps
            ...     logits, state = model(chunk, state)
            ...     optimiser.zero_grad()
            ...     logits.pow(2).mean().backward()  # through this chunk only
            ...     optimiser.step()
            ...     state = state.detach()
            >>> state.memory.requires_grad, state.controller[0].grad_fn
            (False, None)
        """
        tensors = {name: getattr(self, name).detach() for name in self._fields
                   if name != "controller"}
        return NTMState(**tensors, controller=tuple(t.detach() for t in self.controller))


class NTMTrace(NamedTuple):
    """What the heads did at every step, recorded by :meth:`NTM.trace` (for figures)."""

    read_weights: Tensor  # [T, B, R, N]
    write_weights: Tensor  # [T, B, W, N]
    read_vectors: Tensor  # [T, B, R, M]


class _Carry(NamedTuple):
    """The state as the step loop keeps it: heads stacked, controller layers unpacked."""

    memory: Tensor  # (B, N, M)
    weights: Tensor  # (B, R + W, N)
    reads: Tensor  # (B, R * M)
    controller: tuple[Tensor, ...]  # per layer (B, C)


def _shape(tensor: Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


class NTMCell(nn.Module):
    """One step of a Neural Turing Machine, like ``torch.nn.LSTMCell`` for ``torch.nn.LSTM``.

    Takes the same arguments as :class:`NTM` except ``batch_first`` and ``fused``.
    ``forward(input [B, I] or [I], state=None) -> (logits [B, O] or [O], state)``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        controller: str = "lstm",
        controller_size: int = 100,
        controller_layers: int = 1,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "constant",
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_arguments(locals())
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.output_size = input_size, output_size
        self.controller_kind, self.controller_size = controller, controller_size
        self.controller_layers = controller_layers
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.write_heads, self.shift_range = read_heads, write_heads, shift_range
        self.memory_init = memory_init
        reads_size = read_heads * memory_width
        self.controller = CONTROLLERS[controller](
            input_size, reads_size, controller_size, controller_layers, **factory
        )
        self.heads = HeadProjection(
            controller_size, read_heads, write_heads, memory_width, shift_range, **factory
        )
        self.output = nn.Linear(controller_size + reads_size, output_size, **factory)
        # The paper learns the starting read vectors as biases; they start at zero.
        self.initial_reads = nn.Parameter(torch.zeros(read_heads, memory_width, **factory))
        if memory_init == "learned":
            self.initial_memory = nn.Parameter(
                torch.randn(memory_slots, memory_width, **factory) * RANDOM_MEMORY_STD
            )

    # -- state -----------------------------------------------------------------------------

    def initial_state(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> NTMState:
        """The state before the first step, on the parameters' device and dtype.

        Memory per ``memory_init``: ``"constant"`` fills it with 1e-6; ``"learned"`` uses a
        trained ``[N, M]`` parameter; ``"random"`` draws each element from N(0, 0.5^2)
        afresh for every sequence (from ``generator`` if given). Every head's weighting starts
        on slot 0, so that location addressing has a defined origin; the read vectors start
        from learned biases (zero at initialisation); the controller state starts at zero.
        """
        like = self.initial_reads
        factory = {"device": like.device, "dtype": like.dtype}
        shape = (batch_size, self.memory_slots, self.memory_width)
        if self.memory_init == "constant":
            memory = torch.full(shape, CONSTANT_MEMORY_VALUE, **factory)
        elif self.memory_init == "learned":
            memory = self.initial_memory.expand(shape)
        else:
            memory = torch.randn(shape, generator=generator, **factory) * RANDOM_MEMORY_STD
        heads = self.read_heads + self.write_heads
        weights = torch.zeros(batch_size, heads, self.memory_slots, **factory)
        weights[:, :, 0] = 1.0
        controller = self.controller.initial_state(batch_size, **factory)
        return self._pack(
            _Carry(memory, weights, like.reshape(1, -1).expand(batch_size, -1), controller)
        )

    def _pack(self, carry: _Carry) -> NTMState:
        """Loop form -> public form."""
        read_weights, write_weights = carry.weights.split([self.read_heads, self.write_heads], 1)
        layers = carry.controller
        controller = (torch.stack(layers[0::2]), torch.stack(layers[1::2])) if layers else ()
        batch = carry.memory.size(0)
        return NTMState(
            carry.memory,
            read_weights,
            write_weights,
            carry.reads.reshape(batch, self.read_heads, self.memory_width),
            controller,
        )

    def _unpack(self, state: NTMState) -> _Carry:
        """Public form -> loop form."""
        layers: list[Tensor] = []
        if state.controller:
            hidden, cell = state.controller
            for layer in range(self.controller_layers):
                layers += [hidden[layer], cell[layer]]
        return _Carry(
            state.memory,
            torch.cat([state.read_weights, state.write_weights], dim=1),
            state.read_vectors.flatten(1),
            tuple(layers),
        )

    def expected_state_shapes(self, batch_size: int) -> NTMState:
        """The shape of every state field for ``batch_size`` (used to validate states)."""
        n, m, c, layers = (
            self.memory_slots,
            self.memory_width,
            self.controller_size,
            self.controller_layers,
        )
        controller = (
            ((layers, batch_size, c), (layers, batch_size, c))
            if self.controller_kind == "lstm"
            else ()
        )
        return NTMState(
            (batch_size, n, m),
            (batch_size, self.read_heads, n),
            (batch_size, self.write_heads, n),
            (batch_size, self.read_heads, m),
            controller,
        )

    def _check_state(self, state: NTMState, batch_size: int) -> None:
        if not isinstance(state, NTMState):
            raise ValueError(f"state must be an NTMState, got {type(state).__name__}")
        expected = self.expected_state_shapes(batch_size)
        if len(state.controller) != len(expected.controller):
            raise ValueError(
                f"state.controller must hold {len(expected.controller)} tensors for a "
                f"{self.controller_kind} controller, got {len(state.controller)}"
            )
        pairs = list(zip(NTMState._fields[:4], state[:4], expected[:4], strict=True))
        pairs += [
            (f"controller[{i}]", t, e)
            for i, (t, e) in enumerate(zip(state.controller, expected.controller, strict=True))
        ]
        dtype = self.initial_reads.dtype
        for name, tensor, shape in pairs:
            if _shape(tensor) != shape:
                raise ValueError(f"state.{name} must have shape {shape}, got {_shape(tensor)}")
            if tensor.dtype != dtype:
                raise ValueError(
                    f"state.{name} must have the model's dtype {dtype}, got {tensor.dtype}"
                )

    # -- one step ---------------------------------------------------------------------------

    def _step(self, projected_input: Tensor, carry: _Carry) -> tuple[_Carry, Tensor]:
        """Advance the loop form by one step.

        Args:
            projected_input: ``[B, gates]``, from ``controller.project_input``.
            carry: the state after the previous step.

        Returns:
            ``(carry, controller_output [B, C])``; the new read vectors are ``carry.reads``.
        """
        # Every recurrent path bounds the gradient it carries back (see bound_gradient): keeps
        # backpropagation through time finite in float32.
        memory = bound_gradient(carry.memory)
        reads = bound_gradient(carry.reads)
        state = tuple(bound_gradient(tensor) for tensor in carry.controller)
        output, controller = self.controller.step(projected_input, reads, state)
        p = self.heads(output)
        previous = bound_gradient(carry.weights)
        weights = address(
            memory, previous, p.keys, p.key_strengths, p.gates, p.shift_weights, p.sharpening
        )  # (B, R + W, N)
        read_weights, write_weights = weights.split([self.read_heads, self.write_heads], dim=1)
        reads = read(memory, read_weights).flatten(1)  # (B, R * M)
        memory = write(memory, write_weights, p.erase, p.add)
        return _Carry(memory, weights, reads, controller), output

    def forward(self, input: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        """One step: ``input [B, I]`` (or ``[I]``) -> ``(logits [B, O], state)``."""
        _check_input(input, self.input_size, self.initial_reads.dtype, batched_rank=2)
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
            state = None if state is None else _add_batch(state)
        carry = self._start(input.size(0), state)
        carry, output = self._step(self.controller.project_input(input), carry)
        logits = self.output(torch.cat([output, carry.reads], dim=1))
        new_state = self._pack(carry)
        if unbatched:
            return logits.squeeze(0), _drop_batch(new_state)
        return logits, new_state

    def _start(self, batch_size: int, state: NTMState | None) -> _Carry:
        if state is None:
            state = self.initial_state(batch_size)
        else:
            self._check_state(state, batch_size)
        return self._unpack(state)

    def extra_repr(self) -> str:
        defaults = {
            "controller": "lstm",
            "controller_size": 100,
            "controller_layers": 1,
            "memory_slots": 128,
            "memory_width": 20,
            "read_heads": 1,
            "write_heads": 1,
            "shift_range": 1,
            "memory_init": "constant",
        }
        values = dict(defaults, controller=self.controller_kind)
        values.update({k: getattr(self, k) for k in defaults if k != "controller"})
        changed = [f"{k}={v!r}" for k, v in values.items() if v != defaults[k]]
        return ", ".join([f"{self.input_size}, {self.output_size}", *changed])


class NTM(nn.Module):
    """A Neural Turing Machine over sequences, used like ``torch.nn.LSTM``.

    Args:
        input_size: channels of the input ``I``.
        output_size: channels of the output ``O``.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_size: width ``C`` of each controller layer.
        controller_layers: number of controller layers ``L``.
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a memory row.
        read_heads: number of read heads ``R``.
        write_heads: number of write heads ``W``.
        shift_range: largest shift ``R`` of location addressing (shifts ``-R..R``).
        memory_init: ``"constant"``, ``"learned"`` or ``"random"`` (see
            :meth:`NTMCell.initial_state`).
        batch_first: input and output as ``[B, T, *]`` instead of ``[T, B, *]``.
        fused: when gradients are needed, run the sequence as one autograd node with a
            hand-written backward pass: on a CPU a compiled C++ kernel (:mod:`ntm.kernel`;
            5-12x faster per training step than plain autograd), elsewhere :mod:`ntm.fused`
            (1.2-1.5x). The same numbers to rounding; a second derivative raises. ``False``
            records every operation with autograd.
        device, dtype: factory arguments for the parameters.

    ``forward(input, state=None) -> (logits, state)``: ``input [T, B, I]`` (or ``[T, I]``
    unbatched), ``logits [T, B, O]`` before the sigmoid, ``state`` an :class:`NTMState`.
    Running ``T`` steps at once equals running them in two calls that pass the state along.

    Example:
        >>> import torch, ntm
        >>> model = ntm.NTM(9, 8, memory_slots=32, memory_width=8, controller_size=16)
        >>> logits, state = model(torch.zeros(5, 3, 9))
        >>> tuple(logits.shape), tuple(state.memory.shape)
        ((5, 3, 8), (3, 32, 8))
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        controller: str = "lstm",
        controller_size: int = 100,
        controller_layers: int = 1,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "constant",
        batch_first: bool = False,
        fused: bool | None = None,
        device=None,
        dtype=None,
        backend: str = "auto",
    ):
        super().__init__()
        if fused is not None:  # the older spelling: fused=True is "auto", False "autograd"
            backend = "auto" if fused else "autograd"
        self.backend = backend
        self.batch_first, self.fused = batch_first, backend != "autograd"
        self.cell = NTMCell(
            input_size,
            output_size,
            controller=controller,
            controller_size=controller_size,
            controller_layers=controller_layers,
            memory_slots=memory_slots,
            memory_width=memory_width,
            read_heads=read_heads,
            write_heads=write_heads,
            shift_range=shift_range,
            memory_init=memory_init,
            device=device,
            dtype=dtype,
        )
        self.input_size, self.output_size = input_size, output_size

    def initial_state(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> NTMState:
        """See :meth:`NTMCell.initial_state`."""
        return self.cell.initial_state(batch_size, generator=generator)

    def forward(self, input: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        logits, state, _ = self._run(input, state, record=False)
        return logits, state

    def trace(
        self, input: Tensor, state: NTMState | None = None
    ) -> tuple[Tensor, NTMState, NTMTrace]:
        """Like :meth:`forward`, also returning every step's weightings (:class:`NTMTrace`).

        The trace is time-major (``[T, B, ...]``; ``[T, ...]`` for unbatched input) whatever
        ``batch_first`` is.
        """
        return self._run(input, state, record=True)

    def _run(self, input: Tensor, state: NTMState | None, record: bool):
        cell = self.cell
        _check_input(input, cell.input_size, cell.initial_reads.dtype, batched_rank=3)
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1)
            state = None if state is None else _add_batch(state)
        elif self.batch_first:
            input = input.transpose(0, 1)
        carry = cell._start(input.size(1), state)
        projected = cell.controller.project_input(input)  # (T, B, gates), all steps at once
        if self.fused and torch.is_grad_enabled() and input.size(0) > 0:
            outputs, reads, weights, fields = run_sequence(cell, projected, carry)
            carry = _Carry(*fields)
        else:
            carry, outputs, reads, weights = self._loop(projected, carry, record)
            outputs = _stack(outputs, input, cell.controller_size)
            reads = _stack(reads, input, cell.read_heads * cell.memory_width)
            heads = cell.read_heads + cell.write_heads
            weights = _stack(weights, input, heads * cell.memory_slots).unflatten(
                -1, (heads, cell.memory_slots)
            )
        # The output layer is not recurrent: one matrix product for the whole sequence.
        logits = cell.output(torch.cat([outputs, reads], dim=-1))  # (T, B, C + R*M) -> (T, B, O)
        new_state = cell._pack(carry)
        trace = None
        if record:
            steps, batch = input.shape[:2]
            read_weights, write_weights = weights.split([cell.read_heads, cell.write_heads], dim=2)
            read_vectors = reads.reshape(steps, batch, cell.read_heads, cell.memory_width)
            trace = NTMTrace(read_weights, write_weights, read_vectors)
        if unbatched:
            logits = logits.squeeze(1)
            new_state = _drop_batch(new_state)
            trace = None if trace is None else NTMTrace(*(t.squeeze(1) for t in trace))
        elif self.batch_first:
            logits = logits.transpose(0, 1)
        return logits, new_state, trace

    def _loop(self, projected: Tensor, carry: _Carry, record: bool):
        """The plain step loop (autograd records every operation); the reference path."""
        outputs, reads, weights = [], [], []
        for projected_step in projected.unbind(0):
            carry, output = self.cell._step(projected_step, carry)
            outputs.append(output)
            reads.append(carry.reads)
            if record:
                weights.append(carry.weights)
        return carry, outputs, reads, [w.flatten(1) for w in weights]

    def extra_repr(self) -> str:
        flags = [("batch_first=True", self.batch_first), ("fused=False", not self.fused)]
        return ", ".join(text for text, on in flags if on)


def _stack(steps: list[Tensor], input: Tensor, width: int) -> Tensor:
    """Stack per-step ``[B, width]`` tensors into ``[T, B, width]`` (also when T = 0)."""
    if steps:
        return torch.stack(steps)
    return input.new_zeros(0, input.size(1), width)


# -- validation and unbatched input ------------------------------------------------------------


def _check_arguments(arguments: dict) -> None:
    if arguments["controller"] not in CONTROLLERS:
        raise ValueError(
            f"controller must be one of {sorted(CONTROLLERS)}, got {arguments['controller']!r}"
        )
    if arguments["memory_init"] not in MEMORY_INITS:
        raise ValueError(
            f"memory_init must be one of {list(MEMORY_INITS)}, got {arguments['memory_init']!r}"
        )
    for name in (
        "input_size",
        "output_size",
        "controller_size",
        "controller_layers",
        "memory_slots",
        "memory_width",
        "read_heads",
        "write_heads",
    ):
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    shift_range = arguments["shift_range"]
    if (
        isinstance(shift_range, bool)
        or not isinstance(shift_range, int)
        or not 0 <= 2 * shift_range < arguments["memory_slots"]
    ):
        raise ValueError(
            "shift_range must be an integer with 0 <= 2 * shift_range < memory_slots, "
            f"got {shift_range!r} with memory_slots={arguments['memory_slots']}"
        )


def _check_input(input: Tensor, input_size: int, dtype: torch.dtype, batched_rank: int) -> None:
    if not isinstance(input, Tensor):
        raise ValueError(f"input must be a Tensor, got {type(input).__name__}")
    if input.dim() not in (batched_rank - 1, batched_rank):
        raise ValueError(
            f"input must be {batched_rank - 1}-D (unbatched) or {batched_rank}-D (batched), "
            f"got {input.dim()}-D with shape {_shape(input)}"
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
    methods = {
        torch.float64: "double",
        torch.float32: "float",
        torch.float16: "half",
        torch.bfloat16: "bfloat16",
    }
    return f".{methods[dtype]}()" if dtype in methods else f".to({dtype})"


def _add_batch(state: NTMState) -> NTMState:
    """Unbatched state -> batch of one (the controller's batch dimension is its second)."""
    return NTMState(
        *(t.unsqueeze(0) for t in state[:4]), tuple(t.unsqueeze(1) for t in state.controller)
    )


def _drop_batch(state: NTMState) -> NTMState:
    return NTMState(
        *(t.squeeze(0) for t in state[:4]), tuple(t.squeeze(1) for t in state.controller)
    )
