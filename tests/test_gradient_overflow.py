"""Gradients stay finite where sharpening makes addressing chaotic (cases seen in training).

The first fixture holds the weights of an LSTM-controller NTM after 488 updates of ngrams (lr
1e-3, seed 1) and the batch of update 489. Its loss is finite (147 bits), but the gradient
flowing back along the weightings grew 6-fold per step and overflowed float32, so that update
turned every weight into NaN; float64 gave gradients below 40. The second holds a feedforward
NTM after 2,610 updates of ngrams (lr 1e-4 from 3e-4's recipe, seed 1) and the batch of update
2,611: with the weightings' path bounded, the gradient still reached 1e35 (float64) through the
memory and the read vectors and became NaN in float32. ``addressing.bound_gradient`` bounds
every path the state carries back; every path must give finite gradients, and the same ones.

"The same ones" needs care: the chaos that overflowed also amplifies rounding. In float32 the
gradients of every path are 1,000-fold off their float64 values (the bound, not the math,
keeps them finite), and two paths agree only where they round alike: plain autograd and the
Python fused node, which run the same ATen forward. The C++ kernel (ntm/kernel.py) rounds
differently. Even float64 rounding grows chaotically along the feedforward model's 200 steps
(the forward outputs of two implementations part by 1e-11 at step 100 and 1e-3 at step 130),
so the kernel is compared with plain autograd in float64 on the first 60 steps, where they
agree to 1e-6; on the whole sequence, its gradients must be finite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ntm import NTM, kernel
from ntm.addressing import CARRY_GRAD_BOUND, bound_gradient
from ntm.metrics import sequence_loss

DATA = Path(__file__).parent / "data"
FIXTURES = {"lstm": DATA / "ngrams_gradient_overflow.safetensors",
            "feedforward": DATA / "ngrams_ff_gradient_overflow.safetensors"}


def _gradients(controller: str, fused: bool, *, cpu_kernel: bool = True,
               dtype=torch.float32, steps: int | None = None) -> dict[str, torch.Tensor]:
    tensors = load_file(FIXTURES[controller])
    for name in ("inputs", "targets", "mask"):
        tensors[name] = tensors[name][:steps]
    # The ngrams models: controller 100, memory 128 x 20, one read and one write head.
    model = NTM(1, 1, controller=controller, fused=fused, dtype=dtype)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    enabled = kernel.is_enabled()
    kernel.set_enabled(cpu_kernel)
    try:
        logits, _ = model(tensors["inputs"].to(dtype))
    finally:
        kernel.set_enabled(enabled)
    sequence_loss(logits, tensors["targets"].to(dtype), tensors["mask"]).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def _assert_near(gradients, expected, tolerance) -> None:
    for name, gradient in gradients.items():
        assert torch.isfinite(gradient).all(), name
        assert (gradient - expected[name]).norm() <= tolerance * expected[name].norm(), name


@pytest.mark.parametrize("controller", list(FIXTURES))
def test_the_recorded_overflow_cases_give_finite_equal_gradients(controller) -> None:
    plain = _gradients(controller, False)
    # Float32: finite on every path; the Python node as plain autograd to about 1%.
    _assert_near(_gradients(controller, True, cpu_kernel=False), plain, 0.05)
    for gradient in _gradients(controller, True).values():
        assert torch.isfinite(gradient).all()
    # Float64, before the chaos: the kernel, the Python node and plain autograd agree.
    plain = _gradients(controller, False, dtype=torch.float64, steps=60)
    for cpu_kernel in (True, False):
        fused = _gradients(controller, True, cpu_kernel=cpu_kernel, dtype=torch.float64, steps=60)
        _assert_near(fused, plain, 1e-6)


def test_bound_gradient_is_the_identity_forward_and_clamps_backward() -> None:
    x = torch.tensor([0.5, -2.0, 3.0], requires_grad=True)
    y = bound_gradient(x, bound=1.0)
    assert torch.equal(y, x)
    (y * torch.tensor([0.5, -7.0, 2.0])).sum().backward()
    assert x.grad.tolist() == [0.5, -1.0, 1.0]
    assert CARRY_GRAD_BOUND == 1e6


@pytest.mark.parametrize("path", ["kernel", "python", "plain"])
@pytest.mark.parametrize("field", ["memory", "read_weights", "write_weights", "read_vectors",
                                   "controller"])
def test_the_gradient_reaching_the_first_state_is_bounded(field, path) -> None:
    fused = path != "plain"
    enabled = kernel.is_enabled()
    kernel.set_enabled(path == "kernel")
    try:
        _check_the_bound(field, fused)
    finally:
        kernel.set_enabled(enabled)


def _check_the_bound(field, fused) -> None:
    gradients = []
    for scale in (1e12, 1e18):  # gradients far past the bound
        torch.manual_seed(0)
        model = NTM(3, 2, memory_slots=8, memory_width=4, controller_size=8, fused=fused,
                    dtype=torch.float64)
        state = model.initial_state(2)
        if field == "controller":
            tensors = tuple(t.detach().clone().requires_grad_() for t in state.controller)
        else:
            tensors = (getattr(state, field).detach().clone().requires_grad_(),)
        given = state._replace(**{field: tensors if field == "controller" else tensors[0]})
        inputs = torch.randn(6, 2, 3, dtype=torch.float64)
        logits, _ = model(inputs, given)
        (logits.sum() * scale).backward()
        gradients.append(torch.cat([t.grad.flatten() for t in tensors]))
    assert gradients[0].abs().max() <= CARRY_GRAD_BOUND
    torch.testing.assert_close(gradients[0], gradients[1])  # the bound, not the scale, rules
