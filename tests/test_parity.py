"""The parity suite: every registered backend of every access against plain autograd.

For each (access, backend, dtype) it compares the outputs, every field of the final state and
the gradients of a loss that reaches all of them (with respect to the parameters, the input
and a given starting state) with ``backend="autograd"``: 1e-10 in float64, float32 to its
rounding. A backend registered for an access that has no entry in ``SMALL_ACCESSES`` fails
here, so no fast path goes unchecked.
"""

from __future__ import annotations

import pytest
import torch

import ntm
from ntm import backends
from ntm.access import DNCAccess, NTMAccess
from ntm.backends.dnc_kernel import SupportedDNCAccess

# A small memory of each access type, built for a dtype: the sizes the parity runs use.
SMALL_ACCESSES = {
    NTMAccess: lambda dtype: NTMAccess(7, 4, read_heads=2, write_heads=2, shift_range=1,
                                       memory_init="learned", dtype=dtype),
    # The DNCs the DNC's kernel runs (one write head, no options); no parameters of its own.
    SupportedDNCAccess: lambda dtype: DNCAccess(7, 4, read_heads=2),
}
TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-10},
              torch.float32: {"atol": 2e-5, "rtol": 2e-4}}
CASES = [(b.access_type, b.name, dtype) for b in backends.registered()
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
    return ntm.MemoryRNN(5, 3, SMALL_ACCESSES[access_type](dtype), controller=controller,
                         controller_size=6, controller_layers=2, dtype=dtype, backend=backend)


def _start_state(model, batch, dtype):
    """A non-trivial state: the model's own after a few random steps, as a leaf."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        _, state = model(torch.randn(4, batch, 5, generator=generator, dtype=dtype))
    leaves = [t.detach().clone().requires_grad_() for t in _flat(state)]
    return _rebuild(state, iter(leaves)), leaves


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
    model = _model(access_type, dtype, "lstm", backend=name)
    logits, _ = model(torch.randn(3, 2, 5, dtype=dtype))
    names, stack, seen = set(), [logits.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack += [next_node for next_node, _ in node.next_functions]
    assert any(n.endswith("SequenceBackward") for n in names), names
