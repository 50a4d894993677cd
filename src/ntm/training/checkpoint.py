"""Crash-safe files of a run directory: :mod:`ntm.rundir.checkpoint`, re-exported under its older
name (training writes them, reading a run needs them too)."""

from __future__ import annotations

import os  # noqa: F401 - ntm.training.checkpoint.os, as before

from ..rundir.checkpoint import (
    BEST_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STATE_FILE,
    append_text,
    atomic_write,
    atomic_write_text,
    load_state,
    load_weights,
    read_counters,
    read_snapshot,
    save_state,
    save_weights,
)

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "append_text",
    "atomic_write",
    "atomic_write_text",
    "load_state",
    "load_weights",
    "read_counters",
    "read_snapshot",
    "save_state",
    "save_weights",
]
