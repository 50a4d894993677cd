"""Addressing against a NumPy re-derivation, hand values and invariants (Graves et al. 2014,
section 3.3, eqs. 5-9).

The NumPy references below are written from the paper's equations with explicit loops, in
float64, and share no code with ``ntm.addressing``. The one convention the paper leaves open,
and ``ntm.addressing`` fixes, is the epsilon in the cosine similarity: norms are
``sqrt(|x|^2 + 1e-8)`` (``NORM_EPS``), so that a zero key or a zero row has similarity 0 and a
finite gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm import addressing
from ntm.addressing import address, content_weights, cosine_similarity, interpolate, sharpen, shift

# The epsilon of the cosine similarity, written here independently of the library's NORM_EPS.
REFERENCE_NORM_EPS = 1e-8

FAST = settings(max_examples=25, deadline=None)


# -- NumPy references (float64, explicit loops) -----------------------------------------------


def np_cosine(memory: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """K(k, m) = k . m / (sqrt(|k|^2 + eps) * sqrt(|m|^2 + eps)).

    [B, N, M] memory and [B, H, M] keys -> [B, H, N].
    """
    batch, heads, _ = keys.shape
    slots = memory.shape[1]
    out = np.zeros((batch, heads, slots))
    for b in range(batch):
        for h in range(heads):
            k = keys[b, h]
            for i in range(slots):
                m = memory[b, i]
                denominator = math.sqrt(k @ k + REFERENCE_NORM_EPS) * math.sqrt(
                    m @ m + REFERENCE_NORM_EPS
                )
                out[b, h, i] = (k @ m) / denominator
    return out


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_content(memory: np.ndarray, keys: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """w_c(i) = softmax_i(beta * K(k, M(i)))."""
    return np_softmax(np_cosine(memory, keys) * strengths[..., None])


def np_interpolate(content: np.ndarray, previous: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """w_g = g * w_c + (1 - g) * w_prev."""
    g = gate[..., None]
    return g * content + (1.0 - g) * previous


def np_shift(weights: np.ndarray, shift_weights: np.ndarray) -> np.ndarray:
    """w_s(i) = sum_j w(j) s((i - j) mod N), with shift_weights[k] the weight of shift k - R.

    The 2R+1 shift weights are first laid on a circular kernel of length N (a shift d sits at
    d mod N; when 2R >= N two shifts can land on the same place and their weights add), then
    the circular convolution is computed with a double loop.
    """
    batch, heads, slots = weights.shape
    reach = (shift_weights.shape[-1] - 1) // 2
    out = np.zeros_like(weights)
    for b in range(batch):
        for h in range(heads):
            kernel = np.zeros(slots)
            for k in range(2 * reach + 1):
                kernel[(k - reach) % slots] += shift_weights[b, h, k]
            for i in range(slots):
                out[b, h, i] = sum(weights[b, h, j] * kernel[(i - j) % slots] for j in range(slots))
    return out


def np_shift_roll(weights: np.ndarray, shift_weights: np.ndarray) -> np.ndarray:
    """The same convolution as a sum of rolled copies: w_s = sum_k s[k] * roll(w, k - R)."""
    reach = (shift_weights.shape[-1] - 1) // 2
    out = np.zeros_like(weights)
    for k in range(2 * reach + 1):
        out += shift_weights[..., k : k + 1] * np.roll(weights, k - reach, axis=-1)
    return out


def np_sharpen(weights: np.ndarray, sharpening: np.ndarray) -> np.ndarray:
    """w(i) = w_s(i)^gamma / sum_j w_s(j)^gamma."""
    powered = weights ** sharpening[..., None]
    return powered / powered.sum(axis=-1, keepdims=True)


def np_address(memory, previous, keys, strengths, gate, shift_weights, sharpening):
    w = np_content(memory, keys, strengths)
    w = np_interpolate(w, previous, gate)
    w = np_shift(w, shift_weights)
    return np_sharpen(w, sharpening)


# -- random inputs ----------------------------------------------------------------------------


def random_case(seed: int, batch: int, heads: int, slots: int, width: int, reach: int) -> dict:
    """Valid random arguments of `address`, as float64 NumPy arrays."""
    rng = np.random.default_rng(seed)
    return {
        "memory": rng.normal(size=(batch, slots, width)),
        "previous": np_softmax(rng.normal(size=(batch, heads, slots)) * 2),
        "keys": rng.normal(size=(batch, heads, width)),
        "strengths": rng.uniform(0.1, 10.0, size=(batch, heads)),
        "gate": rng.uniform(0.0, 1.0, size=(batch, heads)),
        "shift_weights": np_softmax(rng.normal(size=(batch, heads, 2 * reach + 1)) * 2),
        "sharpening": rng.uniform(1.0, 5.0, size=(batch, heads)),
    }


def as_torch(case: dict, dtype=torch.float64, requires_grad: bool = False) -> dict:
    return {k: torch.tensor(v, dtype=dtype).requires_grad_(requires_grad) for k, v in case.items()}


def one_hot(slots: int, index: int, dtype=torch.float64) -> torch.Tensor:
    w = torch.zeros(1, 1, slots, dtype=dtype)
    w[0, 0, index] = 1.0
    return w


def shift_on(reach: int, offset: int, dtype=torch.float64) -> torch.Tensor:
    """All shift weight on the shift `offset` (index offset + R)."""
    s = torch.zeros(1, 1, 2 * reach + 1, dtype=dtype)
    s[0, 0, offset + reach] = 1.0
    return s


shapes = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(1, 3),  # batch
    st.integers(1, 3),  # heads
    st.integers(3, 9),  # memory_slots
    st.integers(1, 5),  # memory_width
)


def test_norm_eps_is_the_spec_value() -> None:
    assert addressing.NORM_EPS == REFERENCE_NORM_EPS


# -- against NumPy ----------------------------------------------------------------------------


@FAST
@given(shapes)
def test_cosine_similarity_matches_numpy(shape) -> None:
    seed, batch, heads, slots, width = shape
    case = random_case(seed, batch, heads, slots, width, reach=1)
    expected = np_cosine(case["memory"], case["keys"])
    got = cosine_similarity(*(torch.tensor(case[k]) for k in ("memory", "keys")))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(got.numpy()) <= 1.0)


@FAST
@given(shapes)
def test_content_weights_match_numpy(shape) -> None:
    seed, batch, heads, slots, width = shape
    case = random_case(seed, batch, heads, slots, width, reach=1)
    expected = np_content(case["memory"], case["keys"], case["strengths"])
    t = as_torch(case)
    got = content_weights(t["memory"], t["keys"], t["strengths"])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


@FAST
@given(shapes)
def test_interpolate_matches_numpy(shape) -> None:
    seed, batch, heads, slots, width = shape
    case = random_case(seed, batch, heads, slots, width, reach=1)
    content = np_softmax(np.random.default_rng(seed + 1).normal(size=(batch, heads, slots)))
    expected = np_interpolate(content, case["previous"], case["gate"])
    t = as_torch(case)
    got = interpolate(torch.tensor(content), t["previous"], t["gate"])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


@FAST
@given(shapes, st.integers(0, 8))
def test_shift_matches_numpy(shape, reach) -> None:
    # Any R < N, including 2R >= N where shifts alias (the function promises R < memory_slots).
    seed, batch, heads, slots, width = shape
    reach = min(reach, slots - 1)
    case = random_case(seed, batch, heads, slots, width, reach=reach)
    expected = np_shift(case["previous"], case["shift_weights"])
    np.testing.assert_allclose(
        np_shift_roll(case["previous"], case["shift_weights"]), expected, atol=1e-14
    )
    t = as_torch(case)
    got = shift(t["previous"], t["shift_weights"])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


@FAST
@given(shapes)
def test_sharpen_matches_numpy(shape) -> None:
    seed, batch, heads, slots, width = shape
    case = random_case(seed, batch, heads, slots, width, reach=1)
    expected = np_sharpen(case["previous"], case["sharpening"])
    t = as_torch(case)
    got = sharpen(t["previous"], t["sharpening"])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-14)


@FAST
@given(shapes, st.integers(0, 2))
def test_address_matches_numpy_and_is_a_distribution(shape, reach) -> None:
    seed, batch, heads, slots, width = shape
    reach = min(reach, (slots - 1) // 2)
    case = random_case(seed, batch, heads, slots, width, reach=reach)
    expected = np_address(**case)
    got = address(**as_torch(case)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert np.all(got >= 0.0)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)


# -- hand values (4 slots) --------------------------------------------------------------------


def test_cosine_similarity_by_hand() -> None:
    memory = torch.tensor([[[4.0, 3.0], [0.0, 0.0], [-3.0, -4.0], [0.0, 2.0]]], dtype=torch.float64)
    keys = torch.tensor([[[3.0, 4.0]]], dtype=torch.float64)
    # 24/25, zero row -> 0, -25/25, 8/10.
    expected = torch.tensor([[[0.96, 0.0, -1.0, 0.8]]], dtype=torch.float64)
    torch.testing.assert_close(cosine_similarity(memory, keys), expected, rtol=1e-8, atol=1e-8)


def test_content_weights_by_hand() -> None:
    # cos = [1, 0, -1, 0]; beta = ln 2 -> exp = [2, 1, 1/2, 1], sum 4.5.
    memory = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64)
    keys = torch.tensor([[[5.0, 0.0]]], dtype=torch.float64)
    strengths = torch.tensor([[math.log(2.0)]], dtype=torch.float64)
    expected = torch.tensor([[[4 / 9, 2 / 9, 1 / 9, 2 / 9]]], dtype=torch.float64)
    torch.testing.assert_close(
        content_weights(memory, keys, strengths), expected, rtol=1e-7, atol=1e-8
    )


def test_interpolate_by_hand() -> None:
    content = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    previous = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], dtype=torch.float64)
    gate = torch.tensor([[0.25]], dtype=torch.float64)
    expected = torch.tensor([[[0.25, 0.0, 0.0, 0.75]]], dtype=torch.float64)
    torch.testing.assert_close(interpolate(content, previous, gate), expected)


@pytest.mark.parametrize(
    ("shift_weights", "expected"),
    [
        # s = (-1: 1/4, 0: 1/2, +1: 1/4): w_s(i) = w(i)/2 + w(i-1)/4 + w(i+1)/4.
        ([0.25, 0.5, 0.25], [0.2, 0.2, 0.3, 0.3]),
        # All on +1: w_s(i) = w(i - 1), the weighting moves up one slot, 0.4 wraps to slot 0.
        ([0.0, 0.0, 1.0], [0.4, 0.1, 0.2, 0.3]),
        # All on -1: w_s(i) = w(i + 1).
        ([1.0, 0.0, 0.0], [0.2, 0.3, 0.4, 0.1]),
        # s = (-1: 0.2, 0: 0.8): w_s(i) = 0.8 w(i) + 0.2 w(i + 1).
        ([0.2, 0.8, 0.0], [0.12, 0.22, 0.32, 0.34]),
    ],
)
def test_shift_by_hand(shift_weights, expected) -> None:
    weights = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]], dtype=torch.float64)
    s = torch.tensor([[shift_weights]], dtype=torch.float64)
    torch.testing.assert_close(
        shift(weights, s), torch.tensor([[expected]], dtype=torch.float64), rtol=0, atol=1e-15
    )


def test_sharpen_by_hand() -> None:
    weights = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]], dtype=torch.float64)
    # gamma = 2: squares .01 .04 .09 .16, sum .30.
    expected = torch.tensor([[[1 / 30, 4 / 30, 9 / 30, 16 / 30]]], dtype=torch.float64)
    torch.testing.assert_close(
        sharpen(weights, torch.tensor([[2.0]], dtype=torch.float64)), expected
    )


# -- invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize(("reach", "offset"), [(1, 1), (1, -1), (2, 1), (2, -1), (2, 2), (2, -2)])
def test_one_hot_shift_moves_exactly_by_the_offset(reach, offset) -> None:
    slots = 7
    for index in range(slots):  # every slot, so both edges wrap around
        moved = shift(one_hot(slots, index), shift_on(reach, offset))
        torch.testing.assert_close(moved, one_hot(slots, (index + offset) % slots), rtol=0, atol=0)


def test_shift_by_zero_and_shift_range_zero_are_the_identity() -> None:
    torch.manual_seed(1)
    weights = torch.softmax(torch.randn(2, 3, 6, dtype=torch.float64), -1)
    torch.testing.assert_close(
        shift(weights, shift_on(1, 0).expand(2, 3, 3)), weights, rtol=0, atol=0
    )
    torch.testing.assert_close(
        shift(weights, torch.ones(2, 3, 1, dtype=torch.float64)), weights, rtol=0, atol=0
    )


def test_shift_preserves_the_sum() -> None:
    torch.manual_seed(2)
    weights = torch.softmax(torch.randn(3, 2, 10), -1)
    shift_weights = torch.softmax(torch.randn(3, 2, 5), -1)
    shifted = shift(weights, shift_weights)
    assert torch.all(shifted >= 0)
    torch.testing.assert_close(shifted.sum(-1), torch.ones(3, 2))


def test_large_gamma_gives_the_argmax() -> None:
    # Shuffled softmax(0, 0.2, ..., 3): neighbours differ by a factor e^0.2, and
    # e^(-0.2 * 1000) is far below the tolerance.
    g = torch.Generator().manual_seed(0)
    levels = torch.linspace(0, 3, 16, dtype=torch.float64)
    logits = torch.stack([levels[torch.randperm(16, generator=g)] for _ in range(12)])
    weights = torch.softmax(logits.reshape(4, 3, 16), -1)
    sharpened = sharpen(weights, torch.full((4, 3), 1000.0, dtype=torch.float64))
    expected = torch.nn.functional.one_hot(weights.argmax(-1), 16).to(torch.float64)
    torch.testing.assert_close(sharpened, expected, rtol=0, atol=1e-6)


def test_gamma_one_leaves_weights_unchanged() -> None:
    torch.manual_seed(3)
    weights = torch.softmax(torch.randn(4, 3, 16, dtype=torch.float64), -1)
    torch.testing.assert_close(sharpen(weights, torch.ones(4, 3, dtype=torch.float64)), weights)


def test_sharpen_keeps_exact_zeros_at_zero() -> None:
    weights = torch.tensor([[[0.0, 0.5, 0.5, 0.0]]])
    sharpened = sharpen(weights, torch.tensor([[1.0]]))
    torch.testing.assert_close(sharpened, weights, rtol=0, atol=1e-12)


def test_gate_one_gives_content_and_gate_zero_gives_previous() -> None:
    torch.manual_seed(4)
    content = torch.softmax(torch.randn(2, 3, 8, dtype=torch.float64), -1)
    previous = torch.softmax(torch.randn(2, 3, 8, dtype=torch.float64), -1)
    ones = torch.ones(2, 3, dtype=torch.float64)
    torch.testing.assert_close(interpolate(content, previous, ones), content, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        interpolate(content, previous, torch.zeros_like(ones)), previous, rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("gamma", [21.0, 30.0])
def test_sharpen_of_uniform_weights_over_128_slots_in_float32(gamma) -> None:
    # (1/128)^21 = 2^-147 is a float32 subnormal with 2 significant bits left, and
    # (1/128)^30 = 2^-210 is 0: the naive w^gamma / sum w^gamma is then 0/0.
    assert (torch.tensor(1.0 / 128) ** 30).item() == 0.0
    weights = torch.full((2, 1, 128), 1.0 / 128)
    sharpened = sharpen(weights, torch.full((2, 1), gamma))
    assert torch.isfinite(sharpened).all()
    torch.testing.assert_close(sharpened.sum(-1), torch.ones(2, 1))
    torch.testing.assert_close(sharpened, weights)


@pytest.mark.parametrize("zero", ["key", "row", "both"])
def test_zero_key_or_zero_row_gives_finite_values_and_gradients(zero) -> None:
    torch.manual_seed(0)
    memory = torch.randn(2, 5, 4)
    keys = torch.randn(2, 3, 4)
    if zero in ("key", "both"):
        keys[:, 1] = 0.0
    if zero in ("row", "both"):
        memory[:, 2] = 0.0
    memory.requires_grad_(True)
    keys.requires_grad_(True)
    strengths = torch.full((2, 3), 5.0, requires_grad=True)
    similarity = cosine_similarity(memory, keys)
    if zero in ("key", "both"):
        assert torch.all(similarity[:, 1] == 0)
    if zero in ("row", "both"):
        assert torch.all(similarity[:, :, 2] == 0)
    previous = torch.softmax(torch.randn(2, 3, 5), -1)
    weights = address(
        memory,
        previous,
        keys,
        strengths,
        torch.full((2, 3), 0.7),
        torch.softmax(torch.randn(2, 3, 3), -1),
        torch.full((2, 3), 2.0),
    )
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    (weights * torch.randn_like(weights)).sum().backward()
    for tensor in (memory, keys, strengths):
        assert torch.isfinite(tensor.grad).all()


def test_all_zero_memory_gives_uniform_content_weights() -> None:
    torch.manual_seed(5)
    memory = torch.zeros(1, 6, 3)
    weights = content_weights(memory, torch.randn(1, 2, 3), torch.full((1, 2), 20.0))
    torch.testing.assert_close(weights, torch.full((1, 2, 6), 1.0 / 6))


# -- gradcheck (float64) ----------------------------------------------------------------------


def small_case(requires_grad: bool = True, reach: int = 1) -> dict:
    return as_torch(random_case(7, 2, 2, 5, 3, reach=reach), requires_grad=requires_grad)


def test_gradcheck_cosine_similarity() -> None:
    t = small_case()
    assert torch.autograd.gradcheck(cosine_similarity, (t["memory"], t["keys"]))


def test_gradcheck_cosine_similarity_at_a_zero_key_and_a_zero_row() -> None:
    t = small_case(requires_grad=False)
    memory, keys = t["memory"].clone(), t["keys"].clone()
    memory[:, 1] = 0.0
    keys[:, 0] = 0.0
    assert torch.autograd.gradcheck(
        cosine_similarity, (memory.requires_grad_(), keys.requires_grad_())
    )


def test_gradcheck_content_weights() -> None:
    t = small_case()
    assert torch.autograd.gradcheck(content_weights, (t["memory"], t["keys"], t["strengths"]))


def test_gradcheck_interpolate() -> None:
    torch.manual_seed(6)
    t = small_case()
    content = torch.softmax(torch.randn(2, 2, 5, dtype=torch.float64), -1).requires_grad_()
    assert torch.autograd.gradcheck(interpolate, (content, t["previous"], t["gate"]))


@pytest.mark.parametrize("reach", [0, 1, 2])
def test_gradcheck_shift(reach) -> None:
    t = small_case(reach=reach)
    assert torch.autograd.gradcheck(shift, (t["previous"], t["shift_weights"]))


def test_gradcheck_sharpen() -> None:
    t = small_case()
    assert torch.autograd.gradcheck(sharpen, (t["previous"], t["sharpening"]))


def test_gradcheck_address() -> None:
    t = small_case()
    assert torch.autograd.gradcheck(address, tuple(t.values()))
