"""The DNC's functions against a NumPy re-derivation, hand values and invariants (Graves et al.
2016, Methods; Csordas & Schmidhuber 2019 for masking, de-allocation and sharpness).

The NumPy references below are written from the equations with explicit loops, in float64,
and share no code with ``ntm.functional.dnc``. The allocation reference follows deepmind/dnc
literally (the raw usage is mapped to ``1e-6 + (1 - 1e-6) u`` again before every write head),
where the library maps once; the two agree, which the comparison checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm.functional import content_weights, dnc
from ntm.functional.dnc import (
    allocation,
    deallocate,
    directional_weights,
    erase_and_write,
    link,
    masked_content_weights,
    oneplus,
    precedence,
    read_weights,
    retention,
    sharpen_directional,
    usage,
    write_weights,
)

# Written here independently of the library's constants.
REFERENCE_ALLOCATION_EPS = 1e-6
REFERENCE_NORM_EPS = 1e-8

FAST = settings(max_examples=20, deadline=None)
F64 = torch.float64


# -- NumPy references (float64, explicit loops) -----------------------------------------------


def np_retention(free_gates: np.ndarray, prev_read: np.ndarray) -> np.ndarray:
    """psi[i] = prod_r (1 - f_r w_r[i])."""
    batch, reads, slots = prev_read.shape
    out = np.ones((batch, slots))
    for b in range(batch):
        for i in range(slots):
            for r in range(reads):
                out[b, i] *= 1.0 - free_gates[b, r] * prev_read[b, r, i]
    return out


def np_usage(prev_usage, prev_write, free_gates, prev_read) -> np.ndarray:
    """u = (u' + (1 - u') (1 - prod_w (1 - w_w))) * psi."""
    batch, writes, slots = prev_write.shape
    psi = np_retention(free_gates, prev_read)
    out = np.zeros((batch, slots))
    for b in range(batch):
        for i in range(slots):
            not_written = 1.0
            for w in range(writes):
                not_written *= 1.0 - prev_write[b, w, i]
            u = prev_usage[b, i]
            out[b, i] = (u + (1.0 - u) * (1.0 - not_written)) * psi[b, i]
    return out


def np_allocate_one(raw_usage: np.ndarray) -> np.ndarray:
    """One head, one batch entry: free list by (usage, slot index), then the product."""
    u = REFERENCE_ALLOCATION_EPS + (1.0 - REFERENCE_ALLOCATION_EPS) * raw_usage
    free_list = sorted(range(len(u)), key=lambda i: (u[i], i))
    out = np.zeros_like(u)
    used_before = 1.0
    for i in free_list:
        out[i] = (1.0 - u[i]) * used_before
        used_before *= u[i]
    return out


def np_allocation(raw_usage: np.ndarray, write_gates: np.ndarray) -> np.ndarray:
    """deepmind/dnc's write_allocation_weights: each head on the usage the others leave."""
    batch, writes = write_gates.shape
    out = np.zeros((batch, writes, raw_usage.shape[1]))
    for b in range(batch):
        u = raw_usage[b].copy()
        for w in range(writes):
            out[b, w] = np_allocate_one(u)
            u = u + (1.0 - u) * write_gates[b, w] * out[b, w]
    return out


def np_precedence(prev_precedence: np.ndarray, write: np.ndarray) -> np.ndarray:
    """p = (1 - sum_i w[i]) p' + w."""
    out = np.zeros_like(write)
    for b, w in np.ndindex(*write.shape[:2]):
        out[b, w] = (1.0 - write[b, w].sum()) * prev_precedence[b, w] + write[b, w]
    return out


def np_link(prev_link: np.ndarray, prev_precedence: np.ndarray, write: np.ndarray) -> np.ndarray:
    """L[i,j] = (1 - w[i] - w[j]) L'[i,j] + w[i] p'[j], L[i,i] = 0."""
    batch, writes, slots = write.shape
    out = np.zeros_like(prev_link)
    for b, h, i, j in np.ndindex(batch, writes, slots, slots):
        if i != j:
            w = write[b, h]
            out[b, h, i, j] = (1 - w[i] - w[j]) * prev_link[b, h, i, j] + w[i] * prev_precedence[
                b, h, j
            ]
    return out


def np_directional(link_: np.ndarray, prev_read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f[i] = sum_j L[i,j] w[j]; b[j] = sum_i L[i,j] w[i]."""
    batch, writes, slots, _ = link_.shape
    reads = prev_read.shape[1]
    forward = np.zeros((batch, reads, writes, slots))
    backward = np.zeros((batch, reads, writes, slots))
    for b, r, h, i, j in np.ndindex(batch, reads, writes, slots, slots):
        forward[b, r, h, i] += link_[b, h, i, j] * prev_read[b, r, j]
        backward[b, r, h, j] += link_[b, h, i, j] * prev_read[b, r, i]
    return forward, backward


def np_read_weights(content, forward, backward, modes) -> np.ndarray:
    """w = sum_h pi[h] b_h + sum_h pi[W + h] f_h + pi[2W] c."""
    batch, reads, writes, _ = forward.shape
    out = np.zeros_like(content)
    for b, r in np.ndindex(batch, reads):
        out[b, r] = modes[b, r, 2 * writes] * content[b, r]
        for h in range(writes):
            out[b, r] += modes[b, r, h] * backward[b, r, h]
            out[b, r] += modes[b, r, writes + h] * forward[b, r, h]
    return out


def np_write_weights(alloc, content, allocation_gates, write_gates) -> np.ndarray:
    """w = g^w (g^a a + (1 - g^a) c)."""
    out = np.zeros_like(alloc)
    for b, h in np.ndindex(*alloc.shape[:2]):
        ga, gw = allocation_gates[b, h], write_gates[b, h]
        out[b, h] = gw * (ga * alloc[b, h] + (1.0 - ga) * content[b, h])
    return out


def np_oneplus(x: np.ndarray) -> np.ndarray:
    return 1.0 + np.logaddexp(0.0, x)


def np_erase_and_write(memory, write, erase, values) -> np.ndarray:
    """M[i,k] = M'[i,k] prod_h (1 - w_h[i] e_h[k]) + sum_h w_h[i] v_h[k]."""
    batch, writes, slots = write.shape
    width = memory.shape[2]
    out = np.zeros_like(memory)
    for b, i, k in np.ndindex(batch, slots, width):
        kept, added = 1.0, 0.0
        for h in range(writes):
            kept *= 1.0 - write[b, h, i] * erase[b, h, k]
            added += write[b, h, i] * values[b, h, k]
        out[b, i, k] = memory[b, i, k] * kept + added
    return out


def np_masked_content(memory, keys, strengths, mask) -> np.ndarray:
    """softmax_i(beta * cos(k * m, M[i] * m)), norms sqrt(|x|^2 + 1e-8)."""
    batch, heads, _ = keys.shape
    slots = memory.shape[1]
    out = np.zeros((batch, heads, slots))
    for b, h in np.ndindex(batch, heads):
        k = keys[b, h] * mask[b, h]
        scores = np.zeros(slots)
        for i in range(slots):
            m = memory[b, i] * mask[b, h]
            cos = (k @ m) / (
                math.sqrt(k @ k + REFERENCE_NORM_EPS) * math.sqrt(m @ m + REFERENCE_NORM_EPS)
            )
            scores[i] = strengths[b, h] * cos
        e = np.exp(scores - scores.max())
        out[b, h] = e / e.sum()
    return out


def np_deallocate(memory: np.ndarray, psi: np.ndarray) -> np.ndarray:
    out = memory.copy()
    for b, i in np.ndindex(*psi.shape):
        out[b, i, :] *= psi[b, i]
    return out


def np_sharpen_directional(weights: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """d^s / sum d^s along the last axis; an all-zero d stays zero."""
    out = np.zeros_like(weights)
    for index in np.ndindex(*weights.shape[:-1]):
        powered = weights[index] ** sharpness[index]
        total = powered.sum()
        out[index] = powered / total if total > 0 else 0.0
    return out


def np_run_links(writes_over_time: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Link and precedence after the given write weights, from L_0 = 0 and p_0 = 0."""
    batch, heads, slots = writes_over_time[0].shape
    link_ = np.zeros((batch, heads, slots, slots))
    prec = np.zeros((batch, heads, slots))
    for write in writes_over_time:
        link_ = np_link(link_, prec, write)
        prec = np_precedence(prec, write)
    return link_, prec


# -- random inputs ----------------------------------------------------------------------------


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sub_distribution(rng, *shape) -> np.ndarray:
    """Non-negative weightings summing to at most 1 (a softmax scaled by a gate)."""
    return np_softmax(rng.normal(size=shape) * 2) * rng.uniform(0.0, 1.0, size=(*shape[:-1], 1))


def random_case(seed: int, batch: int, slots: int, width: int, reads: int, writes: int) -> dict:
    """Valid random arguments of every function, as float64 NumPy arrays."""
    rng = np.random.default_rng(seed)
    link_ = rng.uniform(0.0, 1.0 / slots, size=(batch, writes, slots, slots))
    link_ *= 1.0 - np.eye(slots)
    return {
        "usage": rng.uniform(0.0, 1.0, size=(batch, slots)),
        "write": sub_distribution(rng, batch, writes, slots),
        "read": sub_distribution(rng, batch, reads, slots),
        "content_r": np_softmax(rng.normal(size=(batch, reads, slots)) * 2),
        "content_w": np_softmax(rng.normal(size=(batch, writes, slots)) * 2),
        "free_gates": rng.uniform(0.0, 1.0, size=(batch, reads)),
        "write_gates": rng.uniform(0.0, 1.0, size=(batch, writes)),
        "allocation_gates": rng.uniform(0.0, 1.0, size=(batch, writes)),
        "precedence": sub_distribution(rng, batch, writes, slots),
        "link": link_,
        "modes": np_softmax(rng.normal(size=(batch, reads, 2 * writes + 1))),
        "memory": rng.normal(size=(batch, slots, width)),
        "keys": rng.normal(size=(batch, reads, width)),
        "strengths": rng.uniform(0.1, 10.0, size=(batch, reads)),
        "mask": rng.uniform(0.0, 1.0, size=(batch, reads, width)),
        "erase": rng.uniform(0.0, 1.0, size=(batch, writes, width)),
        "values": rng.normal(size=(batch, writes, width)),
        "sharpness": rng.uniform(1.0, 4.0, size=(batch, reads, writes)),
    }


def t(array, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(array, dtype=F64).requires_grad_(requires_grad)


def assert_close(got: torch.Tensor, expected, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=rtol, atol=atol)


shapes = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(1, 3),  # batch
    st.integers(2, 7),  # memory_slots
    st.integers(1, 4),  # memory_width
    st.integers(1, 3),  # read_heads
    st.integers(1, 3),  # write_heads
)


def test_epsilons_are_the_spec_values() -> None:
    assert dnc.ALLOCATION_EPS == REFERENCE_ALLOCATION_EPS
    assert dnc.NORM_EPS == REFERENCE_NORM_EPS
    assert 0.0 < dnc.SHARPEN_EPS <= 1e-6


# -- against NumPy ----------------------------------------------------------------------------


@FAST
@given(shapes)
def test_retention_and_usage_match_numpy(shape) -> None:
    c = random_case(*shape)
    expected = np_retention(c["free_gates"], c["read"])
    assert_close(retention(t(c["free_gates"]), t(c["read"])), expected)
    got = usage(t(c["usage"]), t(c["write"]), t(c["free_gates"]), t(c["read"]))
    assert_close(got, np_usage(c["usage"], c["write"], c["free_gates"], c["read"]))
    assert got.shape == (shape[1], shape[2])


@FAST
@given(shapes)
def test_allocation_matches_numpy(shape) -> None:
    c = random_case(*shape)
    got = allocation(t(c["usage"]), t(c["write_gates"]))
    assert got.shape == (shape[1], shape[5], shape[2])
    assert_close(got, np_allocation(c["usage"], c["write_gates"]), rtol=1e-9, atol=1e-12)


@FAST
@given(shapes)
def test_precedence_and_link_match_numpy(shape) -> None:
    c = random_case(*shape)
    got = precedence(t(c["precedence"]), t(c["write"]))
    assert_close(got, np_precedence(c["precedence"], c["write"]))
    got = link(t(c["link"]), t(c["precedence"]), t(c["write"]))
    assert got.shape == c["link"].shape
    assert_close(got, np_link(c["link"], c["precedence"], c["write"]))


@FAST
@given(shapes)
def test_directional_and_read_weights_match_numpy(shape) -> None:
    c = random_case(*shape)
    forward, backward = directional_weights(t(c["link"]), t(c["read"]))
    expected_forward, expected_backward = np_directional(c["link"], c["read"])
    assert forward.shape == backward.shape == (shape[1], shape[4], shape[5], shape[2])
    assert_close(forward, expected_forward)
    assert_close(backward, expected_backward)
    got = read_weights(t(c["content_r"]), forward, backward, t(c["modes"]))
    expected = np_read_weights(c["content_r"], expected_forward, expected_backward, c["modes"])
    assert_close(got, expected)


@FAST
@given(shapes)
def test_write_weights_match_numpy(shape) -> None:
    c = random_case(*shape)
    alloc = np_allocation(c["usage"], c["write_gates"])
    args = (alloc, c["content_w"], c["allocation_gates"], c["write_gates"])
    assert_close(write_weights(*map(t, args)), np_write_weights(*args))


@FAST
@given(shapes)
def test_erase_and_write_matches_numpy(shape) -> None:
    c = random_case(*shape)
    args = (c["memory"], c["write"], c["erase"], c["values"])
    assert_close(erase_and_write(*map(t, args)), np_erase_and_write(*args))


@FAST
@given(shapes)
def test_masked_content_weights_match_numpy(shape) -> None:
    c = random_case(*shape)
    args = (c["memory"], c["keys"], c["strengths"], c["mask"])
    got = masked_content_weights(*map(t, args))
    assert_close(got, np_masked_content(*args), rtol=1e-9)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=1e-12)


@FAST
@given(shapes)
def test_deallocate_matches_numpy(shape) -> None:
    c = random_case(*shape)
    psi = np_retention(c["free_gates"], c["read"])
    assert_close(deallocate(t(c["memory"]), t(psi)), np_deallocate(c["memory"], psi))


@FAST
@given(shapes)
def test_sharpen_directional_matches_numpy(shape) -> None:
    c = random_case(*shape)
    forward, _ = np_directional(c["link"], c["read"])
    got = sharpen_directional(t(forward), t(c["sharpness"]))
    assert_close(got, np_sharpen_directional(forward, c["sharpness"]), rtol=1e-9)


@given(st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=8))
@FAST
def test_oneplus_matches_numpy(values) -> None:
    x = np.array(values)
    got = oneplus(t(x))
    assert_close(got, np_oneplus(x), rtol=1e-9)
    assert torch.all(got >= 1.0)


# -- hand values ------------------------------------------------------------------------------


def test_allocation_by_hand() -> None:
    # Free list: slot 1 (0.1), slot 0 (0.3), slot 2 (0.6).
    # a[1] = 0.9, a[0] = 0.7 * 0.1 = 0.07, a[2] = 0.4 * 0.1 * 0.3 = 0.012.
    got = allocation(t([[0.3, 0.1, 0.6]]), t([[1.0]]))
    torch.testing.assert_close(got, t([[[0.07, 0.9, 0.012]]]), rtol=0, atol=2e-6)


def test_allocation_breaks_ties_by_slot_index() -> None:
    # Free list 1, 3, 0, 2: a[1] = 0.8, a[3] = 0.8 * 0.2, a[0] = 0.5 * 0.04, a[2] = 0.5 * 0.02.
    got = allocation(t([[0.5, 0.2, 0.5, 0.2]]), t([[1.0]]))
    torch.testing.assert_close(got, t([[[0.02, 0.8, 0.01, 0.16]]]), rtol=0, atol=2e-6)
    # An unused memory: everything goes to slot 0, the first of the tied slots.
    fresh = allocation(torch.zeros(2, 6, dtype=F64), torch.ones(2, 1, dtype=F64))
    torch.testing.assert_close(fresh[:, 0, 0], torch.ones(2, dtype=F64), rtol=0, atol=2e-6)
    assert fresh[:, 0, 1:].max() < 2e-6


def test_allocation_with_two_write_heads_by_hand() -> None:
    # Head 0 as above; head 1 sees u + (1 - u) a_0 = [0.349, 0.91, 0.6048]: free list 0, 2, 1.
    got = allocation(t([[0.3, 0.1, 0.6]]), t([[1.0, 1.0]]))
    second = [0.651, 0.09 * 0.349 * 0.6048, 0.3952 * 0.349]
    torch.testing.assert_close(got, t([[[0.07, 0.9, 0.012], second]]), rtol=0, atol=5e-6)
    # A closed write gate leaves the usage as it was: the next head allocates the same.
    closed = allocation(t([[0.3, 0.1, 0.6]]), t([[0.0, 1.0]]))
    torch.testing.assert_close(closed[:, 1], closed[:, 0], rtol=0, atol=1e-15)


def test_usage_by_hand() -> None:
    # Written by two heads at 0.5 each: 1 - 0.5 * 0.5 = 0.75; u = 0.5 + 0.5 * 0.75 = 0.875.
    # Freed by a gate of 1 on a read weight of 0.5: psi = 0.5.
    prev_write = t([[[0.5, 0.0], [0.5, 0.0]]])
    prev_read = t([[[0.5, 0.0]]])
    got = usage(t([[0.5, 0.4]]), prev_write, t([[1.0]]), prev_read)
    torch.testing.assert_close(got, t([[0.4375, 0.4]]))


def test_precedence_by_hand() -> None:
    # sum w = 0.75: p = 0.25 p' + w.
    got = precedence(t([[[0.5, 0.5, 0.0]]]), t([[[0.0, 0.25, 0.5]]]))
    torch.testing.assert_close(got, t([[[0.125, 0.375, 0.5]]]))


def test_link_records_the_write_order() -> None:
    # One-hot writes to slots 0, 2, 1: L[2, 0] = L[1, 2] = 1, all else 0.
    slots = 4
    current_link = torch.zeros(1, 1, slots, slots, dtype=F64)
    prec = torch.zeros(1, 1, slots, dtype=F64)
    for slot in (0, 2, 1):
        write = torch.nn.functional.one_hot(torch.tensor([[slot]]), slots).to(F64)
        current_link = link(current_link, prec, write)
        prec = precedence(prec, write)
    expected = torch.zeros(slots, slots, dtype=F64)
    expected[2, 0] = expected[1, 2] = 1.0
    torch.testing.assert_close(current_link[0, 0], expected, rtol=0, atol=0)
    # Forward from slot 0 is slot 2; backward from slot 2 is slot 0; forward from 1 is nothing.
    read = torch.eye(slots, dtype=F64)[[0, 2, 1]].unsqueeze(0)  # (1, 3, N)
    forward, backward = directional_weights(current_link, read)
    torch.testing.assert_close(forward[0, 0, 0], torch.eye(slots, dtype=F64)[2])
    torch.testing.assert_close(backward[0, 1, 0], torch.eye(slots, dtype=F64)[0])
    assert torch.all(forward[0, 2] == 0)


def test_read_modes_are_ordered_backward_forward_content() -> None:
    # Two write heads: modes (b_0, b_1, f_0, f_1, c), each picked alone by a one-hot mode.
    slots = 5
    rows = torch.eye(slots, dtype=F64)
    content = rows[4].reshape(1, 1, slots)
    forward = torch.stack([rows[0], rows[1]]).reshape(1, 1, 2, slots)
    backward = torch.stack([rows[2], rows[3]]).reshape(1, 1, 2, slots)
    picked = [2, 3, 0, 1, 4]  # the slot each mode points at
    for mode, slot in enumerate(picked):
        modes = rows[mode].reshape(1, 1, 5)
        got = read_weights(content, forward, backward, modes)
        torch.testing.assert_close(got, rows[slot].reshape(1, 1, slots), rtol=0, atol=0)


def test_write_weights_by_hand() -> None:
    alloc = t([[[1.0, 0.0]]])
    content = t([[[0.0, 1.0]]])
    got = write_weights(alloc, content, t([[0.25]]), t([[0.5]]))
    torch.testing.assert_close(got, t([[[0.125, 0.375]]]))


def test_oneplus_by_hand() -> None:
    torch.testing.assert_close(oneplus(t([0.0])), t([1.0 + math.log(2.0)]))


def test_erase_and_write_by_hand() -> None:
    # Two heads on slot 0 with erase 0.5 each: kept 0.25; writes 1 and 2 add to 3.
    memory = t([[[4.0], [4.0]]])
    write = t([[[1.0, 0.0], [1.0, 0.0]]])
    got = erase_and_write(memory, write, t([[[0.5], [0.5]]]), t([[[1.0], [2.0]]]))
    torch.testing.assert_close(got, t([[[4.0 * 0.25 + 3.0], [4.0]]]))


def test_deallocate_by_hand() -> None:
    memory = t([[[1.0, 2.0], [3.0, 4.0]]])
    torch.testing.assert_close(deallocate(memory, t([[0.0, 0.5]])), t([[[0.0, 0.0], [1.5, 2.0]]]))


def test_masked_content_ignores_masked_out_dimensions() -> None:
    # The rows differ only in dimension 1, which the mask removes: equal weights.
    memory = t([[[2.0, 0.0], [2.0, -7.0], [-1.0, 3.0]]])
    keys = t([[[1.0, 5.0]]])
    got = masked_content_weights(memory, keys, t([[math.log(2.0)]]), t([[[1.0, 0.0]]]))
    # cos = 1, 1, -1: exp(beta cos) = 2, 2, 1/2, sum 4.5.
    torch.testing.assert_close(got, t([[[4 / 9, 4 / 9, 1 / 9]]]), rtol=0, atol=1e-7)


def test_masked_content_with_a_mask_of_ones_is_content_weights() -> None:
    c = random_case(3, 2, 6, 4, 3, 1)
    memory, keys, strengths = t(c["memory"]), t(c["keys"]), t(c["strengths"])
    got = masked_content_weights(memory, keys, strengths, torch.ones_like(keys))
    torch.testing.assert_close(got, content_weights(memory, keys, strengths))


def test_masked_content_is_content_weights_on_masked_memory() -> None:
    # Each head's lookup equals plain content addressing on a memory masked for that head.
    c = random_case(4, 2, 6, 4, 3, 1)
    memory, keys, strengths, mask = (t(c[k]) for k in ("memory", "keys", "strengths", "mask"))
    got = masked_content_weights(memory, keys, strengths, mask)
    for head in range(3):
        masked = memory * mask[:, head : head + 1]  # (B, N, M)
        expected = content_weights(masked, keys[:, head : head + 1] * mask[:, head : head + 1],
                                   strengths[:, head : head + 1])
        torch.testing.assert_close(got[:, head : head + 1], expected)


def test_sharpen_directional_by_hand() -> None:
    # s = 2: squares .01 .04 .09 .16, sum .30 (the result sums to 1 though the input did not).
    got = sharpen_directional(t([[0.01, 0.02, 0.03, 0.04]]), t([2.0]))
    torch.testing.assert_close(got, t([[1 / 30, 4 / 30, 9 / 30, 16 / 30]]))
    # Per-row sharpness over a [B, R, W, N] weighting; s = 1 only normalises.
    weights = t([[[[0.2, 0.2, 0.0]], [[0.0, 0.3, 0.1]]]])
    got = sharpen_directional(weights, t([[[1.0], [3.0]]]))
    torch.testing.assert_close(got, t([[[[0.5, 0.5, 0.0]], [[0.0, 27 / 28, 1 / 28]]]]))


# -- invariants -------------------------------------------------------------------------------


@FAST
@given(shapes)
def test_usage_stays_in_the_unit_interval(shape) -> None:
    c = random_case(*shape)
    got = usage(t(c["usage"]), t(c["write"]), t(c["free_gates"]), t(c["read"]))
    assert torch.all(got >= 0) and torch.all(got <= 1)


@FAST
@given(shapes)
def test_allocation_and_write_weights_are_sub_distributions(shape) -> None:
    c = random_case(*shape)
    alloc = allocation(t(c["usage"]), t(c["write_gates"]))
    assert torch.all(alloc >= 0)
    assert torch.all(alloc.sum(-1) <= 1 + 1e-12)
    write = write_weights(alloc, t(c["content_w"]), t(c["allocation_gates"]), t(c["write_gates"]))
    assert torch.all(write >= 0)
    assert torch.all(write.sum(-1) <= 1 + 1e-12)


@pytest.mark.parametrize("writes", [1, 2, 3, 4])
def test_write_heads_allocate_different_slots_in_turn(writes) -> None:
    # A fresh memory: head 0 takes slot 0 (the first of the tied slots), and each later head
    # a whole slot that the heads before it left free. Which one is not slot w: head 0 also
    # gave slot j a usage of about eps^j, so slot 1 is then the most used of the free slots.
    alloc = allocation(torch.zeros(2, 6, dtype=F64), torch.ones(2, writes, dtype=F64))
    chosen = alloc.argmax(-1)
    assert torch.all(chosen[:, 0] == 0)
    assert all(len(set(row)) == writes for row in chosen.tolist())
    torch.testing.assert_close(alloc.amax(-1), torch.ones(2, writes, dtype=F64), atol=1e-5, rtol=0)
    # With its write gate closed, a head leaves the usage to the next one unchanged.
    gates = torch.ones(2, writes, dtype=F64)
    gates[:, 0] = 0.0
    closed = allocation(torch.zeros(2, 6, dtype=F64), gates)
    assert torch.all(closed[:, :2].argmax(-1) == 0)


@FAST
@given(shapes, st.integers(1, 6))
def test_link_and_precedence_invariants_over_several_steps(shape, steps) -> None:
    seed, batch, slots, _, _, writes = shape
    rng = np.random.default_rng(seed)
    current_link = torch.zeros(batch, writes, slots, slots, dtype=F64)
    prec = torch.zeros(batch, writes, slots, dtype=F64)
    sequence = [sub_distribution(rng, batch, writes, slots) for _ in range(steps)]
    for write in sequence:
        current_link = link(current_link, prec, t(write))
        prec = precedence(prec, t(write))
        assert torch.all(prec >= 0) and torch.all(prec.sum(-1) <= 1 + 1e-12)
        assert torch.all(current_link.diagonal(dim1=-2, dim2=-1) == 0)
        assert torch.all(current_link >= -1e-15) and torch.all(current_link <= 1 + 1e-12)
        assert torch.all(current_link.sum(-1) <= 1 + 1e-12)  # rows
        assert torch.all(current_link.sum(-2) <= 1 + 1e-12)  # columns
    expected_link, expected_precedence = np_run_links(sequence)
    assert_close(current_link, expected_link)
    assert_close(prec, expected_precedence)


@FAST
@given(shapes, st.integers(1, 4))
def test_read_weights_are_sub_distributions(shape, steps) -> None:
    seed, batch, slots, _, reads, writes = shape
    rng = np.random.default_rng(seed)
    built, _ = np_run_links([sub_distribution(rng, batch, writes, slots) for _ in range(steps)])
    c = random_case(*shape)
    forward, backward = directional_weights(t(built), t(c["read"]))
    for directional in (forward, backward):
        assert torch.all(directional >= -1e-15) and torch.all(directional.sum(-1) <= 1 + 1e-12)
    got = read_weights(t(c["content_r"]), forward, backward, t(c["modes"]))
    assert got.shape == (batch, reads, slots)
    assert torch.all(got >= -1e-15) and torch.all(got.sum(-1) <= 1 + 1e-12)


@FAST
@given(shapes)
def test_sharpen_directional_gives_distributions(shape) -> None:
    c = random_case(*shape)
    forward, _ = np_directional(c["link"], c["read"])
    got = sharpen_directional(t(forward), t(c["sharpness"]))
    assert torch.all(got >= 0)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=1e-12)
    # Scale invariance: the sharpened distribution ignores the weighting's total mass.
    assert_close(sharpen_directional(t(forward * 1e-3), t(c["sharpness"])), got.numpy(), rtol=1e-9)


def test_sharpen_directional_large_sharpness_gives_the_argmax() -> None:
    # Shuffled levels 0.1 * 0.9^k: neighbours differ by a factor 0.9, and 0.9^1000 is 1e-46.
    g = torch.Generator().manual_seed(0)
    levels = 0.1 * 0.9 ** torch.arange(9, dtype=F64)
    weights = torch.stack([levels[torch.randperm(9, generator=g)] for _ in range(24)])
    weights = weights.reshape(4, 3, 2, 9)
    got = sharpen_directional(weights, torch.full((4, 3, 2), 1000.0, dtype=F64))
    expected = torch.nn.functional.one_hot(weights.argmax(-1), 9).to(F64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_sharpen_directional_keeps_small_weights_in_float32() -> None:
    # 1e-3^30 underflows float32; dividing by the maximum first keeps the distribution.
    weights = torch.tensor([[1e-3, 2e-3, 4e-3]])
    got = sharpen_directional(weights, torch.tensor([30.0]))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.sum(-1), torch.ones(1))
    assert got[0, 2] > 0.99


def test_sharpen_directional_of_zeros_and_rounding_negatives() -> None:
    weights = torch.tensor([[0.0, 0.0, 0.0], [-1e-17, 0.5, 0.5]], dtype=F64, requires_grad=True)
    sharpness = torch.tensor([2.5, 1.5], dtype=F64, requires_grad=True)
    got = sharpen_directional(weights, sharpness)
    torch.testing.assert_close(got, t([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5]]), rtol=0, atol=1e-15)
    (got * torch.randn_like(got)).sum().backward()
    assert torch.isfinite(weights.grad).all() and torch.isfinite(sharpness.grad).all()


@pytest.mark.parametrize("zero", ["key", "row", "memory", "mask"])
def test_masked_content_zero_inputs_give_finite_values_and_gradients(zero) -> None:
    torch.manual_seed(0)
    memory, keys = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    mask = torch.rand(2, 3, 4)
    if zero == "key":
        keys[:, 1] = 0.0
    elif zero == "row":
        memory[:, 2] = 0.0
    elif zero == "memory":
        memory.zero_()
    else:
        mask[:, 0] = 0.0
    leaves = [x.requires_grad_() for x in (memory, keys, torch.full((2, 3), 5.0), mask)]
    got = masked_content_weights(*leaves)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 3))
    if zero == "memory":
        torch.testing.assert_close(got, torch.full((2, 3, 5), 0.2))
    (got * torch.randn_like(got)).sum().backward()
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)


def test_a_whole_step_from_the_zero_state_has_finite_gradients() -> None:
    # The first step of a DNC with every option: zero memory, usage, link, precedence and
    # weightings; the gradient reaches every head parameter and stays finite.
    torch.manual_seed(1)
    batch, slots, width, reads, writes = 2, 6, 4, 2, 2
    sizes = {"free": (reads,), "gate_w": (writes,), "gate_a": (writes,), "beta_w": (writes,),
             "beta_r": (reads,), "sharpness": (reads, writes), "modes": (reads, 2 * writes + 1),
             "key_w": (writes, width), "mask_w": (writes, width), "erase": (writes, width),
             "values": (writes, width), "key_r": (reads, width), "mask_r": (reads, width)}
    interface = torch.randn(batch, sum(math.prod(s) for s in sizes.values()), requires_grad=True)
    parts = interface.split([math.prod(s) for s in sizes.values()], dim=1)
    x = {name: part.reshape(batch, *sizes[name]) for name, part in zip(sizes, parts, strict=True)}
    for name in ("free", "gate_w", "gate_a", "erase", "mask_w", "mask_r"):
        x[name] = torch.sigmoid(x[name])
    for name in ("beta_w", "beta_r", "sharpness"):
        x[name] = oneplus(x[name])
    memory = torch.zeros(batch, slots, width)
    no_read = torch.zeros(batch, reads, slots)
    u = usage(torch.zeros(batch, slots), torch.zeros(batch, writes, slots), x["free"], no_read)
    content = masked_content_weights(memory, x["key_w"], x["beta_w"], x["mask_w"])
    w = write_weights(allocation(u, x["gate_w"]), content, x["gate_a"], x["gate_w"])
    memory = deallocate(memory, retention(x["free"], no_read))
    memory = erase_and_write(memory, w, x["erase"], x["values"])
    new_link = link(torch.zeros(batch, writes, slots, slots), torch.zeros(batch, writes, slots), w)
    forward, backward = directional_weights(new_link, no_read)
    forward, backward = (sharpen_directional(d, x["sharpness"]) for d in (forward, backward))
    read_content = masked_content_weights(memory, x["key_r"], x["beta_r"], x["mask_r"])
    r = read_weights(read_content, forward, backward, torch.softmax(x["modes"], -1))
    assert torch.all(forward == 0) and torch.all(backward == 0)  # nothing linked yet
    loss = (r @ memory).square().sum() + precedence(torch.zeros_like(w), w).square().sum()
    loss.backward()
    assert torch.isfinite(r).all() and torch.isfinite(interface.grad).all()
    assert interface.grad.abs().sum() > 0


def test_allocation_gradient_flows_through_the_usage() -> None:
    u = t([[0.3, 0.1, 0.6]], requires_grad=True)
    allocation(u, t([[1.0]]))[0, 0, 0].backward()
    # a[0] = (1 - u0) u1 (mapped): d/du0 < 0, d/du1 > 0, u2 comes after it in the free list.
    assert u.grad[0, 0] < 0 < u.grad[0, 1]
    assert u.grad[0, 2] == 0


# -- gradcheck (float64) ----------------------------------------------------------------------


def grad_case(seed: int = 7) -> dict:
    """Small inputs for gradcheck, all leaves requiring grad."""
    return {k: t(v, requires_grad=True) for k, v in random_case(seed, 2, 4, 3, 2, 2).items()}


def test_gradcheck_retention_and_usage() -> None:
    c = grad_case()
    assert torch.autograd.gradcheck(retention, (c["free_gates"], c["read"]))
    assert torch.autograd.gradcheck(usage, (c["usage"], c["write"], c["free_gates"], c["read"]))


def test_gradcheck_allocation() -> None:
    # Usages far apart (no ties, for the heads after the first too): the order is locally fixed.
    u = t([[0.15, 0.85, 0.5, 0.3], [0.6, 0.2, 0.9, 0.05]], requires_grad=True)
    gates = t([[0.9, 0.4], [0.7, 0.8]], requires_grad=True)
    assert torch.autograd.gradcheck(allocation, (u, gates))


def test_gradcheck_precedence_and_link() -> None:
    c = grad_case()
    assert torch.autograd.gradcheck(precedence, (c["precedence"], c["write"]))
    assert torch.autograd.gradcheck(link, (c["link"], c["precedence"], c["write"]))


def test_gradcheck_directional_and_read_weights() -> None:
    c = grad_case()
    assert torch.autograd.gradcheck(directional_weights, (c["link"], c["read"]))
    directional = directional_weights(c["link"], c["read"])
    forward, backward = (x.detach().requires_grad_() for x in directional)
    assert torch.autograd.gradcheck(read_weights, (c["content_r"], forward, backward, c["modes"]))


def test_gradcheck_write_weights() -> None:
    c = grad_case()
    alloc = allocation(c["usage"], c["write_gates"]).detach().requires_grad_()
    args = (alloc, c["content_w"], c["allocation_gates"], c["write_gates"])
    assert torch.autograd.gradcheck(write_weights, args)


def test_gradcheck_oneplus() -> None:
    assert torch.autograd.gradcheck(oneplus, (t([-3.0, 0.0, 0.5, 4.0], requires_grad=True),))


def test_gradcheck_erase_and_write_and_deallocate() -> None:
    c = grad_case()
    assert torch.autograd.gradcheck(
        erase_and_write, (c["memory"], c["write"], c["erase"], c["values"])
    )
    psi = retention(c["free_gates"], c["read"]).detach().requires_grad_()
    assert torch.autograd.gradcheck(deallocate, (c["memory"], psi))


def test_gradcheck_masked_content_weights() -> None:
    c = grad_case()
    args = (c["memory"], c["keys"], c["strengths"], c["mask"])
    assert torch.autograd.gradcheck(masked_content_weights, args)


def test_gradcheck_masked_content_weights_at_zero_key_row_and_mask() -> None:
    c = {k: v.detach().clone() for k, v in grad_case().items()}
    c["memory"][:, 1] = 0.0
    c["keys"][:, 0] = 0.0
    c["mask"][1, 1] = 0.0
    args = tuple(c[k].requires_grad_() for k in ("memory", "keys", "strengths", "mask"))
    assert torch.autograd.gradcheck(masked_content_weights, args)


def test_gradcheck_sharpen_directional() -> None:
    c = grad_case()
    forward, _ = directional_weights(c["link"], c["read"])
    assert torch.autograd.gradcheck(
        sharpen_directional, (forward.detach().requires_grad_(), c["sharpness"])
    )


# -- dtype and device -------------------------------------------------------------------------


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_float32_on_every_device_matches_float64_on_the_cpu(device) -> None:
    c = random_case(11, 2, 6, 4, 2, 2)
    here = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in c.items()}
    reference = {k: t(v) for k, v in c.items()}

    def step(x: dict) -> list[torch.Tensor]:
        u = usage(x["usage"], x["write"], x["free_gates"], x["read"])
        w = write_weights(allocation(u, x["write_gates"]), x["content_w"],
                          x["allocation_gates"], x["write_gates"])
        new_link = link(x["link"], x["precedence"], w)
        forward, backward = directional_weights(new_link, x["read"])
        forward = sharpen_directional(forward, x["sharpness"])
        r = read_weights(x["content_r"], forward, backward, x["modes"])
        memory = erase_and_write(deallocate(x["memory"], retention(x["free_gates"], x["read"])),
                                 w, x["erase"], x["values"])
        content = masked_content_weights(memory, x["keys"], x["strengths"], x["mask"])
        return [u, w, new_link, precedence(x["precedence"], w), r, memory, content,
                oneplus(x["values"])]

    for got, expected in zip(step(here), step(reference), strict=True):
        assert got.dtype == torch.float32 and got.device.type == device
        torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-4, atol=1e-5)
