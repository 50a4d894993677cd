"""Reading and writing against a NumPy re-derivation, hand values and invariants.

``write`` has two code paths (one head, and several heads); both are checked against the same
reference, ``M' = M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T`` (Graves et al. 2014, eqs. 3-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm.memory import read, write

FAST = settings(max_examples=25, deadline=None)


# -- NumPy references (float64, explicit loops) -----------------------------------------------


def np_read(memory: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """r_h = sum_i w_h(i) M(i); [B, N, M], [B, H, N] -> [B, H, M]."""
    batch, heads, slots = weights.shape
    out = np.zeros((batch, heads, memory.shape[2]))
    for b in range(batch):
        for h in range(heads):
            for i in range(slots):
                out[b, h] += weights[b, h, i] * memory[b, i]
    return out


def np_write(memory: np.ndarray, weights: np.ndarray, erase: np.ndarray, add: np.ndarray):
    """M'(i, m) = M(i, m) * prod_h (1 - w_h(i) e_h(m)) + sum_h w_h(i) a_h(m)."""
    batch, heads, slots = weights.shape
    width = memory.shape[2]
    out = np.zeros_like(memory)
    for b in range(batch):
        for i in range(slots):
            for m in range(width):
                kept, added = 1.0, 0.0
                for h in range(heads):
                    kept *= 1.0 - weights[b, h, i] * erase[b, h, m]
                    added += weights[b, h, i] * add[b, h, m]
                out[b, i, m] = memory[b, i, m] * kept + added
    return out


def random_write(seed: int, batch: int, heads: int, slots: int, width: int) -> dict:
    rng = np.random.default_rng(seed)
    weights = rng.uniform(size=(batch, heads, slots)) ** 3
    return {
        "memory": rng.normal(size=(batch, slots, width)),
        "weights": weights / weights.sum(-1, keepdims=True),
        "erase": rng.uniform(size=(batch, heads, width)),
        "add": rng.uniform(-1.0, 1.0, size=(batch, heads, width)),
    }


def as_torch(case: dict, requires_grad: bool = False) -> dict:
    return {
        k: torch.tensor(v, dtype=torch.float64).requires_grad_(requires_grad)
        for k, v in case.items()
    }


shapes = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(1, 3),  # batch
    st.integers(1, 4),  # heads
    st.integers(1, 7),  # memory_slots
    st.integers(1, 5),  # memory_width
)


# -- against NumPy ----------------------------------------------------------------------------


@FAST
@given(shapes)
def test_read_matches_numpy(shape) -> None:
    case = random_write(*shape)
    got = read(*(torch.tensor(case[k]) for k in ("memory", "weights")))
    np.testing.assert_allclose(
        got.numpy(), np_read(case["memory"], case["weights"]), rtol=1e-12, atol=1e-14
    )


@FAST
@given(shapes)
def test_write_matches_numpy(shape) -> None:
    case = random_write(*shape)
    got = write(**as_torch(case))
    np.testing.assert_allclose(got.numpy(), np_write(**case), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("heads", [1, 3])
def test_write_matches_numpy_for_one_and_three_heads(heads) -> None:
    case = random_write(seed=heads, batch=2, heads=heads, slots=6, width=4)
    got = write(**as_torch(case))
    np.testing.assert_allclose(got.numpy(), np_write(**case), rtol=1e-12, atol=1e-14)


def test_one_head_path_agrees_with_multi_head_path() -> None:
    torch.manual_seed(1)
    # The same write through the one-head shortcut and, padded with an idle second head
    # (zero weights), through the product over heads.
    t = as_torch(random_write(seed=3, batch=2, heads=1, slots=6, width=4))
    one = write(t["memory"], t["weights"], t["erase"], t["add"])
    idle = {k: torch.cat([t[k], torch.zeros_like(t[k])], dim=1) for k in ("weights", "add")}
    erase = torch.cat([t["erase"], torch.rand_like(t["erase"])], dim=1)
    two = write(t["memory"], idle["weights"], erase, idle["add"])
    torch.testing.assert_close(one, two, rtol=1e-13, atol=1e-14)


# -- hand values ------------------------------------------------------------------------------


def test_read_by_hand() -> None:
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], dtype=torch.float64)
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    expected = torch.tensor([[[2.0, 3.0], [5.0, 6.0]]], dtype=torch.float64)
    torch.testing.assert_close(read(memory, weights), expected)


def test_write_by_hand_one_head() -> None:
    # M'(i, m) = M(i, m)(1 - w_i e_m) + w_i a_m with w = (1/2, 1), e = (1, 1/2), a = (1, -1):
    # row 0: (1 * 1/2 + 1/2, 2 * 3/4 - 1/2) = (1, 1); row 1: (3 * 0 + 1, 4 * 1/2 - 1) = (1, 1).
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    weights = torch.tensor([[[0.5, 1.0]]], dtype=torch.float64)
    erase = torch.tensor([[[1.0, 0.5]]], dtype=torch.float64)
    add = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    torch.testing.assert_close(write(memory, weights, erase, add), torch.ones(1, 2, 2).double())


def test_write_by_hand_two_heads_on_one_slot() -> None:
    # Both heads fully on slot 0, erasing halves: kept = (1 - 1/2)(1 - 1/2) = 1/4, added 1 + 2.
    memory = torch.tensor([[[8.0], [5.0]]], dtype=torch.float64)
    weights = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    erase = torch.full((1, 2, 1), 0.5, dtype=torch.float64)
    add = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)
    expected = torch.tensor([[[8.0 / 4 + 3.0], [5.0]]], dtype=torch.float64)
    torch.testing.assert_close(write(memory, weights, erase, add), expected)


# -- invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 3])
def test_erase_zero_and_add_zero_leave_memory_unchanged(heads) -> None:
    t = as_torch(random_write(seed=5, batch=2, heads=heads, slots=6, width=4))
    out = write(t["memory"], t["weights"], torch.zeros_like(t["erase"]), torch.zeros_like(t["add"]))
    torch.testing.assert_close(out, t["memory"], rtol=0, atol=0)


@pytest.mark.parametrize("heads", [1, 3])
def test_erase_one_with_one_hot_weights_clears_that_row(heads) -> None:
    t = as_torch(random_write(seed=6, batch=2, heads=heads, slots=6, width=4))
    weights = torch.zeros_like(t["weights"])
    weights[:, 0, 2] = 1.0  # the first head on row 2; the others (if any) idle
    erase = torch.ones_like(t["erase"])
    out = write(t["memory"], weights, erase, torch.zeros_like(t["add"]))
    assert torch.all(out[:, 2] == 0)
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(out[:, keep], t["memory"][:, keep], rtol=0, atol=0)


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 0, 2), (0, 2, 1)])
def test_head_order_does_not_matter(order) -> None:
    t = as_torch(random_write(seed=8, batch=2, heads=3, slots=6, width=4))
    forward = write(t["memory"], t["weights"], t["erase"], t["add"])
    permuted = [t[k][:, list(order)] for k in ("weights", "erase", "add")]
    torch.testing.assert_close(write(t["memory"], *permuted), forward, rtol=1e-13, atol=1e-14)


def test_read_of_a_distribution_stays_in_the_hull_of_rows() -> None:
    t = as_torch(random_write(seed=9, batch=2, heads=3, slots=6, width=4))
    r = read(t["memory"], t["weights"])  # (B, H, M)
    low = t["memory"].min(dim=1).values.unsqueeze(1)
    high = t["memory"].max(dim=1).values.unsqueeze(1)
    assert torch.all(r >= low - 1e-12) and torch.all(r <= high + 1e-12)


# -- gradcheck (float64) ----------------------------------------------------------------------


def test_gradcheck_read() -> None:
    t = as_torch(random_write(seed=10, batch=2, heads=2, slots=4, width=3), requires_grad=True)
    assert torch.autograd.gradcheck(read, (t["memory"], t["weights"]))


@pytest.mark.parametrize("heads", [1, 3])
def test_gradcheck_write(heads) -> None:
    t = as_torch(random_write(seed=11, batch=2, heads=heads, slots=4, width=3), requires_grad=True)
    assert torch.autograd.gradcheck(write, (t["memory"], t["weights"], t["erase"], t["add"]))
