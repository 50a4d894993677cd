"""Crash-safe files of a run directory: weights, resumable training state, config, metrics.

A run directory holds

- ``config.json``: the resolved :class:`~ntm.rundir.RunConfig`;
- ``metrics.jsonl``: one JSON object per logging interval, and one (``"final": true``) for the
  last step of a run that ends between two;
- ``model.safetensors``: the model's weights (what :func:`~ntm.rundir.load_run` reads);
- ``best.safetensors``: the weights at the validation with the lowest cost so far (training
  cost can spike back up late in a run, so the last weights are not always the best);
- ``training_state.safetensors``: everything a resumed run needs in one file: weights,
  optimiser state, the RNG states and the loop's counters (as JSON in the metadata).

No pickle: tensors go to safetensors and everything else to JSON. Every file is written to a
temporary file in the same directory and moved into place with :func:`os.replace`, which is
atomic, so a crash mid-write leaves the previous file whole. Resuming reads one file only, so
it never mixes two checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import RunDirError

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "atomic_write",
    "atomic_write_text",
    "load_state",
    "load_weights",
    "read_counters",
    "save_state",
    "save_weights",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "training_state.safetensors"

_META_KEY = "ntm"  # safetensors metadata is str -> str; ours is one JSON document under this key


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, flush it to disk, then move it to ``path`` atomically.

    If ``write`` or the move fails, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    # Beside the target (os.replace is atomic only within a file system); created by `write`
    # itself, so it gets the usual permissions rather than mkstemp's 0600.
    temporary = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no memory with each other.
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}


def save_weights(model: nn.Module, path: str | os.PathLike[str], metadata: dict | None = None):
    """Save ``model.state_dict()`` to a safetensors file, atomically."""
    tensors = _cpu(model.state_dict())
    meta = {_META_KEY: json.dumps(metadata or {})}
    atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=meta))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON metadata of a safetensors file; :class:`RunDirError` if unreadable."""
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
            metadata = json.loads((file.metadata() or {}).get(_META_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as error:
        raise RunDirError(f"{path} is corrupt or not a safetensors file ({error})") from None
    return tensors, metadata


def read_counters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The loop's counters saved in a state file (``step``, ``sequences``, ``val_cost``,
    ``best_step``, ...) without loading its tensors.

    Raises:
        RunDirError: the file is missing, corrupt or holds no counters.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt") as file:
            return json.loads((file.metadata() or {})[_META_KEY])["counters"]
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        raise RunDirError(f"{path} is corrupt or holds no training state ({error})") from None


def _fit(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``tensors`` into ``model``, naming the first mismatch instead of a long traceback."""
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in tensors]
    problems += [f"unexpected {key}" for key in tensors if key not in expected]
    problems += [
        f"{key} has shape {list(tensors[key].shape)}, the model expects {list(value.shape)}"
        for key, value in expected.items()
        if key in tensors and tensors[key].shape != value.shape
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RunDirError(
            f"{path} does not fit the model in config.json: {problems[0]}{more}"
        )
    model.load_state_dict(tensors)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load weights saved by :func:`save_weights` into ``model``; return their metadata.

    Raises:
        RunDirError: the file is missing, corrupt, or its tensors do not fit ``model``.
    """
    path = Path(path)
    tensors, metadata = _read(path)
    _fit(model, tensors, path)
    return metadata


def save_state(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    counters: dict[str, Any],
) -> None:
    """Save everything a run needs to continue exactly where it is, in one file, atomically.

    Args:
        path: the state file.
        model: its weights are stored under ``model.``.
        optimizer: its per-parameter tensors are stored under ``optimizer.<index>.<name>``,
            its param groups and scalars as JSON.
        generators: named generators whose states are stored under ``rng.<name>``; torch's
            global CPU generator is stored too (``rng.torch``).
        counters: JSON-serialisable loop state (step, sequences, interval sums, ...).
    """
    tensors = {f"model.{key}": value for key, value in model.state_dict().items()}
    state = optimizer.state_dict()
    scalars = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    meta = {
        "counters": counters,
        "param_groups": state["param_groups"],
        "optimizer_scalars": scalars,
    }
    tensors = _cpu(tensors)
    text = {_META_KEY: json.dumps(meta)}
    atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=text))


def load_state(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    *,
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """Restore what :func:`save_state` saved; return the counters.

    ``optional`` names generators whose states may be missing from the file (they keep their
    state then), e.g. a GPU's generator when a run trained on the CPU continues on a GPU.

    Raises:
        RunDirError: the file is missing, corrupt, or does not fit ``model``.
    """
    path = Path(path)
    tensors, meta = _read(path)
    weights = {key[6:]: value for key, value in tensors.items() if key.startswith("model.")}
    _fit(model, weights, path)
    per_parameter: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            index, name = key[len("optimizer."):].split(".", 1)
            per_parameter.setdefault(int(index), {})[name] = value
    for key, value in meta.get("optimizer_scalars", {}).items():
        index, name = key.split(".", 1)
        per_parameter.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": per_parameter, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        for name, generator in generators.items():
            if name not in optional or f"rng.{name}" in tensors:
                generator.set_state(tensors[f"rng.{name}"])
        return meta["counters"]
    except (KeyError, ValueError, RuntimeError) as error:
        raise RunDirError(f"{path} does not fit this run ({error})") from None
