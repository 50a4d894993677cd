"""The Neural Turing Machine as registered models: ``"ntm-lstm"`` and ``"ntm-ff"``.

Both share :class:`NTMConfig`; the name fixes the controller (LSTM or feedforward). The
defaults are those of :class:`ntm.NTM`'s constructor, read from its signature, so that they are
written once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..fields import bounded, convert, defaults_of
from ..model import NTM
from .registry import register, resized_memory, with_controller

__all__ = ["CONTROLLERS", "NTMConfig"]

_DEFAULTS = defaults_of(NTM)

# The registered name -> the controller it fixes.
CONTROLLERS = {"ntm-lstm": "lstm", "ntm-ff": "feedforward"}

Backend = Literal["auto", "kernel", "python", "autograd"]


@dataclass
class NTMConfig:
    """An :class:`ntm.NTM`'s sizes; ``kind`` (``"ntm-lstm"`` or ``"ntm-ff"``) fixes its
    controller.

    ``backend`` picks the training path only (the weights are the same either way): ``"auto"``
    the fastest that runs (the C++ kernel on a CPU, else the Python node), ``"kernel"``,
    ``"python"``, or ``"autograd"`` (every operation recorded; the one with second
    derivatives). ``fused``, its older spelling, is read as ``backend``: true is ``"auto"``,
    false ``"autograd"``.
    """

    kind: str = "ntm-lstm"
    controller_size: int = bounded(_DEFAULTS["controller_size"], min=1)
    controller_layers: int = bounded(_DEFAULTS["controller_layers"], min=1)
    memory_slots: int = bounded(_DEFAULTS["memory_slots"], min=1)  # N
    memory_width: int = bounded(_DEFAULTS["memory_width"], min=1)  # M
    read_heads: int = bounded(_DEFAULTS["read_heads"], min=1)
    write_heads: int = bounded(_DEFAULTS["write_heads"], min=1)
    shift_range: int = bounded(_DEFAULTS["shift_range"], min=0)  # shifts -R..R
    memory_init: Literal["constant", "learned", "random"] = _DEFAULTS["memory_init"]
    backend: Backend = _DEFAULTS["backend"]


def _paper(kind: str, heads: int, layers: int, size: int) -> NTMConfig:
    """The paper's NTM: ``heads`` read/write head pairs, a controller of ``layers`` x ``size``
    (memory 128 x 20, the default, in every table)."""
    return NTMConfig(kind=kind, read_heads=heads, write_heads=heads, controller_layers=layers,
                     controller_size=size)


def _resize_memory(config: NTMConfig, memory_slots: int) -> NTMConfig:
    """``config`` with ``memory_slots`` memory rows: no weight depends on them, except a
    learned initial memory."""
    if config.memory_init == "learned" and memory_slots != config.memory_slots:
        raise ConfigError("memory_slots cannot change for a model that learned its initial "
                          "memory (model.memory_init=learned): that memory is a weight of "
                          f"{config.memory_slots} rows")
    return resized_memory(config, memory_slots)


def _fused(value: Any) -> tuple[str, str]:
    """``fused``, the older name of ``backend``: true is ``"auto"``, false ``"autograd"``."""
    return "backend", "auto" if convert(value, bool, "model.fused") else "autograd"


for _name, _controller in CONTROLLERS.items():
    register(_name, with_controller(NTM, CONTROLLERS), NTMConfig,
             description=f"the Neural Turing Machine, {_controller} controller",
             paper=functools.partial(_paper, _name), resize_memory=_resize_memory,
             aliases={"fused": _fused}, builtin=True)
