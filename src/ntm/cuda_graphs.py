"""Training updates captured as CUDA graphs: one graph launch per update instead of thousands.

On a GPU every time step of an NTM is a few hundred tiny kernels, so the CPU's launch time is
the whole cost of an update: 110-135 ms per update of copy (41 steps) on an H100 or H200,
whatever the batch from 1 to 1,024 (``benchmarks/gpu.sh``). A CUDA graph records those
launches once and replays them as one. :class:`GraphedUpdate` captures the whole update
(forward, loss, backward, clipping and the optimiser's step) once per input shape and replays
it after that.

It computes what the eager update computes, up to rounding: the same kernels in the same order
on the same weights. Two differences follow from replaying a recording. The first update runs
eagerly (it creates the gradients and the optimiser's state, which a capture may not do), and
an update whose loss is NaN or infinite still changes the weights (eager training skips it),
which is harmless where a non-finite loss ends the run, as it does in
:func:`ntm.training.train`.

Example (on a CUDA device; ``model`` and ``optimizer`` built there, the optimiser with
``capturable=True``)::

    update = GraphedUpdate(model, optimizer, sequence_loss,
                           after_backward=lambda: clip_grad_value_(params, 10.0))
    for batch in batches:
        loss = update(batch.inputs, batch.targets, batch.mask)  # a tensor; .item() to read it
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["GraphedUpdate", "capture_blocker"]

# PyTorch warns when a capturable optimiser steps outside a capture: the eager first update.
_CAPTURABLE_WARNING = r".*capturable=True.*"


def capture_blocker(model: nn.Module) -> str | None:
    """The class name of the first submodule of ``model`` whose step cannot be captured in a
    CUDA graph (``graph_capturable = False``: it works on the host too, e.g.
    :class:`ntm.access.SparseAccess`), or None where the whole model can be."""
    for module in model.modules():
        if not getattr(module, "graph_capturable", True):
            return type(module).__name__
    return None


class _Captured(NamedTuple):
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]  # the static tensors each replay reads; copied into before it
    loss: Tensor  # the static tensor the replay writes the loss to


class GraphedUpdate:
    """One training update of ``model``, replayed from a CUDA graph per input shape.

    Args:
        model: a module on a CUDA device whose ``forward(inputs)`` returns ``(outputs, state)``
            (``ntm.NTM``, ``ntm.LSTMBaseline``).
        optimizer: its optimiser, built with ``capturable=True`` (PyTorch refuses to capture
            the step of one that is not).
        loss_fn: ``loss_fn(outputs, *targets) -> scalar``, e.g. :func:`ntm.metrics.sequence_loss`.
        after_backward: called between ``backward`` and the optimiser's step, e.g. gradient
            clipping; captured too, so it must run on the device only (no ``.item()``).
        max_graphs: input shapes captured at most; an update of a further shape runs eagerly.

    Calling it with ``(inputs, *targets)`` (tensors of any device; a new shape is captured on
    first sight, sequences of different lengths each once) returns the loss of that update, a
    0-d tensor on the device. Graphs of different shapes share one memory pool, so only the
    largest one's activations are held; the tensors returned are overwritten by later updates.

    The graphs write to the tensors they were captured with: the parameters, their gradients
    and the optimiser's state. Gradients set to None between updates (``zero_grad()``) are put
    back before a replay; if the parameters or the optimiser's state tensors are replaced (e.g.
    ``optimizer.load_state_dict``), or a parameter group's learning rate changes (a float rate
    is a constant of the captured step), every graph is dropped and captured again; so change
    the rate in steps (:func:`ntm.training.scheduled_lr` does), not at every update.

    Raises:
        ValueError: ``model`` is not on a CUDA device, or holds a module that cannot be
            captured (:func:`capture_blocker`).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[..., Tensor],
                 after_backward: Callable[[], None] | None = None, *,
                 max_graphs: int = 64) -> None:
        blocker = capture_blocker(model)
        if blocker is not None:
            raise ValueError(f"a CUDA graph cannot capture a step of {blocker}: it runs on the "
                             "host as well; train it eagerly")
        self.parameters = list(model.parameters())
        if not self.parameters or self.parameters[0].device.type != "cuda":
            raise ValueError("GraphedUpdate needs a model on a CUDA device")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.after_backward = after_backward or (lambda: None)
        self.device = self.parameters[0].device
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = None
        self._gradients: list[Tensor | None] | None = None  # those the graphs accumulate into
        self._state: list[Tensor] = []  # the optimiser's tensors the graphs update
        self._rates: list = []  # the learning rates the graphs were captured with

    @property
    def captured_shapes(self) -> list[tuple]:
        """The input shapes captured so far, one graph each."""
        return list(self._graphs)

    def __call__(self, inputs: Tensor, *targets: Tensor) -> Tensor:
        tensors = tuple(t.to(self.device, non_blocking=True) for t in (inputs, *targets))
        if self._gradients is not None and not self._same_state():
            self._graphs.clear()  # they would write to tensors that are no longer used
            self._pool, self._gradients = None, None
        if self._gradients is None:  # creates the gradients and the optimiser's state
            loss = self._eager(tensors, first=True)
            self._gradients = [p.grad for p in self.parameters]
            self._state = self._optimizer_tensors()
            self._rates = self._learning_rates()
            return loss
        for parameter, gradient in zip(self.parameters, self._gradients, strict=True):
            parameter.grad = gradient  # a no-op unless zero_grad() set it to None
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        captured = self._graphs.get(key)
        if captured is None:
            if len(self._graphs) >= self.max_graphs:
                return self._eager(tensors, first=False)
            captured = self._graphs[key] = self._capture(tensors)
        for static, given in zip(captured.inputs, tensors, strict=True):
            static.copy_(given)
        captured.graph.replay()
        return captured.loss

    def _optimizer_tensors(self) -> list[Tensor]:
        return [value for state in self.optimizer.state.values() for value in state.values()
                if torch.is_tensor(value)]

    def _learning_rates(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _same_state(self) -> bool:
        # A float learning rate is a constant inside a captured step: a new rate needs new graphs.
        current, parameters = self._optimizer_tensors(), list(self.model.parameters())
        return (self._learning_rates() == self._rates
                and len(current) == len(self._state) and len(parameters) == len(self.parameters)
                and all(a is b for a, b in zip(current, self._state, strict=True))
                and all(a is b for a, b in zip(parameters, self.parameters, strict=True)))

    def _eager(self, tensors: tuple[Tensor, ...], first: bool) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CAPTURABLE_WARNING)
            return self._update(*tensors, first=first).detach()

    def _update(self, inputs: Tensor, *targets: Tensor, first: bool = False) -> Tensor:
        outputs, _ = self.model(inputs)
        loss = self.loss_fn(outputs, *targets)
        # After the first update the gradients are zeroed in place, never set to None: every
        # captured backward accumulates into the tensors that the captured step reads.
        self.optimizer.zero_grad(set_to_none=first)
        loss.backward()
        self.after_backward()
        self.optimizer.step()
        return loss

    def _capture(self, tensors: tuple[Tensor, ...]) -> _Captured:
        static = tuple(t.clone() for t in tensors)
        with torch.cuda.device(self.device):
            self._warm_up(static)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                loss = self._update(*static)
        self._pool = graph.pool()
        return _Captured(graph, static, loss.detach())

    def _warm_up(self, static: tuple[Tensor, ...]) -> None:
        """A forward and backward on a side stream, as PyTorch asks before a capture (lazy
        initialisation of kernels and workspaces must not happen inside one). It changes no
        weight, and the random state (random memory draws on the device) is put back. Its
        autograd graph dies with this frame: alive, it would tie the gradients' accumulation
        to the side stream during the capture."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.random.fork_rng(devices=[self.device]), torch.cuda.stream(side):
            outputs, _ = self.model(static[0])
            self.loss_fn(outputs, *static[1:]).backward()
            self.optimizer.zero_grad(set_to_none=False)
        torch.cuda.current_stream(self.device).wait_stream(side)
