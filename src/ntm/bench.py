"""Training-step benchmark: the numbers behind the README's speed table.

A full training step (forward, backward, ``torch.optim.RMSprop`` step with element-wise
gradient clipping) of the same :class:`ntm.NTM` that users import, on the copy task with
sequence length 20 (41 steps), an LSTM controller of 100, memory 128 x 20, one read and one
write head. Paths are timed interleaved, a few steps of each in turn, so that the noise of a
shared machine falls on all of them alike; the figure reported is the median.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from . import kernel
from ._threads import torch_threads
from .cuda_graphs import GraphedUpdate
from .metrics import sequence_loss
from .model import NTM
from .tasks import make

PATHS = ("fused", "python", "plain", "graph")


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
    return lambda model, optimizer, batch: update(*batch)


def _without_kernel(step):
    """``step`` on the Python fused node: the C++ CPU kernel switched off while it runs."""

    def run(model, optimizer, batch):
        enabled = kernel.is_enabled()
        kernel.set_enabled(False)
        try:
            step(model, optimizer, batch)
        finally:
            kernel.set_enabled(enabled)

    return run


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_paths(paths: Sequence[str]) -> None:
    """Raise a ValueError naming the first of ``paths`` that is not in :data:`PATHS`."""
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown path {unknown[0]!r}; valid paths: {', '.join(PATHS)}")


def prepare(device: str, paths: Sequence[str]) -> None:
    """Build the CPU kernel before any timing (once per machine) where a timed path uses it."""
    if torch.device(device).type == "cpu" and "fused" in paths and kernel.is_enabled():
        kernel.load()


def benchmark(
    batch_sizes: Sequence[int] = (1, 8, 32, 128),
    threads: Sequence[int] = (1, 2),
    paths: Sequence[str] = ("fused",),
    *,
    device: str = "cpu",
    timed_steps: int = 20,
    warmup_steps: int = 3,
    steps_per_round: int = 2,
    length: int = 20,
    seed: int = 0,
    log=print,
) -> list[BenchResult]:
    """Time training steps; returns one :class:`BenchResult` per path, thread count and batch.

    Args:
        paths: ``"fused"`` (the default path of :class:`ntm.NTM`: on a CPU the C++ kernel of
            :mod:`ntm.kernel` where it builds), ``"python"`` (the same node in Python,
            :mod:`ntm.fused`, as with ``NTM_CPU_KERNEL=0``), ``"plain"`` (every
            operation recorded by autograd, ``NTM(..., fused=False)``) and, on CUDA,
            ``"graph"`` (the fused path's update replayed from a CUDA graph,
            :class:`ntm.cuda_graphs.GraphedUpdate`, as ``ntm train`` does on a GPU).
        timed_steps: timed steps per row, after ``warmup_steps`` untimed ones.
        steps_per_round: steps of one path before the next path's turn.
    """
    check_paths(paths)
    target = torch.device(device)
    if "graph" in paths and target.type != "cuda":
        raise ValueError("the graph path (CUDA graphs) needs a CUDA device: --device cuda")
    task = make("copy", min_length=length, max_length=length)
    prepare(device, paths)
    results = []
    for thread_count in threads:
        with torch_threads(thread_count):  # the caller's count comes back afterwards
            for batch_size in batch_sizes:
                generator = torch.Generator().manual_seed(seed)
                batch = task.sample(batch_size, generator=generator).to(target)
                runs = {}
                if target.type == "cuda":  # before the warm-up: a graph's memory is held from then
                    torch.cuda.reset_peak_memory_stats(target)
                for path in paths:
                    torch.manual_seed(seed)
                    model = NTM(task.input_size, task.output_size, fused=path != "plain",
                                device=target)
                    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, momentum=0.9,
                                                    capturable=path == "graph")
                    step = _graphed_step(model, optimizer) if path == "graph" else _training_step
                    if path == "python":
                        step = _without_kernel(step)
                    for _ in range(warmup_steps):
                        step(model, optimizer, batch)
                    runs[path] = (model, optimizer, step, [])
                while any(len(times) < timed_steps for *_, times in runs.values()):
                    for model, optimizer, step, times in runs.values():
                        for _ in range(min(steps_per_round, timed_steps - len(times))):
                            _synchronize(target)
                            start = time.perf_counter()
                            step(model, optimizer, batch)
                            _synchronize(target)
                            times.append(time.perf_counter() - start)
                for path, (*_, times) in runs.items():
                    median = statistics.median(times)
                    row = BenchResult(
                        path=path,
                        device=str(target),
                        threads=thread_count,
                        batch_size=batch_size,
                        sequences_per_second=batch_size / median,
                        milliseconds_per_step=median * 1e3,
                        timed_steps=len(times),
                        peak_memory_mib=_peak_memory_mib(target),
                    )
                    results.append(row)
                    log(format_row(row))
    return results


HEADER = "path   device  threads  batch  sequences/s  ms/step  peak MiB"


def format_row(row: BenchResult) -> str:
    return (
        f"{row.path:<6} {row.device:<7} {row.threads:>7}  {row.batch_size:>5}  "
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
    with open(path, "w") as file:
        json.dump({"environment": environment(), "results": [asdict(r) for r in results]},
                  file, indent=2)  # fmt: skip
