"""The DNC and sparse access memory on CUDA: the same parameters on the device and on the CPU
give the same outputs, final states and gradients; split runs, variable lengths, gradcheck and
``ntm train`` on the device.

Skipped where CUDA is not available (CI has no GPU; ``bash benchmarks/gpu.sh`` runs them).
``NTM_TEST_DEVICE=cpu pytest tests/test_cuda_memories.py`` runs the same checks with the CPU
standing in for the device, which is how their code is checked on a machine without a GPU:
the DNC there takes plain autograd, the path it takes on CUDA, against the CPU's kernel.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from helpers import sequence_of

import ntm
from ntm.access import SparseAccess, sparse_index
from ntm.cli import main
from ntm.rundir import read_metrics

DEVICE = torch.device(os.environ.get("NTM_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                reason="CUDA is not available")
HAS_FAISS = sparse_index.faiss_missing() is None

DNC_SIZES = {"memory_slots": 8, "memory_width": 4, "controller_size": 12, "read_heads": 2}
SAM_SIZES = {"memory_slots": 16, "memory_width": 4, "controller_size": 12, "read_heads": 2,
             "sparse_reads": 3}
MODELS = {
    "dnc": lambda **kw: ntm.DNC(5, 3, **DNC_SIZES, **kw),
    "dnc-ff": lambda **kw: ntm.DNC(5, 3, **DNC_SIZES, controller="feedforward", **kw),
    "dnc-2-writes": lambda **kw: ntm.DNC(5, 3, **DNC_SIZES, write_heads=2, **kw),
    "dnc-options": lambda **kw: ntm.DNC(5, 3, **DNC_SIZES, content_masking=True,
                                        deallocation=True, link_sharpness=True, **kw),
    "sam": lambda **kw: ntm.SAM(5, 3, **SAM_SIZES, index="exact", **kw),
    "sam-autograd": lambda **kw: ntm.SAM(5, 3, **SAM_SIZES, index="exact", backend="autograd",
                                         **kw),
    "sam-ff": lambda **kw: ntm.SAM(5, 3, **SAM_SIZES, controller="feedforward", **kw),
}
if HAS_FAISS:
    MODELS["sam-faiss"] = lambda **kw: ntm.SAM(5, 3, **SAM_SIZES, index="faiss", **kw)
NAMES = list(MODELS)


def _pair(name: str, dtype: torch.dtype = torch.float64):
    """The model ``name`` on the CPU and the same weights on DEVICE, both in ``dtype``. On
    CUDA the DNC runs plain autograd (its kernel is the CPU's): so does the stand-in CPU."""
    torch.manual_seed(0)
    cpu = MODELS[name](dtype=dtype)
    path = {"backend": "autograd"} if name.startswith("dnc") and DEVICE.type == "cpu" else {}
    device = MODELS[name](dtype=dtype, **path)
    device.load_state_dict(cpu.state_dict())
    return cpu, device.to(DEVICE)


def _start(model, batch: int = 3, dtype: torch.dtype = torch.float64):
    """A state to start from: SAM's with a random memory, or None (the initial state). From
    SAM's empty memory every row ties with every key, and the CPU's top-k picks among ties
    otherwise than CUDA's: both right, but no longer the same rows."""
    if not isinstance(model.cell.access, SparseAccess):
        return None
    state = model.initial_state(batch)
    memory = torch.randn(state.access.memory.shape, dtype=dtype,
                         generator=torch.Generator().manual_seed(7))
    return state._replace(access=state.access._replace(memory=memory.to(_device_of(model))))


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _inputs(steps: int = 7, batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(steps, batch, 5, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _floats(state) -> list[torch.Tensor]:
    """Every floating-point tensor of a MemoryState (SAM's row numbers are integers)."""
    return [t for t in (*state.controller, *state.access, state.reads) if t.is_floating_point()]


def _state_loss(state) -> torch.Tensor:
    return sum(0.1 * (i + 1) * t.sin().sum() for i, t in enumerate(_floats(state)))


def _run(model, inputs: torch.Tensor, **options):
    """Outputs, the final state's floating-point fields, the gradients of a loss on both with
    respect to the parameters and the inputs, and the final state."""
    inputs = inputs.clone().requires_grad_()
    logits, state = model(inputs, **options)
    loss = logits.sin().sum() + _state_loss(state)
    grads = torch.autograd.grad(loss, [*model.parameters(), inputs], allow_unused=True,
                                materialize_grads=True)
    return logits.detach(), [t.detach() for t in _floats(state)], grads, state


def _close(got: list[torch.Tensor], want: list[torch.Tensor], tolerance: float, what: str):
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
        torch.testing.assert_close(a.to(device="cpu", dtype=e.dtype), e, rtol=0,
                                   atol=tolerance * scale, msg=lambda m, i=i: f"{what} {i}: {m}")


@pytest.mark.parametrize("name", NAMES)
def test_float64_on_the_device_equals_the_cpu(name):
    cpu, device = _pair(name)
    inputs = _inputs()
    want = _run(cpu, inputs, state=_start(cpu))
    got = _run(device, inputs.to(DEVICE), state=_start(device))
    assert got[0].device.type == DEVICE.type
    assert all(t.device.type == DEVICE.type for t in got[1])
    _close([got[0]], [want[0]], 1e-10, "outputs")
    _close(got[1], want[1], 1e-10, "state field")
    _close(got[2], want[2], 1e-9, "gradient")


@pytest.mark.parametrize("name", NAMES)
def test_float32_on_the_device_equals_the_cpu_to_rounding(name):
    # Not against float64: the DNC's allocation orders slots by usage, and rounding may swap
    # two of nearly equal usage, which changes the allocation by far more than rounding.
    cpu, device = _pair(name, torch.float32)
    inputs = _inputs().float()
    want = _run(cpu, inputs, state=_start(cpu, dtype=torch.float32))
    got = _run(device, inputs.to(DEVICE), state=_start(device, dtype=torch.float32))
    assert got[0].dtype == torch.float32
    _close([got[0]], [want[0]], 1e-4, "outputs")
    _close(got[1], want[1], 1e-4, "state field")
    _close(got[2], want[2], 1e-3, "gradient")


@pytest.mark.parametrize("name", NAMES)
def test_split_runs_equal_one_run_on_the_device(name):
    _, model = _pair(name)
    inputs = _inputs(steps=9).to(DEVICE)
    whole = _run(model, inputs)
    first, middle = model(inputs[:4])
    second, end = model(inputs[4:], middle)
    _close([torch.cat([first, second]).detach()], [whole[0].cpu()], 1e-12, "outputs")
    _close([t.detach() for t in _floats(end)], [t.cpu() for t in whole[1]], 1e-12, "state")


@pytest.mark.parametrize("name, frozen", [(name, False) for name in NAMES]
                         + [(name, True) for name in NAMES if name.startswith("sam")])
def test_lengths_on_the_device_equal_each_sequence_alone(name, frozen, monkeypatch):
    """A batch with lengths against each of its sequences alone: outputs (zero past each end),
    final states, and the batch's gradients the sum of each alone's. Frozen: the path of a
    large state (SAM's, changed in place), the sequences that ended frozen where they are."""
    if frozen:
        monkeypatch.setattr(ntm.core, "FREEZE_ELEMENTS", 0)
    _, model = _pair(name)
    inputs, lengths = _inputs(steps=7, batch=3, seed=3).to(DEVICE), [7, 0, 4]
    logits, _, grads, final = _run(model, inputs, lengths=lengths)
    summed = [torch.zeros_like(g) for g in grads[:-1]]
    for b, length in enumerate(lengths):
        assert not logits[length:, b].any()
        mine = [t.detach() for t in _floats(sequence_of(final, b))]
        if not length:  # its final state is the initial one (learned initial reads)
            start = model.initial_state(1)
            _close(mine, [t.detach().cpu() for t in _floats(start)], 1e-12, "state field")
            grads_b = torch.autograd.grad(_state_loss(start), list(model.parameters()),
                                          allow_unused=True, materialize_grads=True)
            summed = [s + g for s, g in zip(summed, grads_b, strict=True)]
            continue
        alone, end, grads_b, _ = _run(model, inputs[:length, b:b + 1])
        _close([logits[:length, b:b + 1]], [alone.cpu()], 1e-12, "outputs")
        _close(mine, [t.cpu() for t in end], 1e-12, "state field")
        summed = [s + g for s, g in zip(summed, grads_b[:-1], strict=True)]
    _close(list(grads[:-1]), [s.cpu() for s in summed], 1e-10, "parameter gradient")


@pytest.mark.parametrize("name", ["dnc", "dnc-options", "sam"])
def test_gradcheck_of_whole_steps_on_the_device(name):
    _, model = _pair(name)
    inputs = _inputs(steps=3, batch=2).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: model(x)[0], (inputs,), atol=1e-7)


@pytest.mark.parametrize("name", ["dnc", "sam"])
def test_the_trace_on_the_device_is_the_run(name):
    _, model = _pair(name)
    inputs = _inputs().to(DEVICE)
    logits, state, trace = model.trace(inputs)
    torch.testing.assert_close(logits, model(inputs)[0], rtol=0, atol=0)
    fields = [t for t in (*trace.access, trace.reads) if torch.is_tensor(t)]
    assert fields and all(t.device.type == DEVICE.type and t.isfinite().all() for t in fields)


@pytest.mark.parametrize("kind", ["dnc", "dnc-ff", "sam", "sam-ff"])
def test_ntm_train_on_the_device_and_resume(kind, tmp_path):
    """``ntm train`` on the device, stopped and resumed: finite costs, and the resumed run's
    validations equal those of one run. Eagerly: a CUDA graph captures neither model."""
    options = ["--model", kind, "--set", f"train.device={DEVICE.type}",
               "--set", "model.memory_slots=12", "--set", "model.memory_width=6",
               "--set", "model.controller_size=12", "--set", "task.max_length=3",
               "--set", "train.val_every=2", "--set", "train.val_batches=1",
               "--set", "train.val_batch_size=2", "--batch-size", "2", "--no-progress"]
    run, whole = tmp_path / "run", tmp_path / "whole"
    assert main(["train", "copy", "--steps", "2", "--out", str(run), *options]) == 0
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    assert main(["train", "copy", "--steps", "4", "--out", str(whole), *options]) == 0
    costs = [[r["val_cost"] for r in read_metrics(folder) if "val_cost" in r]
             for folder in (run, whole)]
    assert len(costs[0]) == 2 and all(math.isfinite(c) for c in costs[0])
    assert costs[0] == pytest.approx(costs[1], rel=1e-5)
    assert main(["eval", str(run), "--batches", "1", "--batch-size", "2"]) == 0


def test_sam_with_many_slots_on_the_device_touches_only_its_rows():
    """65,536 slots, batch 2: one sequence forward and backward on the device, its memory
    there, changed only in the rows it wrote: each step the K rows read before and the least
    used one."""
    torch.manual_seed(0)
    model = ntm.SAM(5, 3, memory_slots=65_536, memory_width=8, controller_size=12,
                    sparse_reads=4, index="exact", device=DEVICE, dtype=torch.float32)
    inputs = _inputs(steps=10, batch=2).to(DEVICE, torch.float32).requires_grad_()
    logits, state = model(inputs)
    logits.square().sum().backward()
    memory = state.access.memory
    assert memory.device.type == DEVICE.type and memory.shape == (2, 65_536, 8)
    written = (memory != 0).any(-1).sum(-1)
    assert bool((written > 0).all()) and bool((written <= 10 * (4 + 1)).all())
    assert inputs.grad.isfinite().all() and inputs.grad.abs().sum() > 0
