"""Bits and bit errors per sequence, against hand values and a NumPy re-derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm.metrics import bit_errors_per_sequence, bits_per_sequence, sequence_loss


def lengths_mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps).unsqueeze(1) < torch.tensor(lengths)  # (T, B)


def numpy_bits_per_sequence(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    x = logits.astype(np.float64)
    probability = 1.0 / (1.0 + np.exp(-x))
    per_bit = -(targets * np.log2(probability) + (1 - targets) * np.log2(1 - probability))
    return float((per_bit * mask[..., None]).sum(axis=(0, 2)).mean())


def numpy_errors_per_sequence(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    wrong = (logits > 0) != (targets > 0.5)
    return float((wrong & mask[..., None]).sum(axis=(0, 2)).mean())


def test_zero_logits_cost_one_bit_per_scored_bit() -> None:
    # Sequence 0 scores 3 steps, sequence 1 scores 1 step, 3 channels: (9 + 3) / 2 = 6 bits.
    logits = torch.zeros(4, 2, 3)
    targets = torch.randint(0, 2, (4, 2, 3)).float()
    mask = lengths_mask([3, 1], steps=4)
    assert bits_per_sequence(logits, targets, mask).item() == pytest.approx(6.0, rel=1e-6)
    assert sequence_loss(logits, targets, mask).item() == pytest.approx(6.0 * math.log(2))


def test_unscored_steps_are_ignored_even_when_not_finite() -> None:
    logits = torch.zeros(3, 1, 2, requires_grad=True)
    targets = torch.ones(3, 1, 2)
    mask = torch.tensor([[True], [False], [False]])
    poisoned = logits + torch.tensor([0.0, math.inf, math.nan]).reshape(3, 1, 1)
    assert bits_per_sequence(poisoned, targets, mask).item() == pytest.approx(2.0)
    assert bit_errors_per_sequence(poisoned, targets, mask).item() == 2.0  # logit 0 predicts 0
    sequence_loss(poisoned, targets, mask).backward()
    assert torch.isfinite(logits.grad[0]).all()


def test_hand_computed_values() -> None:
    # One sequence, one scored step, two channels: logit ln 3 (p = 3/4) on a 1, and logit
    # -ln 3 (p = 1/4) on a 1: log2(4/3) + log2(4) bits; the second bit is wrong.
    logits = torch.tensor([[[math.log(3.0), -math.log(3.0)]]])
    targets = torch.tensor([[[1.0, 1.0]]])
    mask = torch.tensor([[True]])
    assert bits_per_sequence(logits, targets, mask).item() == pytest.approx(
        math.log2(4 / 3) + 2.0, rel=1e-6
    )
    assert bit_errors_per_sequence(logits, targets, mask).item() == 1.0


def test_bit_errors_count_scored_bits_per_sequence() -> None:
    targets = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])  # (T=2, B=2, 2)
    logits = torch.tensor([[[1.0, 1.0], [-1.0, -1.0]], [[1.0, -1.0], [-1.0, 1.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    # Sequence 0: step 0 one wrong, step 1 one wrong; sequence 1: step 0 two wrong (scored).
    assert bit_errors_per_sequence(logits, targets, mask).item() == pytest.approx(2.0)


def test_perfect_logits_cost_nothing_and_make_no_errors() -> None:
    targets = torch.randint(0, 2, (6, 4, 5), generator=torch.Generator().manual_seed(0)).float()
    logits = (targets * 2 - 1) * 50.0
    mask = lengths_mask([6, 1, 3, 5], steps=6)
    assert bits_per_sequence(logits, targets, mask).item() < 1e-12
    assert bit_errors_per_sequence(logits, targets, mask).item() == 0.0
    # Confidently wrong: finite (computed from logits), 50 / ln 2 bits and one error per bit.
    wrong_bits = bits_per_sequence(-logits, targets, mask).item()
    scored_bits = mask.sum().item() * 5 / 4
    assert wrong_bits == pytest.approx(scored_bits * 50.0 / math.log(2), rel=1e-5)
    assert bit_errors_per_sequence(-logits, targets, mask).item() == scored_bits


def test_loss_is_bits_times_ln2_and_its_gradient_is_the_masked_residual() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 2, (5, 3, 2), generator=generator).double()
    mask = lengths_mask([5, 2, 4], steps=5)
    loss = sequence_loss(logits, targets, mask)
    bits = bits_per_sequence(logits, targets, mask)
    assert loss.item() == pytest.approx(bits.item() * math.log(2))
    loss.backward()
    expected = (torch.sigmoid(logits) - targets) * mask.unsqueeze(-1) / 3  # mean over B = 3
    torch.testing.assert_close(logits.grad, expected.detach())


@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(1, 6),
    batch_size=st.integers(1, 5),
    channels=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_against_numpy(steps: int, batch_size: int, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(steps, batch_size, channels)).astype(np.float32)
    targets = rng.integers(0, 2, size=logits.shape).astype(np.float32)
    mask = rng.random((steps, batch_size)) < 0.6
    as_torch = (torch.from_numpy(logits), torch.from_numpy(targets), torch.from_numpy(mask))
    assert bits_per_sequence(*as_torch).item() == pytest.approx(
        numpy_bits_per_sequence(logits, targets, mask), rel=1e-5, abs=1e-5
    )
    assert bit_errors_per_sequence(*as_torch).item() == pytest.approx(
        numpy_errors_per_sequence(logits, targets, mask)
    )


@pytest.mark.parametrize("function", [bits_per_sequence, bit_errors_per_sequence, sequence_loss])
def test_shape_errors(function) -> None:
    logits, targets = torch.zeros(4, 2, 3), torch.zeros(4, 2, 3)
    mask = torch.ones(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"targets must have the shape of logits"):
        function(logits, torch.zeros(4, 2, 2), mask)
    with pytest.raises(ValueError, match=r"mask must be \[steps, batch\]. Expected \[4, 2\]"):
        function(logits, targets, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"logits must be \[steps, batch, channels\]"):
        function(torch.zeros(4, 2), torch.zeros(4, 2), mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(7, 4, 3, generator=generator)
    targets = torch.randint(0, 2, (7, 4, 3), generator=generator).float()
    mask = lengths_mask([7, 3, 5, 1], steps=7)
    for function in (bits_per_sequence, bit_errors_per_sequence, sequence_loss):
        on_cuda = function(logits.cuda(), targets.cuda(), mask.cuda())
        assert on_cuda.device.type == "cuda"
        assert on_cuda.item() == pytest.approx(function(logits, targets, mask).item(), rel=1e-5)
