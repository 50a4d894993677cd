"""The optimiser and gradient clipping of a run, built from :class:`OptimConfig`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .config import OptimConfig

__all__ = ["RMSPROP_EPS", "ADAM_EPS", "DECAY_STEPS", "WARMUP_STEPS", "build_optimizer",
           "clip_gradients", "gradient_norm", "outlier_gradient", "remember_norm", "scheduled_lr",
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


# The continuous schedules change the rate in steps, so that updates replayed from CUDA
# graphs (which hold the rate) are recaptured a bounded number of times: a decay in 100, a
# warm-up in 10.
DECAY_STEPS = 100
WARMUP_STEPS = 10


def scheduled_lr(config: OptimConfig, sequences: int, total_sequences: int | None = None, *,
                 dropped: bool = False) -> float:
    """The learning rate of the update after ``sequences`` training sequences.

    ``config.lr``, times: the warm-up's linear rise over ``config.warmup`` sequences (in
    :data:`WARMUP_STEPS` steps, the first at a tenth); the decay ``config.schedule`` from 1 at
    the start to 0 at ``total_sequences`` (the run's length; ``"cosine"``:
    ``(1 + cos(pi x)) / 2``, ``"linear"``: ``1 - x``, for the fraction ``x`` of the run, in
    :data:`DECAY_STEPS` steps); one half per full ``config.lr_half_life`` sequences; and
    ``config.drop_factor`` once ``dropped`` (a validation went under ``config.drop_below``).
    Never below ``config.min_lr``, except during the warm-up.

    >>> scheduled_lr(OptimConfig(lr=1e-3, lr_half_life=1000), 2500)
    0.00025
    >>> scheduled_lr(OptimConfig(lr=1e-3, schedule="linear"), 500, 1000)
    0.0005
    >>> scheduled_lr(OptimConfig(lr=1e-3, warmup=1000), 0)
    0.0001
    """
    lr = config.lr
    if config.schedule != "constant":
        if total_sequences is None:
            raise ValueError(f"schedule {config.schedule!r} needs the run's total_sequences")
        done = min(1.0, sequences / max(total_sequences, 1))
        done = math.floor(done * DECAY_STEPS) / DECAY_STEPS
        decay = (1 + math.cos(math.pi * done)) / 2 if config.schedule == "cosine" else 1 - done
        lr = config.min_lr + (lr - config.min_lr) * decay
    if config.lr_half_life is not None:
        lr *= 0.5 ** (sequences // config.lr_half_life)
    if dropped:
        lr *= config.drop_factor
    lr = max(config.min_lr, lr)
    if sequences < config.warmup:
        lr *= (math.floor(sequences / config.warmup * WARMUP_STEPS) + 1) / WARMUP_STEPS
    return lr


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
    most ``max_norm``; ``"value+norm"`` does the first, then the second; ``"none"`` leaves them.
    """
    params = list(params)
    if config.clip in ("value", "value+norm"):
        torch.nn.utils.clip_grad_value_(params, config.clip_value)
    if config.clip in ("norm", "value+norm"):
        torch.nn.utils.clip_grad_norm_(params, config.max_norm)


def gradient_norm(params: Iterable[nn.Parameter]) -> float:
    """The L2 norm of the gradients of ``params`` together (those that have one), as a float:
    what :func:`outlier_gradient` judges, before any clip."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def outlier_gradient(norm: float, recent_norms: Sequence[float], config: OptimConfig) -> bool:
    """Whether the update of a gradient of norm ``norm`` is skipped (``optim.skip_above``).

    It is when the norm is not finite, or, once ``config.skip_window`` norms have been
    measured, more than ``config.skip_above`` times the median of the last ``skip_window``
    (``recent_norms``, the skipped ones among them: after a jump of the gradients to a new
    level for good, about half a window is skipped before the median catches up; gradients
    that keep growing fast may be skipped for longer). ``skip_above=None``: never.

    >>> config = OptimConfig(skip_above=10, skip_window=3)
    >>> recent = [1.0, 2.0, 9.0]  # median 2
    >>> outlier_gradient(25.0, recent, config), outlier_gradient(15.0, recent, config)
    (True, False)
    >>> outlier_gradient(1e9, [1.0, 2.0], config)  # not yet a window of norms
    False
    """
    if config.skip_above is None:
        return False
    if not math.isfinite(norm):
        return True
    return (len(recent_norms) >= config.skip_window
            and norm > config.skip_above * statistics.median(recent_norms[-config.skip_window:]))


def remember_norm(recent_norms: list[float], norm: float, window: int) -> None:
    """Append a finite ``norm`` to ``recent_norms`` in place, keeping the last ``window``."""
    if math.isfinite(norm):
        recent_norms.append(norm)
        del recent_norms[:-window]
