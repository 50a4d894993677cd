"""Crash-safe files of a run directory: weights, resumable training state, config, metrics.

A run directory holds

- ``config.json``: the resolved :class:`~ntm.rundir.RunConfig`;
- ``metrics.jsonl``: one JSON object per logging interval, and one (``"final": true``) for the
  last step of a run that ends between two;
- ``model.safetensors``: the model's weights (what :func:`~ntm.rundir.load_run` reads);
- ``best.safetensors``: the weights at the validation with the lowest cost so far (training
  cost can spike back up late in a run, so the last weights are not always the best);
- ``training_state.safetensors``: everything a resumed run needs in one file: weights,
  optimiser state, the RNG states and the loop's counters (as JSON in the metadata), and
  the snapshot a rewind goes back to (``train.rewind_above``), if it keeps one.

No pickle: tensors go to safetensors and everything else to JSON. Every file is written to a
temporary file in the same directory and moved into place with :func:`os.replace`, which is
atomic, so a crash or a failed write leaves the previous file whole (:mod:`ntm.rundir.files`).
Resuming reads one file only, so it never mixes two checkpoints.

Every safetensors file written here records a CRC-32 of each tensor (its dtype, shape and
bytes) and of the JSON metadata, under ``ntm.crc32`` in the safetensors metadata; loading
checks them, so flipped bytes on a disk or in a copy are an error naming the file and the
tensor instead of NaN weights. A file without them (written before they were, or by another
program) loads unchecked. CRC-32, not a cryptographic hash: it guards against accidents, and a
checksum stored in the file itself cannot guard against tampering whatever its strength; it
costs about 0.5 ms per MB on the development machine, against 1.2 for SHA-256 (measured with
zlib and hashlib on 100 MB, 2026-12-06).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from ..errors import RunDirError
from .files import append_text, atomic_write, atomic_write_bytes, atomic_write_text, write_error

__all__ = [
    "BEST_FILE",
    "CHECKSUM_KEY",
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "append_text",
    "atomic_write",
    "atomic_write_text",
    "checksums",
    "load_state",
    "load_weights",
    "read_counters",
    "read_snapshot",
    "save_state",
    "save_weights",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "training_state.safetensors"

_SNAPSHOT = "rewind."  # the prefix of a rewind's snapshot in the state file
_META_KEY = "ntm"  # safetensors metadata is str -> str; ours is one JSON document under this key
CHECKSUM_KEY = "ntm.crc32"  # JSON {tensor name: CRC-32 as 8 hex digits, "__metadata__": ...}
_METADATA = "__metadata__"  # safetensors reserves this name, so no tensor can have it
_NUMPY_DTYPES = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32,
                 torch.int16, torch.int8, torch.uint8, torch.bool}


def checksums(tensors: dict[str, torch.Tensor], metadata_text: str) -> dict[str, str]:
    """The CRC-32 of each tensor (contiguous, on the CPU) and of the metadata text: what
    :data:`CHECKSUM_KEY` records."""
    sums = {key: f"{_crc32(tensor):08x}" for key, tensor in tensors.items()}
    sums[_METADATA] = f"{zlib.crc32(metadata_text.encode('utf-8')):08x}"
    return sums


def _crc32(tensor: torch.Tensor) -> int:
    """CRC-32 of a tensor's dtype, shape and bytes (as stored: safetensors is little-endian,
    as are the CPUs torch runs on)."""
    described = zlib.crc32(f"{tensor.dtype} {list(tensor.shape)}".encode())
    # Both share the tensor's memory: no copy. NumPy has no bfloat16, hence the byte view.
    data = (tensor.numpy() if tensor.dtype in _NUMPY_DTYPES
            else tensor.reshape(-1).view(torch.uint8).numpy())
    return zlib.crc32(data, described)


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: Any) -> None:
    """Write ``tensors`` and JSON ``metadata`` to a safetensors file with checksums, atomically.

    Raises:
        WriteError: the file cannot be written, or ``metadata`` is not JSON (nothing written).
    """
    existed = path.exists()
    try:
        text = json.dumps(metadata)
        tensors = _cpu(tensors)
        header = {_META_KEY: text, CHECKSUM_KEY: json.dumps(checksums(tensors, text))}
        data = save(tensors, metadata=header)
    except (TypeError, ValueError, SafetensorError) as error:  # JSON's and the serialiser's
        raise write_error(path, error, existed=existed) from error
    atomic_write_bytes(path, data)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no memory with each other.
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}


def save_weights(model: nn.Module, path: str | os.PathLike[str], metadata: dict | None = None):
    """Save ``model.state_dict()`` to a safetensors file, atomically."""
    _save(Path(path), model.state_dict(), metadata or {})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON metadata of a safetensors file, checked against its checksums if it
    has them; :class:`RunDirError` if it is unreadable or they do not match."""
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
            header = file.metadata() or {}
        text = header.get(_META_KEY, "{}")
        _verify(path, header, text, tensors)
        metadata = json.loads(text)
    except (SafetensorError, OSError, ValueError) as error:
        raise RunDirError(f"{path} is corrupt or not a safetensors file ({error})") from None
    return tensors, metadata


def _verify(path: Path, header: dict[str, str], text: str,
            tensors: dict[str, torch.Tensor] | None) -> None:
    """Compare the checksums recorded in ``header`` (none: nothing to check) with those of
    the metadata ``text`` and, unless ``None``, of ``tensors``.

    Raises:
        RunDirError: a mismatch, naming the tensor (or the metadata) and the file.
    """
    if CHECKSUM_KEY not in header:
        return  # written before checksums were, or by another program
    recorded = json.loads(header[CHECKSUM_KEY])
    if not isinstance(recorded, dict):
        raise ValueError(f"{CHECKSUM_KEY} is not a JSON object")
    actual = checksums(tensors or {}, text)
    names = [_METADATA] if tensors is None else sorted(set(recorded) | set(actual))
    for name in names:
        if recorded.get(name) == actual.get(name):
            continue
        what = "its metadata" if name == _METADATA else f"tensor {name}"
        if name not in recorded:
            problem = "has no recorded checksum"
        elif name not in actual:
            problem = "is missing"
        else:
            problem = "does not match the checksum recorded when the file was written"
        raise RunDirError(f"{path} is corrupt: {what} {problem} (the file was damaged after "
                          "it was written, on the disk or in a copy); restore it from a copy "
                          "or train again")


def read_counters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The loop's counters saved in a state file (``step``, ``sequences``, ``val_cost``,
    ``best_step``, ...) without loading its tensors (only the metadata's checksum is checked).

    Raises:
        RunDirError: the file is missing, corrupt or holds no counters.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt") as file:
            header = file.metadata() or {}
        _verify(path, header, header[_META_KEY], None)
        return json.loads(header[_META_KEY])["counters"]
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
    # Training never saves such weights (it stops first), so they come from damage that no
    # checksum caught: a file written before checksums were, or by another program.
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise RunDirError(f"{path} is corrupt: {key} holds NaN or infinite values, which "
                              "training never saves")
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
    snapshot: dict[str, Any] | None = None,
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
        snapshot: the weights and optimiser state a rewind goes back to
            (:func:`ntm.training.rewinds.take_snapshot`), stored under ``rewind.``; read it
            with :func:`read_snapshot`.
    """
    tensors = {f"model.{key}": value for key, value in model.state_dict().items()}
    state = optimizer.state_dict()
    optimizer_tensors, scalars = _split_optimizer_state(state["state"])
    tensors.update({f"optimizer.{key}": value for key, value in optimizer_tensors.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    meta = {
        "counters": counters,
        "param_groups": state["param_groups"],
        "optimizer_scalars": scalars,
    }
    if snapshot is not None:
        tensors.update({f"{_SNAPSHOT}model.{key}": value
                        for key, value in snapshot["model"].items()})
        snapshot_tensors, meta["rewind_optimizer_scalars"] = _split_optimizer_state(
            snapshot["optimizer"])
        tensors.update({f"{_SNAPSHOT}optimizer.{key}": value
                        for key, value in snapshot_tensors.items()})
    _save(Path(path), tensors, meta)


def _split_optimizer_state(
        state: dict[Any, dict[str, Any]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's per-parameter state as tensors and JSON scalars, both keyed
    ``<index>.<name>``."""
    tensors, scalars = {}, {}
    for index, values in state.items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, scalars


def _join_optimizer_state(tensors: dict[str, torch.Tensor],
                          scalars: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The inverse of :func:`_split_optimizer_state`."""
    per_parameter: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *scalars.items()]:
        index, name = key.split(".", 1)
        per_parameter.setdefault(int(index), {})[name] = value
    return per_parameter


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rewind snapshot that :func:`save_state` stored in the state file ``path``, or None
    if it stored none.

    Raises:
        RunDirError: the file is missing or corrupt.
    """
    tensors, meta = _read(Path(path))
    model = {key.removeprefix(f"{_SNAPSHOT}model."): value for key, value in tensors.items()
             if key.startswith(f"{_SNAPSHOT}model.")}
    if not model:
        return None
    optimizer = {key.removeprefix(f"{_SNAPSHOT}optimizer."): value
                 for key, value in tensors.items() if key.startswith(f"{_SNAPSHOT}optimizer.")}
    return {"model": model, "optimizer": _join_optimizer_state(
        optimizer, meta.get("rewind_optimizer_scalars", {}))}


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
    per_parameter = _join_optimizer_state(
        {key[len("optimizer."):]: value for key, value in tensors.items()
         if key.startswith("optimizer.")},
        meta.get("optimizer_scalars", {}))
    try:
        optimizer.load_state_dict({"state": per_parameter, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        for name, generator in generators.items():
            if name not in optional or f"rng.{name}" in tensors:
                generator.set_state(tensors[f"rng.{name}"])
        return meta["counters"]
    except (KeyError, ValueError, RuntimeError) as error:
        raise RunDirError(f"{path} does not fit this run ({error})") from None
