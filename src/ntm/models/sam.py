"""Sparse access memory as registered models: ``"sam"`` (LSTM controller) and ``"sam-ff"``
(feedforward controller).

Both share :class:`SAMConfig`; the name fixes the controller. The defaults are those of
:class:`ntm.SAM`'s constructor, read from its signature, so that they are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..fields import bounded, defaults_of
from ..sam import SAM
from .registry import register, resized_memory, with_controller

__all__ = ["CONTROLLERS", "SAMConfig"]

_DEFAULTS = defaults_of(SAM)

# The registered name -> the controller it fixes.
CONTROLLERS = {"sam": "lstm", "sam-ff": "feedforward"}


@dataclass
class SAMConfig:
    """An :class:`ntm.SAM`'s sizes and options; ``kind`` (``"sam"`` or ``"sam-ff"``) fixes its
    controller. ``index``: ``"auto"``, ``"exact"`` or ``"faiss"``; ``backend``: ``"auto"`` (in
    place) or ``"autograd"`` (the reference)."""

    kind: str = "sam"
    controller_size: int = bounded(_DEFAULTS["controller_size"], min=1)
    controller_layers: int = bounded(_DEFAULTS["controller_layers"], min=1)
    memory_slots: int = bounded(_DEFAULTS["memory_slots"], min=1)  # N
    memory_width: int = bounded(_DEFAULTS["memory_width"], min=1)  # M
    read_heads: int = bounded(_DEFAULTS["read_heads"], min=1)  # R
    sparse_reads: int = bounded(_DEFAULTS["sparse_reads"], min=1)  # K
    index: Literal["auto", "exact", "faiss"] = _DEFAULTS["index"]
    backend: Literal["auto", "autograd"] = _DEFAULTS["backend"]


for _name, _controller in CONTROLLERS.items():
    register(_name, with_controller(SAM, CONTROLLERS), SAMConfig,
             description=f"sparse access memory (Rae et al. 2016), {_controller} controller",
             resize_memory=resized_memory, builtin=True)
