"""The Neural Turing Machine: :class:`ntm.MemoryRNN` with an :class:`ntm.access.NTMAccess`.

:class:`NTMCell` (one step) and :class:`NTM` (sequences) keep the constructor, the flat
:class:`NTMState` and :class:`NTMTrace`, and the weight files of the releases before the
core: their ``state_dict`` keeps the names it had (``heads.linear.*``, ``initial_memory``) and
loads those files unchanged, and ``parameters()`` lists the same tensors in the same order
(the optimiser states in resumable checkpoints rely on it).

Shapes, mapped once to the paper's letters: batch ``B``, steps ``T``, memory_slots ``N``,
memory_width ``M``, controller_size ``C``, controller_layers ``L``; the numbers of read and
write heads are spelt out (``read_heads``, ``write_heads``).
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .access.ntm import (
    CONSTANT_MEMORY_VALUE,
    MEMORY_INITS,
    RANDOM_MEMORY_STD,
    NTMAccess,
    NTMAccessState,
)
from .core import MemoryCell, MemoryRNN, MemoryState, MemoryTrace, check_input_dtype

__all__ = ["CONSTANT_MEMORY_VALUE", "MEMORY_INITS", "NTM", "RANDOM_MEMORY_STD", "NTMCell",
           "NTMState", "NTMTrace", "check_input_dtype"]


class NTMState(NamedTuple):
    """Everything an NTM carries from one step to the next; nothing is kept on the module.

    For unbatched input the batch dimension is absent from every field.
    """

    memory: Tensor  # [B, N, M]
    read_weights: Tensor  # [B, read_heads, N]
    write_weights: Tensor  # [B, write_heads, N]
    read_vectors: Tensor  # [B, read_heads, M]
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

    read_weights: Tensor  # [T, B, read_heads, N]
    write_weights: Tensor  # [T, B, write_heads, N]
    read_vectors: Tensor  # [T, B, read_heads, M]


# The state_dict names of the releases before the core, and the core's names for them.
_LEGACY_NAMES = {"heads.linear.weight": "interface.weight", "heads.linear.bias": "interface.bias",
                 "initial_memory": "access.initial_memory"}


class NTMCell(MemoryCell):
    """One step of a Neural Turing Machine, like ``torch.nn.LSTMCell`` for ``torch.nn.LSTM``.

    Takes the same arguments as :class:`NTM` except ``batch_first`` and ``backend``.
    ``forward(input [B, I] or [I], state=None) -> (logits [B, O] or [O], NTMState)``.
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
        # The learned memory is drawn after the controller and the layers (reset_parameters
        # below), as before the core, so that a seed gives the same model as it did.
        with torch.random.fork_rng(devices=_cuda_devices(device)):
            access = NTMAccess(memory_slots, memory_width, read_heads, write_heads, shift_range,
                               memory_init, device=device, dtype=dtype)
        super().__init__(input_size, output_size, access, controller=controller,
                         controller_size=controller_size, controller_layers=controller_layers,
                         device=device, dtype=dtype)
        self.access.reset_parameters()
        # [read_heads, memory_width], as before the core (the core's is flat, [read_size]):
        # the same parameter for the optimiser states in earlier checkpoints.
        self.initial_reads = nn.Parameter(self.initial_reads.detach().reshape(read_heads,
                                                                              memory_width))
        self._register_state_dict_hook(_legacy_state_dict)
        self._register_load_state_dict_pre_hook(_from_legacy_state_dict, with_module=True)

    # The access's sizes, under the names NTMCell always had.
    memory_slots = property(lambda self: self.access.memory_slots)
    memory_width = property(lambda self: self.access.memory_width)
    read_heads = property(lambda self: self.access.read_heads)
    write_heads = property(lambda self: self.access.write_heads)
    shift_range = property(lambda self: self.access.shift_range)
    memory_init = property(lambda self: self.access.memory_init)

    @property
    def initial_memory(self) -> nn.Parameter:
        """The learned initial memory ``[N, M]`` (``memory_init="learned"`` only)."""
        return self.access.initial_memory

    def initial_state(self, batch_size: int, *,
                      generator: torch.Generator | None = None) -> MemoryState:
        """The state before the first step (a :class:`ntm.MemoryState`; :meth:`NTM.initial_state`
        gives the :class:`NTMState`).

        Memory per ``memory_init``: ``"constant"`` fills it with 1e-6; ``"learned"`` uses a
        trained ``[N, M]`` parameter; ``"random"`` draws each element from N(0, 0.5^2)
        afresh for every sequence (from ``generator`` if given). Every head's weighting starts
        on slot 0, so that location addressing has a defined origin; the read vectors start
        from learned biases (zero at initialisation); the controller state starts at zero.
        """
        return super().initial_state(batch_size, generator=generator)

    def expected_state_shapes(self, batch_size: int) -> NTMState:
        """The shape of every :class:`NTMState` field for ``batch_size``."""
        access = self.access.state_shapes(batch_size)
        size, layers = self.controller_size, self.controller_layers
        controller = ((layers, batch_size, size),) * 2 if self.controller.states_per_layer else ()
        return NTMState(*access, (batch_size, self.read_heads, self.memory_width), controller)

    # -- NTMState <-> the core's MemoryState ----------------------------------------------

    def _to_core(self, state: NTMState, batch_size: int) -> MemoryState:
        self._check_ntm_state(state, batch_size)
        return MemoryState(state.controller, NTMAccessState(*state[:3]),
                           state.read_vectors.flatten(-2))

    def _from_core(self, state: MemoryState) -> NTMState:
        reads = state.reads.unflatten(-1, (self.read_heads, self.memory_width))
        return NTMState(*state.access, reads, state.controller)

    def _add_batch(self, state: NTMState) -> NTMState:
        """Unbatched state -> batch of one (the controller's batch dimension is its second)."""
        if not isinstance(state, NTMState):
            raise ValueError(f"state must be an NTMState, got {type(state).__name__}")
        return NTMState(*(t.unsqueeze(0) for t in state[:4]),
                        tuple(t.unsqueeze(1) for t in state.controller))

    def _drop_batch(self, state: NTMState) -> NTMState:
        return NTMState(*(t.squeeze(0) for t in state[:4]),
                        tuple(t.squeeze(1) for t in state.controller))

    def _check_ntm_state(self, state: NTMState, batch_size: int) -> None:
        if not isinstance(state, NTMState):
            raise ValueError(f"state must be an NTMState, got {type(state).__name__}")
        expected = self.expected_state_shapes(batch_size)
        if len(state.controller) != len(expected.controller):
            raise ValueError(
                f"state.controller must hold {len(expected.controller)} tensors for a "
                f"{self.controller_kind} controller, got {len(state.controller)}"
            )
        pairs = list(zip(NTMState._fields[:4], state[:4], expected[:4], strict=True))
        pairs += [(f"controller[{i}]", t, e) for i, (t, e)
                  in enumerate(zip(state.controller, expected.controller, strict=True))]
        dtype = self.initial_reads.dtype
        for name, tensor, shape in pairs:
            if tuple(tensor.shape) != shape:
                raise ValueError(f"state.{name} must have shape {shape}, got "
                                 f"{tuple(tensor.shape)}")
            if tensor.dtype != dtype:
                raise ValueError(
                    f"state.{name} must have the model's dtype {dtype}, got {tensor.dtype}"
                )

    def extra_repr(self) -> str:
        return _changed_arguments(self)


def _cuda_devices(device) -> list:
    """The CUDA devices whose random state ``fork_rng`` must keep for ``device``."""
    device = torch.device(device) if device is not None else None
    return [device] if device is not None and device.type == "cuda" else []


def _legacy_state_dict(module: NTMCell, state_dict: dict, prefix: str, local_metadata) -> None:
    """state_dict hook: the core's names -> the names (and order) of the releases before it."""
    renamed = {prefix + new: prefix + old for old, new in _LEGACY_NAMES.items()}
    items = [(renamed.get(key, key), value) for key, value in state_dict.items()]
    memory = [item for item in items if item[0] == prefix + "initial_memory"]
    items = [item for item in items if item[0] != prefix + "initial_memory"]
    # Before the core the learned memory came right after the initial reads.
    at = next(i for i, item in enumerate(items) if item[0] == prefix + "initial_reads") + 1
    state_dict.clear()
    state_dict.update(items[:at] + memory + items[at:])


def _from_legacy_state_dict(module: NTMCell, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: accept both the legacy names and the core's."""
    for old, new in _LEGACY_NAMES.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class NTM(MemoryRNN):
    """A Neural Turing Machine over sequences, used like ``torch.nn.LSTM``.

    Args:
        input_size: channels of the input ``I``.
        output_size: channels of the output ``O``.
        controller: ``"lstm"`` or ``"feedforward"``.
        controller_size: width ``C`` of each controller layer.
        controller_layers: number of controller layers ``L``.
        memory_slots: rows ``N`` of the memory.
        memory_width: width ``M`` of a memory row.
        read_heads: number of read heads.
        write_heads: number of write heads.
        shift_range: largest shift of location addressing (shifts ``-shift_range..shift_range``).
        memory_init: ``"constant"``, ``"learned"`` or ``"random"`` (see
            :meth:`NTMCell.initial_state`).
        batch_first: input and output as ``[B, T, *]`` instead of ``[T, B, *]``.
        fused: the older spelling of ``backend``: ``True`` is ``"auto"``, ``False``
            ``"autograd"``; when given, it decides.
        device, dtype: factory arguments for the parameters.
        backend: ``"auto"`` (the default: when gradients are needed, on a CPU the compiled
            C++ kernel, 5-12x faster per training step than plain autograd; elsewhere the
            Python fused node, 1.2-1.5x), ``"kernel"``, ``"python"`` or ``"autograd"`` (every
            operation recorded by autograd; needed for double backward). See
            :mod:`ntm.backends`. The same numbers to rounding.

    ``forward(input, state=None) -> (logits, state)``: ``input [T, B, I]`` (or ``[T, I]``
    unbatched), ``logits [T, B, O]`` before the sigmoid, ``state`` an :class:`NTMState`.
    Running ``T`` steps at once equals running them in two calls that pass the state along.
    ``lengths=`` or a PackedSequence input run sequences of different lengths, as in
    :class:`ntm.MemoryRNN`.

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
        nn.Module.__init__(self)
        if fused is not None:
            backend = "auto" if fused else "autograd"
        cell = NTMCell(
            input_size, output_size, controller=controller, controller_size=controller_size,
            controller_layers=controller_layers, memory_slots=memory_slots,
            memory_width=memory_width, read_heads=read_heads, write_heads=write_heads,
            shift_range=shift_range, memory_init=memory_init, device=device, dtype=dtype,
        )  # fmt: skip
        self._attach(cell, batch_first=batch_first, backend=backend)

    def initial_state(self, batch_size: int, *,
                      generator: torch.Generator | None = None) -> NTMState:
        """See :meth:`NTMCell.initial_state`."""
        return super().initial_state(batch_size, generator=generator)

    def forward(self, input: Tensor | PackedSequence, state: NTMState | None = None, *,
                lengths: Tensor | list[int] | None = None
                ) -> tuple[Tensor | PackedSequence, NTMState]:
        return super().forward(input, state, lengths=lengths)

    def trace(
        self, input: Tensor | PackedSequence, state: NTMState | None = None, *,
        lengths: Tensor | list[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, NTMState, NTMTrace]:
        """Like :meth:`forward`, also returning every step's weightings (:class:`NTMTrace`).

        The trace is time-major (``[T, B, ...]``; ``[T, ...]`` for unbatched input) whatever
        ``batch_first`` is, and zero past each sequence's end where they differ in length.
        """
        return super().trace(input, state, lengths=lengths)

    def _public_trace(self, trace: MemoryTrace) -> NTMTrace:
        cell = self.cell
        reads = trace.reads.unflatten(-1, (cell.read_heads, cell.memory_width))
        return NTMTrace(trace.access.read_weights, trace.access.write_weights, reads)


def _changed_arguments(cell: NTMCell) -> str:
    """``extra_repr``: the sizes, then every argument that differs from its default."""
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(NTMCell.__init__).parameters.items()
                if parameter.kind is parameter.KEYWORD_ONLY and name not in ("device", "dtype")}
    values = {name: getattr(cell, name) for name in defaults if name != "controller"}
    values["controller"] = cell.controller_kind
    changed = [f"{k}={values[k]!r}" for k in defaults if values[k] != defaults[k]]
    return ", ".join([f"{cell.input_size}, {cell.output_size}", *changed])
