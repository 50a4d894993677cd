"""The split of the controller output into head parameters: sizes, activations, clip, order.

The reference split is re-derived here from the table in ``ntm.heads.HeadLayout``'s docstring,
``[keys, add | gates, erase | key_strengths, sharpening | shift_weights]``, with each per-head
block laid out head by head (read heads first), and the activations README.md lists: key tanh,
beta softplus, g sigmoid, s softmax, gamma 1 + softplus, erase sigmoid, add tanh, after
clipping the raw values to +-20 (Collier & Beel 2018).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntm.heads import HeadLayout, HeadParameters, HeadProjection

CLIP = 20.0


def np_softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_blocks(read_heads: int, write_heads: int, width: int, shift_range: int):
    """(name, start, end, per-head shape) of every block, in order."""
    heads, shifts = read_heads + write_heads, 2 * shift_range + 1
    widths = [
        ("keys", heads * width, (heads, width)),
        ("add", write_heads * width, (write_heads, width)),
        ("gates", heads, (heads,)),
        ("erase", write_heads * width, (write_heads, width)),
        ("key_strengths", heads, (heads,)),
        ("sharpening", heads, (heads,)),
        ("shift_weights", heads * shifts, (heads, shifts)),
    ]
    blocks, start = [], 0
    for name, size, shape in widths:
        blocks.append((name, start, start + size, shape))
        start += size
    return blocks


def np_activate(raw: np.ndarray, read_heads, write_heads, width, shift_range) -> dict:
    """[B, size] -> {name: [B, *shape]}, activated."""
    raw = np.clip(raw, -CLIP, CLIP)
    batch = raw.shape[0]
    out = {}
    for name, start, end, shape in reference_blocks(read_heads, write_heads, width, shift_range):
        block = raw[:, start:end].reshape(batch, *shape)
        if name in ("keys", "add"):
            out[name] = np.tanh(block)
        elif name in ("gates", "erase"):
            out[name] = np_sigmoid(block)
        elif name == "key_strengths":
            out[name] = np_softplus(block)
        elif name == "sharpening":
            out[name] = 1.0 + np_softplus(block)
        else:
            e = np.exp(block - block.max(-1, keepdims=True))
            out[name] = e / e.sum(-1, keepdims=True)
    return out


CONFIGS = [(1, 1, 20, 1), (2, 1, 3, 1), (1, 3, 4, 2), (4, 4, 5, 0)]


@pytest.mark.parametrize(("read_heads", "write_heads", "width", "shift_range"), CONFIGS)
def test_layout_size_is_the_formula(read_heads, write_heads, width, shift_range) -> None:
    heads = read_heads + write_heads
    # keys H*M + add W*M + gates H + erase W*M + beta H + gamma H + shifts H*(2R+1)
    expected = heads * width + 2 * write_heads * width + 3 * heads + heads * (2 * shift_range + 1)
    layout = HeadLayout(read_heads, write_heads, width, shift_range)
    assert layout.size == expected
    projection = HeadProjection(7, read_heads, write_heads, width, shift_range)
    assert projection.linear.out_features == expected
    assert projection.linear.in_features == 7


def test_layout_size_of_the_paper_copy_model_by_hand() -> None:
    # One read and one write head, M = 20, R = 1: 40 + 20 + 2 + 20 + 2 + 2 + 6.
    assert HeadLayout(1, 1, 20, 1).size == 92


def test_the_split_table_is_the_documented_order() -> None:
    layout = HeadLayout(2, 3, 4, 1)
    reference = [(name, end - start) for name, start, end, _ in reference_blocks(2, 3, 4, 1)]
    assert [(name, width) for name, width, _ in layout.blocks] == reference
    activations = {name: activation for name, _, activation in layout.blocks}
    assert activations == {
        "keys": "tanh",
        "add": "tanh",
        "gates": "sigmoid",
        "erase": "sigmoid",
        "key_strengths": "softplus",
        "sharpening": "softplus",  # plus 1, applied after the split
        "shift_weights": "softmax",
    }


@pytest.mark.parametrize(("read_heads", "write_heads", "width", "shift_range"), CONFIGS)
def test_activate_matches_numpy(read_heads, write_heads, width, shift_range) -> None:
    layout = HeadLayout(read_heads, write_heads, width, shift_range)
    rng = np.random.default_rng(read_heads * 10 + write_heads)
    raw = rng.normal(scale=8.0, size=(3, layout.size))  # some beyond +-20
    raw[0, :4] = [25.0, -25.0, 1e6, -1e6]
    expected = np_activate(raw, read_heads, write_heads, width, shift_range)
    got = layout.activate(torch.tensor(raw))
    assert isinstance(got, HeadParameters)
    for name in HeadParameters._fields:
        np.testing.assert_allclose(
            getattr(got, name).numpy(), expected[name], rtol=1e-12, atol=1e-14, err_msg=name
        )


def test_every_block_gets_its_activation_range() -> None:
    read_heads, write_heads, width, shift_range = 2, 2, 4, 1
    layout = HeadLayout(read_heads, write_heads, width, shift_range)
    torch.manual_seed(0)
    # float32; in (-4, 4), away from where tanh and sigmoid round to +-1 in float32
    p = layout.activate(torch.rand(16, layout.size) * 8 - 4)
    heads = read_heads + write_heads
    assert p.keys.shape == (16, heads, width)
    assert p.key_strengths.shape == (16, heads)
    assert p.gates.shape == (16, heads)
    assert p.shift_weights.shape == (16, heads, 3)
    assert p.sharpening.shape == (16, heads)
    assert p.erase.shape == (16, write_heads, width)
    assert p.add.shape == (16, write_heads, width)
    for name in ("keys", "add"):
        t = getattr(p, name)
        assert torch.all(t > -1) and torch.all(t < 1), name
    for name in ("gates", "erase"):
        t = getattr(p, name)
        assert torch.all(t > 0) and torch.all(t < 1), name
    assert torch.all(p.key_strengths > 0)
    assert torch.all(p.sharpening >= 1)
    assert torch.all(p.shift_weights >= 0)
    torch.testing.assert_close(p.shift_weights.sum(-1), torch.ones(16, heads))


def test_saturated_raw_values_stay_in_the_closed_ranges() -> None:
    layout = HeadLayout(1, 1, 3, 1)
    for value in (1e30, -1e30):
        p = layout.activate(torch.full((1, layout.size), value))
        for t in p:
            assert torch.isfinite(t).all()
        assert torch.all(p.keys.abs() <= 1) and torch.all(p.add.abs() <= 1)
        assert torch.all((p.gates >= 0) & (p.gates <= 1))
        assert torch.all(p.key_strengths >= 0) and torch.all(p.sharpening >= 1)
        torch.testing.assert_close(p.shift_weights.sum(-1), torch.ones(1, 2))


def test_clipping_bounds_strength_and_sharpening() -> None:
    layout = HeadLayout(1, 1, 3, 1)
    (_, strengths_start, _, _), (_, sharpening_start, _, _) = [
        b for b in reference_blocks(1, 1, 3, 1) if b[0] in ("key_strengths", "sharpening")
    ]
    raw = torch.zeros(2, layout.size, dtype=torch.float64)
    raw[0, strengths_start] = 1e9
    raw[0, sharpening_start] = 1e9
    raw[1, strengths_start] = -1e9
    p = layout.activate(raw)
    softplus_20 = math.log1p(math.exp(20.0))  # 20 + 2.06e-9
    assert p.key_strengths[0, 0].item() == pytest.approx(softplus_20, rel=1e-15)
    assert p.sharpening[0, 0].item() == pytest.approx(1.0 + softplus_20, rel=1e-15)
    assert p.key_strengths[1, 0].item() == pytest.approx(math.log1p(math.exp(-20.0)), rel=1e-12)


def test_clipping_applies_to_shift_logits() -> None:
    layout = HeadLayout(1, 1, 3, 1)
    shifts_start = reference_blocks(1, 1, 3, 1)[-1][1]
    raw = torch.zeros(1, layout.size, dtype=torch.float64)
    raw[0, shifts_start : shifts_start + 3] = torch.tensor([1e6, -1e6, 0.0])
    expected = torch.softmax(torch.tensor([20.0, -20.0, 0.0], dtype=torch.float64), 0)
    torch.testing.assert_close(layout.activate(raw).shift_weights[0, 0], expected)


def test_each_raw_entry_moves_only_its_own_parameter() -> None:
    read_heads, write_heads, width, shift_range = 2, 1, 3, 1
    layout = HeadLayout(read_heads, write_heads, width, shift_range)
    base = layout.activate(torch.zeros(1, layout.size, dtype=torch.float64))
    seen = 0
    for name, start, end, shape in reference_blocks(read_heads, write_heads, width, shift_range):
        for index in range(start, end):
            raw = torch.zeros(1, layout.size, dtype=torch.float64)
            raw[0, index] = 3.0
            moved = layout.activate(raw)
            for other in HeadParameters._fields:
                changed = getattr(moved, other) != getattr(base, other)
                if other != name:
                    assert not changed.any(), f"raw[{index}] ({name}) moved {other}"
                    continue
                position = np.unravel_index(index - start, shape)
                expected = torch.zeros_like(changed)
                if name == "shift_weights":
                    expected[(0, position[0])] = True  # the softmax moves the head's whole row
                else:
                    expected[(0, *position)] = True
                assert torch.equal(changed, expected), f"raw[{index}] -> {name}{position}"
            seen += 1
    assert seen == layout.size


def test_projection_is_linear_then_activate() -> None:
    torch.manual_seed(1)
    projection = HeadProjection(5, 1, 2, 4, 1, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    raw = x @ projection.linear.weight.T + projection.linear.bias
    got, expected = projection(x), projection.layout.activate(raw)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    assert projection.linear.weight.dtype == torch.float64


def test_gradcheck_activate() -> None:
    torch.manual_seed(1)
    layout = HeadLayout(2, 1, 2, 1)
    raw = (torch.randn(2, layout.size, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda r: tuple(layout.activate(r)), (raw,))
