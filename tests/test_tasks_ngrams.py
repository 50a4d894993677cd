"""The N-grams generator and its optimal Bayesian estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntm import tasks
from ntm.tasks.ngrams import contexts_of, sample_beta_half


def bits_tensor(bits: list[int]) -> torch.Tensor:
    return torch.tensor(bits, dtype=torch.float32).reshape(-1, 1, 1)  # (T, 1, 1)


def test_estimator_by_hand_order_2() -> None:
    # Context = the previous bit. Step 0 has no context (0.5). Step 1 sees context 1 for the
    # first time (0.5). Steps 2, 3 follow context 1 after one and two ones: 1.5/2, 2.5/3.
    predicted = tasks.optimal_predictions(bits_tensor([1, 1, 1, 0]), order=2)
    np.testing.assert_allclose(predicted.flatten(), [0.5, 0.5, 0.75, 2.5 / 3], rtol=1e-6)


def test_estimator_by_hand_order_3() -> None:
    # Contexts of steps 2..5: 01, 10, 01, 10. Context 01 is followed by 0 (step 2), so at
    # step 4 P(1) = 0.5 / 2; context 10 by 1 (step 3), so at step 5 P(1) = 1.5 / 2.
    predicted = tasks.optimal_predictions(bits_tensor([0, 1, 0, 1, 0, 1]), order=3)
    np.testing.assert_allclose(predicted.flatten(), [0.5, 0.5, 0.5, 0.5, 0.25, 0.75])


def test_optimal_cost_by_hand() -> None:
    task = tasks.make("ngrams", order=2, length=4)
    targets = bits_tensor([1, 1, 1, 0])
    batch = tasks.Batch(torch.zeros_like(targets), targets, torch.ones(4, 1, dtype=torch.bool))
    expected = -(2 * math.log2(0.5) + math.log2(0.75) + math.log2(1 - 2.5 / 3))  # 5 bits
    assert task.optimal_bits_per_sequence(batch) == pytest.approx(expected)


def test_estimator_against_python_counts() -> None:
    order, generator = 4, torch.Generator().manual_seed(5)
    bits = torch.randint(0, 2, (60, 3, 1), generator=generator).float()
    predicted = tasks.optimal_predictions(bits, order=order).numpy()
    for b in range(3):
        sequence = [int(x) for x in bits[:, b, 0]]
        ones: dict[tuple, int] = {}
        seen: dict[tuple, int] = {}
        for t, bit in enumerate(sequence):
            if t < order - 1:
                assert predicted[t, b, 0] == 0.5
                continue
            context = tuple(sequence[t - order + 1 : t])
            expected = (ones.get(context, 0) + 0.5) / (seen.get(context, 0) + 1)
            assert predicted[t, b, 0] == pytest.approx(expected)
            ones[context] = ones.get(context, 0) + bit
            seen[context] = seen.get(context, 0) + 1


def test_contexts_read_the_previous_bits_oldest_first() -> None:
    bits = torch.tensor([1, 0, 1, 1, 0]).reshape(5, 1)
    assert contexts_of(bits, order=3).flatten().tolist() == [0, 0, 0b10, 0b01, 0b11]


def test_beta_half_moments_and_cdf() -> None:
    samples = sample_beta_half((200_000,), torch.Generator().manual_seed(0)).double()
    assert samples.mean().item() == pytest.approx(0.5, abs=0.005)
    assert samples.var().item() == pytest.approx(1 / 8, abs=0.002)  # ab / ((a+b)^2 (a+b+1))
    # Arcsine CDF: F(1/4) = (2 / pi) * arcsin(1/2) = 1/3.
    assert (samples < 0.25).double().mean().item() == pytest.approx(1 / 3, abs=0.005)


def test_bits_depend_on_their_context() -> None:
    # Per sequence, P(1 | previous bit 0) and P(1 | previous bit 1) are independent
    # Beta(1/2, 1/2) draws, so their frequencies differ by E|p0 - p1| ~ 0.42 on average; for
    # bits independent of their context the difference would be near 0.
    task = tasks.make("ngrams", order=2, length=1000)
    bits = task.sample(200, generator=torch.Generator().manual_seed(4)).targets[:, :, 0].numpy()
    previous, current = bits[:-1], bits[1:]
    after_zero = (current * (previous == 0)).sum(0) / np.maximum((previous == 0).sum(0), 1)
    after_one = (current * (previous == 1)).sum(0) / np.maximum((previous == 1).sum(0), 1)
    assert 0.3 < np.abs(after_zero - after_one).mean() < 0.55


def test_optimal_cost_is_the_papers_133_bits() -> None:
    # ntm.tasks.ngrams: about 133.3 bits per sequence. The per-sequence cost has a standard
    # deviation of about 36 bits, so 10,000 sequences put the mean within about 0.36 bits
    # (1 bit = 2.8 sigma).
    task = tasks.make("ngrams")
    generator = torch.Generator().manual_seed(2014)
    costs = [task.optimal_bits_per_sequence(task.sample(2000, generator)) for _ in range(5)]
    assert np.mean(costs) == pytest.approx(133.3, abs=1.0)


def test_estimator_rejects_wide_targets() -> None:
    with pytest.raises(ValueError, match=r"\[steps, batch, 1\]"):
        tasks.optimal_predictions(torch.zeros(4, 2, 3), order=2)
