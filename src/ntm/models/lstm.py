"""The paper's stacked-LSTM baseline as a registered model: ``"lstm"``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..baselines import LSTMBaseline
from ..fields import bounded, defaults_of
from .registry import register

__all__ = ["LSTMConfig"]

_DEFAULTS = defaults_of(LSTMBaseline)


@dataclass
class LSTMConfig:
    """An :class:`ntm.baselines.LSTMBaseline`'s sizes: ``num_layers`` layers of
    ``hidden_size`` units."""

    kind: str = "lstm"
    hidden_size: int = bounded(_DEFAULTS["hidden_size"], min=1)
    num_layers: int = bounded(_DEFAULTS["num_layers"], min=1)


def _build(config: LSTMConfig, input_size: int, output_size: int, *, device: Any = None,
           dtype: Any = None) -> LSTMBaseline:
    return LSTMBaseline(input_size, output_size, hidden_size=config.hidden_size,
                        num_layers=config.num_layers, device=device, dtype=dtype)


def _paper(heads: int, layers: int, size: int) -> LSTMConfig:
    """The paper's baseline: ``layers`` x ``size`` (it has no heads)."""
    return LSTMConfig(hidden_size=size, num_layers=layers)


register("lstm", _build, LSTMConfig, description="the paper's stacked-LSTM baseline",
         paper=_paper, builtin=True)
