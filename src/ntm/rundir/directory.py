"""Reading run directories back: their config, metrics and weights, and the shipped runs.

A run is named by its directory or by ``"pretrained:NAME"``, a run shipped inside the package
(``ntm/pretrained/NAME/``). The shipped folder is found by its place beside this package, so
reading a run never imports :mod:`ntm.pretrained` (which reads runs with this module).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..errors import ConfigError, RunDirError
from .build import build_model, build_task
from .checkpoint import BEST_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, load_weights
from .config import RunConfig

__all__ = [
    "DEFAULT_SHIPPED_MODEL",
    "FLOAT_DTYPES",
    "PRETRAINED_PREFIX",
    "SHIPPED_DIR",
    "available_devices",
    "check_device",
    "check_dtype",
    "load_run",
    "parse_metrics",
    "read_config",
    "read_metrics",
    "resolve_run_dir",
    "shipped_names",
    "shipped_run_dir",
    "weights_config",
    "weights_file",
    "weights_model_config",
]

PRETRAINED_PREFIX = "pretrained:"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "pretrained"  # ntm/pretrained/
DEFAULT_SHIPPED_MODEL = models.DEFAULT_MODEL  # "pretrained:copy" is "pretrained:copy-ntm-lstm"
# The dtypes weights can be loaded in (the model may refuse one: the NTM refuses float16).
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def shipped_names() -> list[str]:
    """Names of the shipped runs, ``"TASK-MODEL"``, sorted."""
    return sorted(path.parent.name for path in SHIPPED_DIR.glob(f"*/{MODEL_FILE}"))


def shipped_run_dir(name: str) -> Path:
    """The directory of a shipped run: ``"copy"`` (the LSTM-controller NTM) or
    ``"copy-ntm-ff"``.

    Raises:
        KeyError: no such run; the message lists the shipped ones.
    """
    available = shipped_names()
    for candidate in (name, f"{name}-{DEFAULT_SHIPPED_MODEL}"):
        if candidate in available:
            return SHIPPED_DIR / candidate
    raise KeyError(f"shipped models: {', '.join(available) or 'none'}")


def resolve_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The directory of a run; ``"pretrained:NAME"`` names a run shipped with the package.

    Raises:
        RunDirError: the directory (or the pretrained run) does not exist.
    """
    text = os.fspath(run_dir)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX):]
        try:
            return shipped_run_dir(name)
        except KeyError as error:
            reason = error.args[0] if error.args else ""  # str(KeyError) adds quotes
            raise RunDirError(f"no pretrained run {name!r}; {reason}") from None
    path = Path(text)
    if path.is_file():
        raise RunDirError(f"{text} is a file, not a run directory; give the directory that "
                          "holds it (with config.json), e.g. "
                          f"{path.parent if str(path.parent) != '.' else 'runs/NAME'}")
    if not path.is_dir():
        raise RunDirError(f"run directory {text} does not exist")
    return path


def weights_file(source: str | os.PathLike[str]) -> Path:
    """The weights ``source`` names: a weights file (``.safetensors``), or the last weights
    (``model.safetensors``) of a run directory or of ``"pretrained:NAME"``.

    Raises:
        RunDirError: no such file, run directory or pretrained run.
    """
    text = os.fspath(source)
    if _is_bare_weights(text):
        return Path(text)
    path = resolve_run_dir(text) / MODEL_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {text} a run directory?")
    return path


def weights_config(source: str | os.PathLike[str]) -> RunConfig | None:
    """The run config that comes with the weights ``source`` names (see :func:`weights_file`):
    its run directory's or pretrained run's, or ``None`` for a bare weights file.

    Raises:
        RunDirError: no such run directory or pretrained run, or its config is missing.
    """
    text = os.fspath(source)
    return None if _is_bare_weights(text) else read_config(text)


def weights_model_config(source: str | os.PathLike[str]) -> Any | None:
    """The model config that comes with the weights ``source`` names: that of
    :func:`weights_config` (``None`` for a bare weights file)."""
    config = weights_config(source)
    return None if config is None else config.model


def _is_bare_weights(source: str) -> bool:
    """An existing file is a weights file; anything else names a run (directory or pretrained).

    Raises:
        RunDirError: ``source`` ends in ``.safetensors`` but no such file exists.
    """
    if Path(source).is_file():
        return True
    if source.endswith(".safetensors"):
        raise RunDirError(f"weights file {source} does not exist")
    return False


def read_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    """The :class:`RunConfig` saved in a run directory (its task and model modules imported).

    Raises:
        RunDirError: no such run, or a missing or corrupt ``config.json``.
        TaskModuleError, ModelModuleError: a recorded module cannot be imported.
    """
    path = resolve_run_dir(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {run_dir} a run directory?")
    try:
        return RunConfig.from_json(path.read_text(encoding="utf-8"))
    except (ConfigError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} is corrupt: {error}") from None


def load_run(
    run_dir: str | os.PathLike[str], *, best: bool = False,
    device: torch.device | str | None = None, memory_slots: int | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[nn.Module, RunConfig]:
    """Load a trained model and its config from a run directory, in eval mode.

    Args:
        run_dir: a directory written by :func:`ntm.training.train`, or ``"pretrained:NAME"``.
        best: load the weights of the best validation (``best.safetensors``) instead of the
            last ones (``model.safetensors``).
        device: where to put the model; ``None`` means CUDA if the run asked for it (or for
            ``auto``) and it is available, else the CPU.
        memory_slots: give the model a memory of this many slots instead of the one it trained
            with (the returned config says so), for a model whose weights fit any memory length
            (:attr:`ntm.models.Entry.resize_memory`: the NTM's, unless it learned its initial
            memory, ``model.memory_init=learned``, which accepts only its own size). A model
            that ran out of memory on long sequences can then be tested with more.
        dtype: the model's floating-point dtype (default: torch's, float32); the weights are
            converted to it.

    Raises:
        RunDirError: missing or corrupt directory (a weights file whose checksums do not
            match included), or weights that do not fit the config.
        ConfigError: ``memory_slots`` for a model that has no such memory, another size for
            one that learned its initial memory, or too few slots for its shifts; a device
            that is not available or a dtype that is not a floating-point one (also
            ``ValueError``s; the message lists the valid ones).
    """
    device = None if device is None else check_device(device)
    dtype = None if dtype is None else check_dtype(dtype)
    path = resolve_run_dir(run_dir)
    config = read_config(path)
    if memory_slots is not None:
        config = _with_memory_slots(config, memory_slots)
    if device is None:
        wants_cuda = config.train.device in ("auto", "cuda")
        device = "cuda" if wants_cuda and torch.cuda.is_available() else "cpu"
    task = build_task(config.task)
    model = build_model(config.model, task.input_size, task.output_size, device=device,
                        dtype=dtype)
    load_weights(model, path / (BEST_FILE if best else MODEL_FILE))
    return model.eval(), config


def available_devices() -> list[str]:
    """The devices torch can use here: ``"cpu"``, then ``"cuda:0"``, ... and ``"mps"``."""
    devices = ["cpu"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a :class:`torch.device`, if it exists here.

    Raises:
        ConfigError: not a device, or one that is not available (the message lists those
            that are).
    """
    available = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is not None and parsed.type == "cpu":
        return parsed
    if parsed is not None and parsed.type == "cuda" and torch.cuda.is_available():
        if parsed.index is None or parsed.index < torch.cuda.device_count():
            return parsed
    if parsed is not None and parsed.type == "mps" and "mps" in available:
        return parsed
    raise ConfigError(f"device {device!r} is not available; available: {', '.join(available)}")


def check_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``dtype`` (a :class:`torch.dtype`, or its name: ``"float64"``, ``"torch.float64"``) if
    it is a floating-point dtype weights can be loaded in.

    Raises:
        ConfigError: anything else (the message lists :data:`FLOAT_DTYPES`).
    """
    if isinstance(dtype, str):
        found = getattr(torch, dtype.removeprefix("torch."), None)
        dtype = found if isinstance(found, torch.dtype) else dtype
    if dtype not in FLOAT_DTYPES:
        names = ", ".join(str(each) for each in FLOAT_DTYPES)
        raise ConfigError(f"dtype {dtype!r} is not a floating-point dtype; expected one of "
                          f"{names}")
    return dtype


def _with_memory_slots(config: RunConfig, memory_slots: int) -> RunConfig:
    """``config`` with ``memory_slots`` memory rows, if its model's weights allow that."""
    entry = models.get(config.model.kind)
    if entry.resize_memory is None:
        able = [name for name in models.names() if models.get(name).resize_memory is not None]
        raise ConfigError(f"memory_slots applies to {', '.join(able)}, not to {entry.name} "
                          f"({entry.description or 'a registered model'}): it has no memory "
                          "whose length can change")
    resized = copy.deepcopy(config)
    resized.model = entry.resize_memory(config.model, memory_slots)
    return resized


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` in a run directory, in order.

    A last line cut short (no newline, not JSON: a crash or a full disk while it was being
    appended) is left out; a resumed run drops it too.

    Raises:
        RunDirError: no such file, or a line before the last that is not a JSON record.
    """
    path = resolve_run_dir(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RunDirError(f"{path} is missing")
    records, _ = parse_metrics(path)
    return [record for _, record in records]


def parse_metrics(path: str | os.PathLike[str]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The lines of a ``metrics.jsonl`` file with their records, and the torn last line that
    was left out ("" if none).

    A torn line is the last one, cut short: no newline at its end and not JSON (a crash or a
    full disk while it was being appended). Every other line must be a JSON object with an
    integer ``step``.

    Raises:
        RunDirError: any other malformed line (naming its number), or an unreadable file.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} cannot be read ({error})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                return records, line  # torn by the crash or failed write that ended the run
            raise RunDirError(f"{path}, line {number}, is not valid JSON; the file was changed "
                              "or damaged after it was written") from None
        if not (isinstance(record, dict) and type(record.get("step")) is int):
            raise RunDirError(f"{path}, line {number}, is not a metrics record (a JSON object "
                              "with an integer step)")
        records.append((line, record))
    return records, ""
