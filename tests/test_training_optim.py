"""Tests of the optimiser and gradient clipping (ntm.training.optim)."""

import pytest
import torch

from ntm.training import (
    ConfigError,
    OptimConfig,
    RunConfig,
    apply_overrides,
    build_optimizer,
    clip_gradients,
    scheduled_lr,
)
from ntm.training.optim import set_lr


def _parameter_with_gradient(values):
    parameter = torch.nn.Parameter(torch.zeros(len(values)))
    parameter.grad = torch.tensor(values)
    return parameter


def test_value_clipping_clamps_each_component():
    parameter = _parameter_with_gradient([-30.0, -10.0, -2.5, 0.0, 4.0, 12.0])
    clip_gradients([parameter], OptimConfig(clip="value", clip_value=10.0))
    assert parameter.grad.tolist() == [-10.0, -10.0, -2.5, 0.0, 4.0, 10.0]


def test_norm_clipping_rescales_the_whole_gradient():
    first, second = _parameter_with_gradient([3.0, 0.0]), _parameter_with_gradient([4.0])
    clip_gradients([first, second], OptimConfig(clip="norm", max_norm=1.0))
    torch.testing.assert_close(first.grad, torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(second.grad, torch.tensor([0.8]))


def test_no_clipping_leaves_gradients():
    parameter = _parameter_with_gradient([100.0])
    clip_gradients([parameter], OptimConfig(clip="none"))
    assert parameter.grad.item() == 100.0


def test_rmsprop_is_graves_centered_variant_with_momentum():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], OptimConfig(lr=1e-4))
    assert isinstance(optimizer, torch.optim.RMSprop)
    group = optimizer.param_groups[0]
    assert (group["alpha"], group["momentum"], group["eps"], group["centered"]) == (
        0.95, 0.9, 1e-4, True)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_one_step_moves_against_the_gradient(name):
    parameter = _parameter_with_gradient([1.0, -1.0])
    optimizer = build_optimizer([parameter], OptimConfig(name=name, lr=0.01))
    optimizer.step()
    assert parameter[0] < 0 < parameter[1]
    if name == "adam":
        assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)


def test_the_learning_rate_halves_once_per_half_life_down_to_min_lr():
    config = OptimConfig(lr=1e-3, lr_half_life=100)
    rates = [scheduled_lr(config, sequences) for sequences in (0, 99, 100, 199, 200, 350)]
    assert rates == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 1.25e-4]
    floored = OptimConfig(lr=1e-3, lr_half_life=100, min_lr=3e-4)
    assert [scheduled_lr(floored, s) for s in (0, 100, 200, 10**9)] == [1e-3, 5e-4, 3e-4, 3e-4]
    assert scheduled_lr(OptimConfig(lr=2e-3), 10**9) == 2e-3  # no half-life: constant


def test_set_lr_sets_every_group_and_says_whether_it_changed():
    first, second = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.RMSprop([{"params": [first]}, {"params": [second], "lr": 1.0}],
                                    lr=0.5)
    assert set_lr(optimizer, 0.25)
    assert [group["lr"] for group in optimizer.param_groups] == [0.25, 0.25]
    assert not set_lr(optimizer, 0.25)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
@pytest.mark.parametrize("setting", ["momentum=1", "momentum=2", "momentum=-0.5", "beta2=1",
                                     "beta2=2", "alpha=1", "alpha=1.5", "eps=0"])
def test_the_config_refuses_what_the_optimiser_rejects_or_diverges_on(name, setting):
    # Adam raised torch's "Invalid beta parameter" at the start of training; RMSProp took
    # momentum or alpha of 1 and more and trained to NaN.
    with pytest.raises(ConfigError, match=f"optim.{setting.split('=')[0]} must be"):
        apply_overrides(RunConfig(), [f"optim.name={name}", f"optim.{setting}"])


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_edge_settings_the_config_accepts_build_an_optimiser_that_steps(name):
    config = apply_overrides(RunConfig(), [f"optim.name={name}", "optim.momentum=0",
                                           "optim.alpha=0.99", "optim.beta2=0.9999",
                                           "optim.eps=1e-12", "optim.lr=0.01"]).optim
    parameter = _parameter_with_gradient([1.0, -1.0])
    optimizer = build_optimizer([parameter], config)
    optimizer.step()
    assert parameter[0] < 0 < parameter[1]
    group = optimizer.param_groups[0]
    if name == "adam":  # momentum is beta1
        assert group["betas"] == (0.0, 0.9999) and group["eps"] == 1e-12
    else:
        assert (group["momentum"], group["alpha"], group["eps"]) == (0.0, 0.99, 1e-12)


def test_value_and_norm_clipping_clamps_then_rescales():
    first, second = _parameter_with_gradient([30.0, 0.0]), _parameter_with_gradient([-4.0])
    clip_gradients([first, second], OptimConfig(clip="value+norm", clip_value=3.0, max_norm=1.0))
    # Clamped to (3, 0) and (-3): norm 3 sqrt(2), then rescaled to norm 1.
    torch.testing.assert_close(first.grad, torch.tensor([2 ** -0.5, 0.0]))
    torch.testing.assert_close(second.grad, torch.tensor([-(2 ** -0.5)]))
    small = _parameter_with_gradient([0.3, -0.4])  # inside both bounds: untouched
    clip_gradients([small], OptimConfig(clip="value+norm", clip_value=3.0, max_norm=1.0))
    assert small.grad.tolist() == pytest.approx([0.3, -0.4])


def test_cosine_and_linear_decays_reach_min_lr_at_the_end_in_steps():
    import math

    total = 10_000
    cosine = OptimConfig(lr=1e-3, schedule="cosine", min_lr=1e-5)
    linear = OptimConfig(lr=1e-3, schedule="linear")
    for sequences in (0, 2_500, 5_000, 9_999, 10_000):
        fraction = math.floor(sequences / total * 100) / 100  # 100 steps over the run
        expected = 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * fraction)) / 2
        assert scheduled_lr(cosine, sequences, total) == pytest.approx(expected, rel=1e-12)
        assert scheduled_lr(linear, sequences, total) == pytest.approx(1e-3 * (1 - fraction))
    # Piecewise constant: inside one hundredth of the run the rate does not change.
    assert scheduled_lr(cosine, 101, total) == scheduled_lr(cosine, 199, total)
    assert len({scheduled_lr(cosine, s, total) for s in [*range(0, total, 7), total]}) == 101
    with pytest.raises(ValueError, match="total_sequences"):
        scheduled_lr(cosine, 0)


def test_warmup_rises_in_ten_steps_then_hands_over_to_the_schedule():
    config = OptimConfig(lr=1e-3, warmup=1_000, lr_half_life=10_000)
    assert scheduled_lr(config, 0) == pytest.approx(1e-4)
    assert scheduled_lr(config, 99) == pytest.approx(1e-4)
    assert scheduled_lr(config, 100) == pytest.approx(2e-4)
    assert scheduled_lr(config, 999) == pytest.approx(1e-3)
    assert scheduled_lr(config, 1_000) == 1e-3
    assert scheduled_lr(config, 10_000) == 5e-4


def test_the_drop_multiplies_the_rate_and_respects_min_lr():
    config = OptimConfig(lr=2e-3, drop_below=0.1, drop_factor=0.1)
    assert scheduled_lr(config, 500) == 2e-3
    assert scheduled_lr(config, 500, dropped=True) == pytest.approx(2e-4)
    floored = OptimConfig(lr=2e-3, drop_below=0.1, drop_factor=0.01, min_lr=1e-4)
    assert scheduled_lr(floored, 500, dropped=True) == 1e-4


@pytest.mark.parametrize("setting", ["optim.schedule=exponential", "optim.clip=both",
                                     "optim.warmup=-1", "optim.drop_below=0",
                                     "optim.drop_factor=0"])
def test_the_schedule_settings_are_checked(setting):
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), [setting])
