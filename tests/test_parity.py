"""The parity suite: every fast path of every access against plain autograd.

For each (access, backend, dtype) it compares the outputs, every field of the final state and
the gradients of a loss that reaches all of them (with respect to the parameters, the input
and a given starting state) with ``backend="autograd"``: 1e-10 in float64, float32 to its
rounding. A backend registered for an access that has no entry in ``SMALL_ACCESSES`` fails
here, so no fast path goes unchecked. Besides the registered backends, the fast paths that are
a model's own default (:data:`DEFAULT_FAST_PATHS`): sparse access memory changes its memory
in place under ``backend="auto"`` and copies it at every step under ``"autograd"``.
"""

from __future__ import annotations

import pytest
import torch
from helpers import node_names

import ntm
from ntm import backends
from ntm.access import DNCAccess, NTMAccess, SparseAccess
from ntm.backends.dnc_kernel import SupportedDNCAccess

# A small memory of each access type, built for a dtype: the sizes the parity runs use.
SMALL_ACCESSES = {
    NTMAccess: lambda dtype: NTMAccess(7, 4, read_heads=2, write_heads=2, shift_range=1,
                                       memory_init="learned", dtype=dtype),
    # The DNCs the DNC's kernel runs (one write head, no options); no parameters of its own.
    SupportedDNCAccess: lambda dtype: DNCAccess(7, 4, read_heads=2),
    # More rows than a step touches (2 heads x 3 read, 6 written), so that rows go unread.
    SparseAccess: lambda dtype: SparseAccess(9, 4, read_heads=2, sparse_reads=3),
}
# Fast paths that are not registered backends: the access -> its model's backend that runs it.
DEFAULT_FAST_PATHS = {SparseAccess: "auto"}
# The autograd node each fast path leaves in the graph, where it is not "...SequenceBackward".
FAST_NODES = {SparseAccess: "_SparseStepBackward"}
TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-10},
              torch.float32: {"atol": 2e-5, "rtol": 2e-4}}
CASES = [(access_type, name, dtype)
         for access_type, name in [*((b.access_type, b.name) for b in backends.registered()),
                                   *DEFAULT_FAST_PATHS.items()]
         for dtype in (torch.float64, torch.float32)]


def _id(case) -> str:
    access_type, name, dtype = case
    return f"{access_type.__name__}-{name}-{str(dtype).removeprefix('torch.')}"


def _flat(state) -> list[torch.Tensor]:
    """Every tensor of a (nested) state, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for field in state for t in _flat(field)]


def _model(access_type, dtype, controller, backend):
    torch.manual_seed(0)
    sizes = {"controller": controller, "controller_size": 6, "controller_layers": 2,
             "dtype": dtype, "backend": backend}
    access = SMALL_ACCESSES[access_type](dtype)
    if access_type is SparseAccess:  # ntm.SAM holds the switch between in place and copying
        return ntm.SAM(5, 3, memory_slots=access.memory_slots, memory_width=access.memory_width,
                       read_heads=access.read_heads, sparse_reads=access.sparse_reads, **sizes)
    return ntm.MemoryRNN(5, 3, access, **sizes)


def _start_state(model, batch, dtype):
    """A non-trivial state: the model's own after a few random steps, its floating-point
    tensors as leaves that want a gradient (row numbers, int64, as they are)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        _, state = model(torch.randn(4, batch, 5, generator=generator, dtype=dtype))
    tensors = [t.detach().clone() for t in _flat(state)]
    leaves = [t.requires_grad_() for t in tensors if t.is_floating_point()]
    return _rebuild(state, iter(tensors)), leaves


def _rebuild(template, leaves):
    if isinstance(template, torch.Tensor):
        return next(leaves)
    fields = [_rebuild(field, leaves) for field in template]
    return type(template)(*fields) if hasattr(template, "_fields") else type(template)(fields)


def _run(model, inputs, state, leaves):
    logits, final = model(inputs, state)
    loss = logits.sin().sum() + sum((t * (i + 1)).pow(2).sum() for i, t in
                                    enumerate(_flat(final)))
    wrt = [*model.parameters(), inputs, *leaves]
    return [logits, *_flat(final)], torch.autograd.grad(loss, wrt, allow_unused=True)


def test_every_backend_has_a_parity_case():
    assert CASES, "no backend is registered"
    missing = {b.access_type for b in backends.registered()} - set(SMALL_ACCESSES)
    assert not missing, f"add a small access for {missing} to SMALL_ACCESSES"


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@pytest.mark.parametrize("batch, given_state", [(1, False), (5, True)])  # kernel: batch >= 4
def test_backend_matches_autograd(case, controller, batch, given_state):
    access_type, name, dtype = case
    fast = _model(access_type, dtype, controller, backend=name)
    reference = _model(access_type, dtype, controller, backend="autograd")
    inputs = torch.randn(6, batch, 5, dtype=dtype, generator=torch.Generator().manual_seed(1))
    results = []
    for model in (fast, reference):
        state, leaves = _start_state(model, batch, dtype) if given_state else (None, [])
        results.append(_run(model, inputs.clone().requires_grad_(), state, leaves))
    (fast_values, fast_grads), (values, grads) = results
    for a, b in zip(fast_values, values, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCES[dtype])
    for a, b in zip(fast_grads, grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TOLERANCES[dtype])


@pytest.mark.parametrize("case", [c for c in CASES if c[2] == torch.float64], ids=_id)
def test_backend_really_ran(case):
    """The backend under test ran (its node is in the graph), not the plain loop."""
    access_type, name, dtype = case
    fast_node = FAST_NODES.get(access_type, "SequenceBackward")
    names = _node_names(_model(access_type, dtype, "lstm", backend=name), dtype)
    assert any(n.endswith(fast_node) for n in names), names
    reference = _node_names(_model(access_type, dtype, "lstm", backend="autograd"), dtype)
    assert not any(n.endswith(fast_node) for n in reference), reference


def _node_names(model, dtype) -> set[str]:
    """The class names of every autograd node behind a short run's logits."""
    logits, _ = model(torch.randn(3, 2, 5, dtype=dtype))
    return node_names(logits)
