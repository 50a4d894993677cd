"""The optimiser and gradient clipping of a run, built from :class:`OptimConfig`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .config import OptimConfig

__all__ = ["RMSPROP_EPS", "ADAM_EPS", "build_optimizer", "clip_gradients", "scheduled_lr",
           "set_capturable", "set_lr"]

RMSPROP_EPS = 1e-4  # Graves (2013), eq. 41: the k added to the second-moment estimate
ADAM_EPS = 1e-8  # PyTorch's and Kingma & Ba's default


def build_optimizer(params: Iterable[nn.Parameter], config: OptimConfig, *,
                    capturable: bool = False) -> torch.optim.Optimizer:
    """The optimiser described by ``config``; ``capturable`` lets a CUDA graph capture its step
    (PyTorch's option of that name, for parameters on a CUDA device).

    RMSProp is PyTorch's centered variant with momentum, which is Graves' (2013, eqs. 38-41)
    up to where ``eps`` sits: Graves divides by ``sqrt(n - g^2 + eps)``, PyTorch by
    ``sqrt(n - g^2) + eps``. Both keep the step finite where the gradient variance vanishes.
    """
    params = list(params)
    if config.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=config.lr,
            alpha=config.alpha,
            eps=RMSPROP_EPS if config.eps is None else config.eps,
            momentum=config.momentum,
            centered=config.centered,
            capturable=capturable,
        )
    if config.name == "adam":
        return torch.optim.Adam(
            params,
            lr=config.lr,
            betas=(config.momentum, config.beta2),
            eps=ADAM_EPS if config.eps is None else config.eps,
            capturable=capturable,
        )
    raise ValueError(f"unknown optimiser {config.name!r}")  # OptimConfig rules this out


def scheduled_lr(config: OptimConfig, sequences: int) -> float:
    """The learning rate after ``sequences`` training sequences: ``config.lr`` halved once per
    full ``config.lr_half_life`` sequences, and never below ``config.min_lr``.

    >>> scheduled_lr(OptimConfig(lr=1e-3, lr_half_life=1000), 2500)
    0.00025
    """
    if config.lr_half_life is None:
        return config.lr
    halvings = sequences // config.lr_half_life
    return max(config.min_lr, config.lr * 0.5 ** halvings)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> bool:
    """Give every parameter group of ``optimizer`` the learning rate ``lr``; True if it changed."""
    changed = False
    for group in optimizer.param_groups:
        changed |= group["lr"] != lr
        group["lr"] = lr
    return changed


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Switch ``optimizer``'s ``capturable`` option, e.g. after loading the state of a run
    trained on another device (the loaded groups carry that run's setting); a capturable
    optimiser keeps its step counts beside the parameters, a plain one on the CPU."""
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = capturable
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            if torch.is_tensor(state.get("step")):
                device = parameter.device if capturable else torch.device("cpu")
                state["step"] = state["step"].to(device)


def clip_gradients(params: Iterable[nn.Parameter], config: OptimConfig) -> None:
    """Clip the gradients of ``params`` in place as ``config.clip`` says.

    ``"value"`` clamps every component to ``[-clip_value, clip_value]`` (the paper's element-wise
    clipping to (-10, 10)); ``"norm"`` rescales all gradients together to a global L2 norm of at
    most ``max_norm``; ``"none"`` leaves them.
    """
    if config.clip == "value":
        torch.nn.utils.clip_grad_value_(params, config.clip_value)
    elif config.clip == "norm":
        torch.nn.utils.clip_grad_norm_(params, config.max_norm)
