"""ntm.functional.sparse: each equation against NumPy or hand values, invariants, gradcheck,
and the in-place step against the reference."""

import numpy as np
import pytest
import torch

from ntm.functional import NORM_EPS
from ntm.functional import sparse as S

D = torch.float64


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def _cosine_np(memory, keys):
    """[B, N, M], [B, H, M] -> [B, H, N], with the package's NORM_EPS."""
    dot = np.einsum("bhm,bnm->bhn", keys, memory)
    key_norm = np.sqrt((keys ** 2).sum(-1) + NORM_EPS)[:, :, None]
    row_norm = np.sqrt((memory ** 2).sum(-1) + NORM_EPS)[:, None, :]
    return dot / key_norm / row_norm


# -- reads -------------------------------------------------------------------------------------


def test_nearest_rows_are_the_k_most_similar_in_order():
    memory, keys = _rand(3, 50, 6), _rand(3, 2, 6, seed=1)
    rows = S.nearest_rows(memory, keys, 5)
    expected = np.argsort(-_cosine_np(memory.numpy(), keys.numpy()), axis=-1)[..., :5]
    assert rows.dtype == torch.int64 and rows.shape == (3, 2, 5)
    np.testing.assert_array_equal(rows.numpy(), expected)


def test_nearest_rows_are_a_constant_for_the_gradient():
    memory = _rand(1, 10, 3).requires_grad_()
    assert not S.nearest_rows(memory, _rand(1, 1, 3), 2).requires_grad


def test_gather_rows_indexes_each_sequence_its_own_rows():
    memory = torch.arange(2 * 5 * 3, dtype=D).view(2, 5, 3)
    rows = torch.tensor([[[4, 0]], [[1, 1]]])
    np.testing.assert_array_equal(S.gather_rows(memory, rows).numpy(),
                                  memory.numpy()[[[[0, 0]], [[1, 1]]], rows.numpy()])


def test_sparse_content_weights_against_numpy():
    rows, keys, strengths = _rand(2, 3, 4, 5), _rand(2, 3, 5, seed=1), _rand(2, 3, seed=2).exp()
    got = S.sparse_content_weights(rows, keys, strengths).numpy()
    r, k = rows.numpy(), keys.numpy()
    dot = np.einsum("bhkm,bhm->bhk", r, k)
    cosine = dot / np.sqrt((k ** 2).sum(-1) + NORM_EPS)[..., None] / np.sqrt(
        (r ** 2).sum(-1) + NORM_EPS)
    logits = strengths.numpy()[..., None] * cosine
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert (got >= 0).all()
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)


def test_a_large_strength_puts_the_weight_on_the_most_similar_row():
    rows = torch.tensor([[[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]]], dtype=D)
    weights = S.sparse_content_weights(rows, torch.tensor([[[0.0, 1.0]]], dtype=D),
                                       torch.tensor([[1e4]], dtype=D))
    torch.testing.assert_close(weights, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=D))


def test_sparse_read_is_the_weighted_sum_of_the_rows():
    rows, weights = _rand(2, 3, 4, 5), _rand(2, 3, 4, seed=1).softmax(-1)
    expected = np.einsum("bhk,bhkm->bhm", weights.numpy(), rows.numpy())
    np.testing.assert_allclose(S.sparse_read(rows, weights).numpy(), expected, rtol=1e-12)


def test_a_sparse_read_equals_the_dense_read_of_its_weighting():
    memory, rows = _rand(2, 9, 4), torch.tensor([[[3, 7]], [[0, 8]]])
    weights = torch.tensor([[[0.25, 0.75]], [[0.5, 0.5]]], dtype=D)
    dense = S.to_dense(rows, weights, 9)  # (B, 1, N)
    torch.testing.assert_close(S.sparse_read(S.gather_rows(memory, rows), weights),
                               dense @ memory)


def test_zero_rows_and_keys_give_finite_gradients():
    rows = torch.zeros(1, 1, 4, 3, dtype=D, requires_grad=True)
    keys = torch.zeros(1, 1, 3, dtype=D, requires_grad=True)
    weights = S.sparse_content_weights(rows, keys, torch.ones(1, 1, dtype=D))
    torch.testing.assert_close(weights, torch.full((1, 1, 4), 0.25, dtype=D))
    S.sparse_read(rows, weights).sum().backward()
    assert torch.isfinite(rows.grad).all() and torch.isfinite(keys.grad).all()


# -- usage and the write -----------------------------------------------------------------------


def test_least_used_is_the_oldest_row_and_the_lowest_on_ties():
    last_access = torch.tensor([[3.0, 1.0, 2.0, 1.0], [0.0, 0.0, 5.0, 0.0]])
    assert S.least_used(last_access).tolist() == [1, 0]


def test_oldest_in_blocks_against_numpy():
    last_access = torch.randint(0, 5, (3, 23)).to(D)  # blocks of 5 rows, the last of 3
    assert S.block_size(23) == 5 and S.block_size(25) == 5 and S.block_size(1) == 1
    padded = np.concatenate([last_access.numpy(), np.full((3, 2), np.inf)], 1)
    np.testing.assert_array_equal(S.oldest_in_blocks(last_access).numpy(),
                                  padded.reshape(3, 5, 5).min(-1))


@pytest.mark.parametrize("slots", [1, 7, 23, 100])
def test_least_used_by_blocks_is_the_argmin(slots):
    generator = torch.Generator().manual_seed(slots)
    for _ in range(20):
        last_access = torch.randint(0, 4, (5, slots), generator=generator).to(D)  # many ties
        oldest = S.oldest_in_blocks(last_access)
        assert torch.equal(S.least_used(last_access, oldest), last_access.argmin(-1))


def test_update_oldest_equals_computing_it_again():
    generator = torch.Generator().manual_seed(0)
    last_access = torch.randint(0, 9, (4, 50), generator=generator).to(D)
    oldest = S.oldest_in_blocks(last_access)
    rows = torch.randint(0, 50, (4, 6), generator=generator)
    changed = last_access.scatter(1, rows, torch.full((4, 6), 10.0, dtype=D))
    torch.testing.assert_close(S.update_oldest(oldest, changed, rows),
                               S.oldest_in_blocks(changed), rtol=0, atol=0)
    same = S.update_oldest(oldest, changed, rows, in_place=True)
    assert same is oldest and torch.equal(oldest, S.oldest_in_blocks(changed))


def test_write_weights_by_hand():
    prev_rows = torch.tensor([[[5, 2], [2, 7]]])  # R = 2 heads, K = 2
    prev_weights = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]], dtype=D)
    rows, weights = S.write_weights(prev_rows, prev_weights, torch.tensor([9]),
                                    torch.tensor([0.8], dtype=D), torch.tensor([0.25], dtype=D))
    assert rows.tolist() == [[5, 2, 2, 7, 9]]
    # alpha (gamma w^r' / R on the rows read, (1 - gamma) on U)
    expected = 0.8 * torch.tensor([[0.25 * 0.75 / 2, 0.25 * 0.25 / 2, 0.25 * 0.5 / 2,
                                     0.25 * 0.5 / 2, 0.75]], dtype=D)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(), torch.tensor(0.8, dtype=D))  # sums to alpha


def test_sparse_write_against_the_dense_equation():
    memory, values = _rand(2, 6, 3), _rand(2, 3, seed=1)
    rows = torch.tensor([[1, 4, 1, 2], [0, 5, 3, 5]])  # repeats add up; U is the last
    weights = _rand(2, 4, seed=2).sigmoid()
    least_used = rows[:, -1]
    got = S.sparse_write(memory, rows, weights, least_used, values)
    m, w = memory.numpy().copy(), S.to_dense(rows.unsqueeze(1), weights.unsqueeze(1), 6)
    for b in range(2):
        m[b, least_used[b]] = 0.0  # M' (1 - I^U 1^T)
    expected = m + w.squeeze(1).numpy()[:, :, None] * values.numpy()[:, None, :]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15)
    untouched = [0, 3, 5]
    np.testing.assert_array_equal(got[0, untouched].numpy(), memory[0, untouched].numpy())


def test_sparse_write_keeps_row_u_where_erase_is_false():
    memory, values = _rand(2, 6, 3), _rand(2, 3, seed=1)
    rows, least_used = torch.tensor([[1, 4], [0, 5]]), torch.tensor([4, 5])
    weights = torch.zeros(2, 2, dtype=D)  # a frozen sequence writes nothing...
    got = S.sparse_write(memory, rows, weights, least_used, values, torch.tensor([False, True]))
    torch.testing.assert_close(got[0], memory[0], rtol=0, atol=0)  # ...and erases nothing
    torch.testing.assert_close(got[1, 5], torch.zeros(3, dtype=D), rtol=0, atol=0)
    torch.testing.assert_close(got[1, :5], memory[1, :5], rtol=0, atol=0)


def test_update_last_access_by_hand():
    last_access = torch.tensor([[0.0, 4.0, 2.0, 0.0, 1.0]], dtype=D)
    rows = torch.tensor([[1, 3, 3, 4, 0]])
    # row 3 twice: 0.003 + 0.003 > delta; row 4 below delta; row 0 exactly delta (not above)
    weights = torch.tensor([[0.9, 0.003, 0.003, 0.001, S.ACCESS_DELTA]], dtype=D)
    got = S.update_last_access(last_access, rows, weights, torch.tensor([5.0], dtype=D))
    assert got.tolist() == [[0.0, 5.0, 2.0, 5.0, 1.0]]
    assert last_access.tolist() == [[0.0, 4.0, 2.0, 0.0, 1.0]]  # not changed
    same = S.update_last_access(last_access, rows, weights, torch.tensor([5.0], dtype=D),
                                in_place=True)
    assert same is last_access and same.tolist() == got.tolist()


def test_to_dense_adds_repeated_rows():
    dense = S.to_dense(torch.tensor([[[2, 0, 2]]]), torch.tensor([[[0.5, 0.25, 0.25]]]), 4)
    assert dense.tolist() == [[[0.25, 0.0, 0.75, 0.0]]]


# -- gradients ---------------------------------------------------------------------------------


def test_gradcheck_of_the_content_weights_and_the_read():
    rows = _rand(2, 2, 3, 4).requires_grad_()
    keys = _rand(2, 2, 4, seed=1).requires_grad_()
    strengths = _rand(2, 2, seed=2).exp().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda r, k, s: S.sparse_read(r, S.sparse_content_weights(r, k, s)),
        (rows, keys, strengths))


def test_gradcheck_of_the_write_weights_and_the_write():
    memory = _rand(2, 5, 3).requires_grad_()
    prev = _rand(2, 2, 2, seed=1).softmax(-1).requires_grad_()
    gates = _rand(2, 2, seed=2).sigmoid().requires_grad_()
    values = _rand(2, 3, seed=3).requires_grad_()
    prev_rows, least_used = torch.tensor([[[0, 3], [3, 1]], [[4, 2], [2, 0]]]), torch.tensor([3, 1])

    def step(memory, prev, gates, values):
        rows, weights = S.write_weights(prev_rows, prev, least_used, gates[:, 0], gates[:, 1])
        return S.sparse_write(memory, rows, weights, least_used, values)

    assert torch.autograd.gradcheck(step, (memory, prev, gates, values))


def _steps(write_and_read, memory, weights, values, steps=4, keys_seed=5, erase=False):
    """``steps`` writes and reads chained on ``memory`` (a fresh copy): final memory and every
    step's read rows' values. Rows written: the last step's read rows, then a moving U;
    with ``erase``, sequence 0 erases U on even steps only (a frozen sequence's step)."""
    memory = memory.clone()
    B, N, _ = memory.shape
    keys = _rand(B, 2, memory.size(-1), seed=keys_seed)
    read_rows = torch.tensor([[[0, 1], [1, 2]]] * B)
    reads = []
    for t in range(steps):
        least_used = torch.full((B,), (3 * t + 1) % N)
        rows = torch.cat([read_rows.flatten(1), least_used.unsqueeze(1)], 1)
        mask = torch.tensor([t % 2 == 0, True]) if erase else None
        memory, read_rows, row_values = write_and_read(
            memory, rows, weights * (t + 1) / steps, least_used, values + t,
            lambda m, changed: S.nearest_rows(m, keys, 2), mask)
        reads.append(row_values)
    return memory, torch.stack(reads)


@pytest.fixture(params=["rows", "dense"])
def tape(request, monkeypatch):
    """The in-place backward keeps the memory's gradient row by row or whole from the start
    (small memories): both must give the reference's gradients."""
    monkeypatch.setattr(S, "DENSE_GRADIENT_ELEMENTS", 0 if request.param == "rows" else 1 << 30)
    return request.param


def _step_inputs():
    return (_rand(2, 7, 3).requires_grad_(), _rand(2, 5, seed=1).sigmoid().requires_grad_(),
            _rand(2, 3, seed=2).requires_grad_())


@pytest.mark.parametrize("erase", [False, True])
@pytest.mark.parametrize("loss_on", ["reads", "memory", "both"])
def test_the_in_place_step_equals_the_reference_and_its_gradients(loss_on, erase, tape):
    inputs = _step_inputs()
    results = []
    for write_and_read in (S.write_and_read, S.write_and_read_):
        memory, reads = _steps(write_and_read, *inputs, erase=erase)
        read_grad, memory_grad = _rand(*reads.shape, seed=7), _rand(*memory.shape, seed=8)
        loss = {"reads": (reads * read_grad).sum(), "memory": (memory * memory_grad).sum(),
                "both": (reads * read_grad).sum() + memory.sum()}[loss_on]
        results.append((memory.detach(), reads.detach(), torch.autograd.grad(loss, inputs)))
    (memory, reads, grads), (memory_, reads_, grads_) = results
    torch.testing.assert_close(memory_, memory, rtol=0, atol=0)
    torch.testing.assert_close(reads_, reads, rtol=0, atol=0)
    for got, want in zip(grads_, grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_the_in_place_step_changes_the_memory_it_is_given():
    memory, weights, values = (t.detach() for t in _step_inputs())
    before = memory.clone()
    written, _, _ = S.write_and_read_(memory, torch.tensor([[1, 2], [3, 4]]), weights[:, :2],
                                      torch.tensor([2, 4]), values,
                                      lambda m, changed: torch.zeros(2, 1, 1, dtype=torch.int64))
    assert written is memory and not torch.equal(memory, before)


@pytest.mark.parametrize("erase", [False, True])
def test_gradcheck_of_the_in_place_step(erase, tape):
    def chained(memory, weights, values):
        memory, reads = _steps(S.write_and_read_, memory, weights, values, steps=3, erase=erase)
        return memory, reads

    assert torch.autograd.gradcheck(chained, _step_inputs())


def test_the_in_place_step_against_a_dense_recomputation(tape):
    """The in-place chain's gradient against dense weightings: ``M = M' (1 - I^U 1^T) +
    w^w a^T`` and ``r = M^T w^r`` over every row, with the rows the chain chose."""
    memory0, weights, values = _step_inputs()
    memory, reads = _steps(S.write_and_read_, memory0, weights, values, steps=3)
    dense = memory0.clone()
    keys = _rand(2, 2, 3, seed=5)
    read_rows = torch.tensor([[[0, 1], [1, 2]]] * 2)
    dense_reads = []
    for t in range(3):
        least_used = torch.full((2,), (3 * t + 1) % 7)
        rows = torch.cat([read_rows.flatten(1), least_used.unsqueeze(1)], 1)
        erase = 1.0 - torch.nn.functional.one_hot(least_used, 7).to(D)  # (B, N)
        w = S.to_dense(rows.unsqueeze(1), (weights * (t + 1) / 3).unsqueeze(1), 7)[:, 0]
        dense = dense * erase.unsqueeze(-1) + w.unsqueeze(-1) * (values + t).unsqueeze(1)
        read_rows = S.nearest_rows(dense, keys, 2)
        one_hot = torch.nn.functional.one_hot(read_rows, 7).to(D)  # (B, R, K, N)
        dense_reads.append(one_hot @ dense.unsqueeze(1))  # (B, R, K, M)
    dense_reads = torch.stack(dense_reads)
    torch.testing.assert_close(reads, dense_reads, rtol=0, atol=1e-12)
    grad = _rand(*reads.shape, seed=9)
    got = torch.autograd.grad((reads * grad).sum() + memory.square().sum(),
                              (memory0, weights, values))
    want = torch.autograd.grad((dense_reads * grad).sum() + dense.square().sum(),
                               (memory0, weights, values))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)


def test_the_in_place_step_saves_no_memory_sized_tensor():
    memory, weights, values = _step_inputs()
    big = _rand(2, 4096, 3).requires_grad_()
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t,
                                                  lambda t: t):
        _steps(S.write_and_read_, big, weights, values, steps=5)
    assert sizes and max(sizes) < 2 * 4096  # rows, weights and read values; never [B, N, M]
