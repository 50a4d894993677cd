"""The key tests on CUDA: forward/backward, state split, gradcheck, agreement with the CPU.

Skipped where CUDA is not available (CI has no GPU). The CPU numbers are the reference: the
same parameters on both devices must give the same results to rounding.
"""

from __future__ import annotations

import pytest
import torch

from ntm import NTM, NTMCell, NTMState
from ntm.addressing import address
from ntm.memory import read, write

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

DEVICE = torch.device("cuda")
SMALL = {"memory_slots": 16, "memory_width": 8, "controller_size": 16}
TINY = {"memory_slots": 5, "memory_width": 3, "controller_size": 4, "dtype": torch.float64}
FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])


def state_fields(state: NTMState) -> list[torch.Tensor]:
    return [*state[:4], *state.controller]


def on(state: NTMState, device) -> NTMState:
    return NTMState(*(t.to(device) for t in state[:4]), tuple(t.to(device) for t in state[4]))


def cpu_and_cuda_models(seed: int = 0, **arguments) -> tuple[NTM, NTM]:
    torch.manual_seed(seed)
    cpu = NTM(9, 8, **{**SMALL, **arguments})
    cuda = NTM(9, 8, **{**SMALL, **arguments}, device=DEVICE)
    cuda.load_state_dict(cpu.state_dict())
    return cpu, cuda


def test_addressing_and_memory_match_the_cpu() -> None:
    torch.manual_seed(0)
    b, h, n, m = 3, 2, 10, 4
    arguments = [
        torch.randn(b, n, m, dtype=torch.float64),  # memory
        torch.softmax(torch.randn(b, h, n, dtype=torch.float64), -1),  # previous
        torch.randn(b, h, m, dtype=torch.float64),  # keys
        torch.rand(b, h, dtype=torch.float64) * 10,  # strengths
        torch.rand(b, h, dtype=torch.float64),  # gate
        torch.softmax(torch.randn(b, h, 5, dtype=torch.float64), -1),  # shift weights, R = 2
        1 + torch.rand(b, h, dtype=torch.float64) * 4,  # sharpening
    ]
    weights = address(*arguments)
    weights_cuda = address(*(t.to(DEVICE) for t in arguments))
    assert weights_cuda.device.type == "cuda"
    torch.testing.assert_close(weights_cuda.cpu(), weights, rtol=1e-12, atol=1e-14)
    memory = arguments[0]
    erase, add = torch.rand(b, h, m, dtype=torch.float64), torch.randn(b, h, m, dtype=torch.float64)
    torch.testing.assert_close(read(memory.to(DEVICE), weights_cuda).cpu(), read(memory, weights))
    for heads in (1, 2):
        args = (memory, weights[:, :heads], erase[:, :heads], add[:, :heads])
        torch.testing.assert_close(
            write(*(t.to(DEVICE) for t in args)).cpu(), write(*args), rtol=1e-12, atol=1e-14
        )


def test_sharpen_of_uniform_weights_stays_finite_on_cuda() -> None:
    weights = address(
        torch.zeros(2, 128, 20, device=DEVICE),  # zero memory: uniform content weights
        torch.full((2, 1, 128), 1.0 / 128, device=DEVICE),
        torch.zeros(2, 1, 20, device=DEVICE),  # zero key
        torch.full((2, 1), 20.0, device=DEVICE),
        torch.full((2, 1), 0.5, device=DEVICE),
        torch.full((2, 1, 3), 1.0 / 3, device=DEVICE),
        torch.full((2, 1), 21.0, device=DEVICE),
    )
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, device=DEVICE))


@FUSED
@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_forward_and_backward_match_the_cpu(controller, fused) -> None:
    cpu, cuda = cpu_and_cuda_models(
        controller=controller, read_heads=2, write_heads=2, fused=fused, dtype=torch.float64
    )
    x = torch.randn(12, 3, 9, dtype=torch.float64)
    losses = []
    for model, device in ((cpu, "cpu"), (cuda, DEVICE)):
        logits, state = model(x.to(device))
        assert logits.device.type == torch.device(device).type
        assert all(t.device == logits.device for t in state_fields(state))
        loss = logits.square().mean() + state.memory.square().mean()
        loss.backward()
        losses.append((logits, state))
    torch.testing.assert_close(losses[1][0].cpu(), losses[0][0], rtol=1e-9, atol=1e-10)
    for index, (a, b) in enumerate(
        zip(state_fields(losses[1][1]), state_fields(losses[0][1]), strict=True)
    ):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-10, msg=f"state field {index}")
    for (name, p_cpu), p_cuda in zip(cpu.named_parameters(), cuda.parameters(), strict=True):
        assert p_cuda.grad is not None and p_cuda.grad.device.type == "cuda", name
        torch.testing.assert_close(p_cuda.grad.cpu(), p_cpu.grad, rtol=1e-8, atol=1e-10)


@FUSED
def test_float32_training_steps_stay_finite_on_cuda(fused) -> None:
    torch.manual_seed(0)
    model = NTM(9, 8, **SMALL, fused=fused, device=DEVICE)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(50, 4, 9, device=DEVICE)
    targets = torch.randint(0, 2, (50, 4, 8), device=DEVICE).float()
    for _ in range(3):
        optimizer.zero_grad()
        logits, state = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()


@FUSED
@pytest.mark.parametrize("memory_init", ["constant", "learned", "random"])
def test_state_split_on_cuda(memory_init, fused) -> None:
    torch.manual_seed(0)
    model = NTM(
        9, 8, **SMALL, memory_init=memory_init, fused=fused, dtype=torch.float64, device=DEVICE
    )
    x = torch.randn(7, 2, 9, dtype=torch.float64, device=DEVICE)
    start = model.initial_state(2, generator=torch.Generator(device=DEVICE).manual_seed(1))
    assert all(t.device.type == "cuda" for t in state_fields(start))
    logits, state = model(x, start)
    first, middle = model(x[:3], start)
    second, end = model(x[3:], middle)
    torch.testing.assert_close(torch.cat([first, second]), logits, rtol=1e-12, atol=1e-12)
    for a, b in zip(state_fields(end), state_fields(state), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_cell_and_unbatched_input_on_cuda() -> None:
    torch.manual_seed(0)
    model = NTM(9, 8, **SMALL, device=DEVICE)
    cell = NTMCell(9, 8, **SMALL, device=DEVICE)
    cell.load_state_dict(model.cell.state_dict())
    x = torch.randn(4, 9, device=DEVICE)
    logits, state = model(x)
    step_state = None
    for t in range(4):
        step, step_state = cell(x[t], step_state)
        torch.testing.assert_close(step, logits[t], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(step_state.memory, state.memory, rtol=1e-4, atol=1e-5)


@FUSED
def test_gradcheck_tiny_ntm_on_cuda(fused) -> None:
    torch.manual_seed(0)
    model = NTM(3, 2, read_heads=2, memory_init="learned", fused=fused, device=DEVICE, **TINY)
    names = [name for name, _ in model.named_parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)

    def run(x, *parameters):
        values = dict(zip(names, parameters, strict=True))
        logits, state = torch.func.functional_call(model, values, (x,))
        return logits, state.memory

    parameters = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(run, (x, *parameters))
