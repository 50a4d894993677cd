"""Training-step benchmark: the numbers behind the README's speed table.

A full training step (forward, backward, ``torch.optim.RMSprop`` step with element-wise
gradient clipping) of the models users import, looked up in the registry (:mod:`ntm.models`)
with their default sizes (the NTM's: an LSTM controller of 100, memory 128 x 20, one read and
one write head; the DNC's the same), on the copy task with sequence length 20 (41 steps).
Every (model, path) pair is timed interleaved, a few steps of each in turn, so that the noise
of a shared machine falls on all of them alike; the figure reported is the median.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from . import models
from ._threads import torch_threads
from .backends import kernel
from .cuda_graphs import GraphedUpdate, capture_blocker
from .metrics import sequence_loss
from .tasks import make

# What each path times: the NTM's backend, and whether its update is replayed from a CUDA graph.
_BACKENDS = {"auto": "auto", "kernel": "kernel", "python": "python", "autograd": "autograd",
             "graph": "auto"}
PATHS = tuple(_BACKENDS)
# The names of earlier versions: "fused" was the default path, "plain" plain autograd.
ALIASES = {"fused": "auto", "plain": "autograd"}


@dataclass
class BenchResult:
    """One row of the table."""

    path: str
    device: str
    threads: int
    batch_size: int
    sequences_per_second: float
    milliseconds_per_step: float
    timed_steps: int
    peak_memory_mib: float
    model: str = models.DEFAULT_MODEL


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # The process's high-water mark (kilobytes on Linux): an upper bound, not per row.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _training_step(model, optimizer, batch) -> None:
    logits, _ = model(batch.inputs)
    loss = sequence_loss(logits, batch.targets, batch.mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
    optimizer.step()


def _graphed_step(model, optimizer):
    """The same step as :func:`_training_step`, replayed from a CUDA graph."""
    parameters = list(model.parameters())
    update = GraphedUpdate(model, optimizer, sequence_loss,
                           after_backward=lambda: torch.nn.utils.clip_grad_value_(parameters, 10.0))
    return lambda model, optimizer, batch: update(batch.inputs, batch.targets, batch.mask)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_paths(paths: Sequence[str]) -> list[str]:
    """``paths`` with the older names replaced by those of :data:`PATHS`, each once, in order.

    Raises:
        ValueError: a path that is neither in :data:`PATHS` nor in :data:`ALIASES`, named.

    >>> resolve_paths(["fused", "python", "plain", "auto"])
    ['auto', 'python', 'autograd']
    """
    unknown = sorted(set(paths) - set(PATHS) - set(ALIASES))
    if unknown:
        raise ValueError(f"unknown path {unknown[0]!r}; valid paths: {', '.join(PATHS)} "
                         f"(also {', '.join(f'{old} for {new}' for old, new in ALIASES.items())})")
    return list(dict.fromkeys(ALIASES.get(path, path) for path in paths))


def check_paths(paths: Sequence[str]) -> None:
    """Raise a ValueError naming the first of ``paths`` that is not a path (see
    :func:`resolve_paths`)."""
    resolve_paths(paths)


def prepare(device: str, paths: Sequence[str]) -> None:
    """Build the CPU kernel before any timing (once per machine) where a timed path uses it."""
    uses_kernel = {"auto", "kernel"} & set(resolve_paths(paths))
    if torch.device(device).type == "cpu" and uses_kernel and kernel.is_enabled():
        kernel.load()


def _check_device(paths: Sequence[str], device: torch.device) -> None:
    """Refuse a path that cannot run on ``device``, in one line."""
    if "graph" in paths and device.type != "cuda":
        raise ValueError("the graph path (CUDA graphs) needs a CUDA device: --device cuda")
    if "kernel" in paths:
        if device.type != "cpu":
            raise ValueError(f"the kernel path (the C++ CPU kernel) runs on the CPU, not on "
                             f"{device.type}: --device cpu")
        reason = kernel.unavailable(torch.zeros(0))
        if reason is not None:
            raise ValueError(f"the kernel path cannot run: {reason}")


def benchmark(
    batch_sizes: Sequence[int] = (1, 8, 32, 128),
    threads: Sequence[int] = (1, 2),
    paths: Sequence[str] = ("auto",),
    *,
    device: str = "cpu",
    timed_steps: int = 20,
    warmup_steps: int = 3,
    steps_per_round: int = 2,
    length: int = 20,
    seed: int = 0,
    log=print,
    model_kinds: Sequence[str] = (models.DEFAULT_MODEL,),
) -> list[BenchResult]:
    """Time training steps; returns one :class:`BenchResult` per model, path, thread count and
    batch.

    Args:
        paths: the backend of :class:`ntm.NTM` to time (see :mod:`ntm.backends`): ``"auto"``
            (the default: on a CPU the C++ kernel where it builds, elsewhere the Python node),
            ``"kernel"`` (the C++ CPU kernel), ``"python"`` (the same node in Python),
            ``"autograd"`` (every operation recorded by autograd) and, on CUDA, ``"graph"``
            (the ``"auto"`` update replayed from a CUDA graph,
            :class:`ntm.cuda_graphs.GraphedUpdate`, as ``ntm train`` does on a GPU). The
            older names ``"fused"`` (``"auto"``) and ``"plain"`` (``"autograd"``) are taken
            too; rows carry the new ones.
        timed_steps: timed steps per row, after ``warmup_steps`` untimed ones.
        steps_per_round: steps of one path before the next path's turn.
        model_kinds: registered models (:func:`ntm.models.names`) to time, each with its
            default config and every path, e.g. ``("ntm-lstm", "dnc")``.

    Raises:
        ValueError: an unknown path or model, a path that cannot run on ``device``, or one
            that a model has no backend for (the DNC has ``auto`` and ``autograd``).
    """
    paths = resolve_paths(paths)
    for kind in model_kinds:  # before anything is timed: each model takes each path
        _check_graph_path(kind, _config(kind, paths), paths)
    target = torch.device(device)
    prepare(device, paths)
    _check_device(paths, target)
    task = make("copy", min_length=length, max_length=length)
    results = []
    for thread_count in threads:
        with torch_threads(thread_count):  # the caller's count comes back afterwards
            for batch_size in batch_sizes:
                batch = task.sample(batch_size, generator=torch.Generator().manual_seed(seed))
                runs = _time_paths(model_kinds, paths, task, batch.to(target), target, seed=seed,
                                   warmup_steps=warmup_steps, timed_steps=timed_steps,
                                   steps_per_round=steps_per_round)
                for (kind, path), times in runs.items():
                    results.append(_row(kind, path, times, target, thread_count, batch_size))
                    log(format_row(results[-1]))
    return results


def _row(kind: str, path: str, times: list[float], device: torch.device, threads: int,
         batch_size: int) -> BenchResult:
    """The table's row of one (model, path) from the seconds of its timed steps."""
    median = statistics.median(times)
    return BenchResult(model=kind, path=path, device=str(device), threads=threads,
                       batch_size=batch_size, sequences_per_second=batch_size / median,
                       milliseconds_per_step=median * 1e3, timed_steps=len(times),
                       peak_memory_mib=_peak_memory_mib(device))


def _config(kind: str, paths: Sequence[str], path: str | None = None):
    """The default config of model ``kind`` with the backend of ``path`` (default: the first
    of ``paths``), having checked that it has a backend for every one of ``paths``.

    Raises:
        ValueError: an unknown model, or a path it has no backend for.
    """
    config = models.default_config(kind)
    has_backend = any(field.name == "backend" for field in dataclasses.fields(config))
    for each in paths:
        if not has_backend and _BACKENDS[each] != "auto":
            raise ValueError(f"model {kind} has no backends to choose: time it with --paths auto")
    if has_backend:
        for each in paths:
            try:
                models.set_field(dataclasses.replace(config), "backend", _BACKENDS[each])
            except ValueError:
                raise ValueError(f"model {kind} has no {each!r} path; its paths: "
                                 f"{', '.join(_paths_of(config))}") from None
        models.set_field(config, "backend", _BACKENDS[path or paths[0]])
    return config


def _check_graph_path(kind: str, config, paths: Sequence[str]) -> None:
    """Refuse the graph path for a model that a CUDA graph cannot capture, in one line."""
    if "graph" not in paths:
        return
    blocker = capture_blocker(models.make(config, 1, 1))
    if blocker is not None:
        raise ValueError(f"model {kind} cannot take the graph path: a CUDA graph cannot "
                         f"capture its {blocker}, which runs on the host as well")


def _paths_of(config) -> list[str]:
    """The paths that a model with ``config`` (which has a ``backend`` field) can take."""
    taken = []
    for path, backend in _BACKENDS.items():
        try:
            models.set_field(dataclasses.replace(config), "backend", backend)
            taken.append(path)
        except ValueError:
            pass
    return taken


def _time_paths(model_kinds: Sequence[str], paths: Sequence[str], task, batch,
                device: torch.device, *, seed: int, warmup_steps: int, timed_steps: int,
                steps_per_round: int) -> dict[tuple[str, str], list]:
    """The seconds of ``timed_steps`` steps of each (model, path) on ``batch``, timed
    interleaved: a model and optimiser per pair, each warmed up, then ``steps_per_round`` steps
    of each in turn, so that the noise of a shared machine falls on all of them alike."""
    runs = {}
    if device.type == "cuda":  # before the warm-up: a graph's memory is held from then
        torch.cuda.reset_peak_memory_stats(device)
    for kind, path in [(kind, path) for kind in model_kinds for path in paths]:
        torch.manual_seed(seed)
        model = models.make(_config(kind, paths, path), task.input_size, task.output_size,
                            device=device)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, momentum=0.9,
                                        capturable=path == "graph")
        step = _graphed_step(model, optimizer) if path == "graph" else _training_step
        for _ in range(warmup_steps):
            step(model, optimizer, batch)
        runs[(kind, path)] = (model, optimizer, step, [])
    while any(len(times) < timed_steps for *_, times in runs.values()):
        for model, optimizer, step, times in runs.values():
            for _ in range(min(steps_per_round, timed_steps - len(times))):
                _synchronize(device)
                start = time.perf_counter()
                step(model, optimizer, batch)
                _synchronize(device)
                times.append(time.perf_counter() - start)
    return {pair: times for pair, (*_, times) in runs.items()}


HEADER = "model     path     device  threads  batch  sequences/s  ms/step  peak MiB"


def format_row(row: BenchResult) -> str:
    """One row of the printed table, under :data:`HEADER`."""
    return (
        f"{row.model:<9} {row.path:<8} {row.device:<7} {row.threads:>7}  {row.batch_size:>5}  "
        f"{row.sequences_per_second:>11.1f}  {row.milliseconds_per_step:>7.1f}  "
        f"{row.peak_memory_mib:>8.0f}"
    )


def environment() -> dict:
    """What the numbers were measured on."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["cpu_kernel"] = kernel.status()
    return info


def write_json(results: list[BenchResult], path: str) -> None:
    """Write ``results`` and :func:`environment` to ``path`` as JSON."""
    with open(path, "w") as file:
        json.dump({"environment": environment(), "results": [asdict(r) for r in results]},
                  file, indent=2)  # fmt: skip
