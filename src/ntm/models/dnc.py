"""The Differentiable Neural Computer as registered models: ``"dnc"`` (LSTM controller) and
``"dnc-ff"`` (feedforward controller).

Both share :class:`DNCConfig`; the name fixes the controller. The defaults are those of
:class:`ntm.DNC`'s constructor, read from its signature, so that they are written once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from ..dnc import DNC
from ..fields import bounded, defaults_of
from .registry import register, resized_memory, with_controller

__all__ = ["CONTROLLERS", "DNCConfig"]

_DEFAULTS = defaults_of(DNC)

# The registered name -> the controller it fixes.
CONTROLLERS = {"dnc": "lstm", "dnc-ff": "feedforward"}


@dataclass
class DNCConfig:
    """An :class:`ntm.DNC`'s sizes and options; ``kind`` (``"dnc"`` or ``"dnc-ff"``) fixes its
    controller. ``backend``: ``"auto"`` (the C++ CPU kernel where it runs, else autograd),
    ``"kernel"`` (:mod:`ntm.backends.dnc_kernel`: CPU, one write head, no Csordas &
    Schmidhuber options) or ``"autograd"``."""

    kind: str = "dnc"
    controller_size: int = bounded(_DEFAULTS["controller_size"], min=1)
    controller_layers: int = bounded(_DEFAULTS["controller_layers"], min=1)
    memory_slots: int = bounded(_DEFAULTS["memory_slots"], min=1)  # N
    memory_width: int = bounded(_DEFAULTS["memory_width"], min=1)  # M
    read_heads: int = bounded(_DEFAULTS["read_heads"], min=1)
    write_heads: int = bounded(_DEFAULTS["write_heads"], min=1)
    content_masking: bool = _DEFAULTS["content_masking"]
    deallocation: bool = _DEFAULTS["deallocation"]
    link_sharpness: bool = _DEFAULTS["link_sharpness"]
    backend: Literal["auto", "kernel", "autograd"] = _DEFAULTS["backend"]


def _paper(kind: str, heads: int, layers: int, size: int) -> DNCConfig:
    """The NTM paper's table rows for the DNC: ``heads`` read heads (one write head, as the DNC
    paper), a controller of ``layers`` x ``size``, memory 128 x 20."""
    return DNCConfig(kind=kind, read_heads=heads, controller_layers=layers,
                     controller_size=size)


for _name, _controller in CONTROLLERS.items():
    register(_name, with_controller(DNC, CONTROLLERS), DNCConfig,
             description=f"the Differentiable Neural Computer, {_controller} controller",
             paper=functools.partial(_paper, _name), resize_memory=resized_memory,
             builtin=True)
