"""Time and memory of a training step against the number of memory slots: the dense NTM and
DNC against sparse access memory (exact and faiss index), as Rae et al. 2016 (figure 1).

    python benchmarks/memory_scaling.py                       # everything (long)
    python benchmarks/memory_scaling.py --models sam-exact,sam-faiss --slots 4096,65536

Each configuration (model, batch, slots) runs in a fresh process, one thread: a sequence of
``--steps`` steps (default 100) of random input forward, a loss on every output, and the
backward pass, once to warm up and ``--repeats`` times timed. It reports seconds per step (the
fastest run over the steps) and the peak memory: the process's peak resident size during the
runs minus its size before them (model built, input drawn), which includes the pages of the
memory matrix that the runs wrote (a SAM state's zeros are untouched pages until written:
``ntm.access.sparse.untouched_zeros``). The children run with ``MALLOC_MMAP_THRESHOLD_`` at
1 MiB: glibc then gives every large block back when it is freed, so that the peak is that of
live memory (by default it raises that threshold as blocks are freed and keeps freed blocks
of up to 32 MiB, which made the same SAM run read 3 GiB instead of 250 MiB).

Models: the NTM (LSTM controller 100, memory width 20, its default backend), the DNC (same
sizes) and SAM (same sizes, K = 4, ``index="exact"`` and ``"faiss"``). Slots: 128, then x4
from 256 to 1,048,576. A dense model is not run where its peak, extrapolated from its
measured size at a quarter of the slots (x4 for the NTM, x16 for the DNC's N x N links), or
its time (the same way), would pass ``--max-gib`` or ``--max-seconds``; the table says so.

Writes results/memory_scaling.json, results/memory_scaling.png (log-log) and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SLOTS = [128, 256, 1024, 4096, 16384, 65536, 262144, 1048576]
MODELS = ["ntm", "dnc", "sam-exact", "sam-faiss"]
# How a dense model's cost grows when the slots grow x4 (memory, time): the NTM's per-step
# memory copies are N M, the DNC's link matrices N^2.
GROWTH = {"ntm": 4, "dnc": 16}


def build(name: str, slots: int):
    """The model ``name`` with ``slots`` memory rows (9 inputs, 8 outputs, as copy)."""
    import ntm

    sizes = {"memory_slots": slots, "memory_width": 20, "controller_size": 100}
    if name == "ntm":
        return ntm.NTM(9, 8, **sizes)
    if name == "dnc":
        return ntm.DNC(9, 8, **sizes)
    return ntm.SAM(9, 8, **sizes, sparse_reads=4, index=name.removeprefix("sam-"))


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(name: str, slots: int, batch: int, steps: int, repeats: int) -> dict:
    """Run one configuration in this process and return its measurements."""
    import torch

    torch.set_num_threads(1)
    inputs = torch.rand(steps, batch, 9, generator=torch.Generator().manual_seed(0))

    def run(model, length: int) -> None:
        logits, _ = model(inputs[:length])
        model.zero_grad(set_to_none=True)
        logits.square().mean().backward()

    run(build(name, 128), 2)  # loads what is loaded once (the C++ kernel, faiss)
    torch.manual_seed(0)
    model = build(name, slots)
    before = _peak_bytes()
    times = []
    for _ in range(repeats + 1):  # the first is the warm-up
        start = time.perf_counter()
        run(model, steps)
        times.append(time.perf_counter() - start)
    return {"model": name, "slots": slots, "batch": batch, "steps": steps,
            "seconds_per_step": min(times[1:]) / steps,
            "peak_mib": (_peak_bytes() - before) / 2**20,
            "memory_matrix_mib": batch * slots * 20 * 4 / 2**20}


def _run_child(name: str, slots: int, batch: int, arguments) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(
        [name, slots, batch, arguments.steps, arguments.repeats])]
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        return {"model": name, "slots": slots, "batch": batch,
                "skipped": f"failed: {done.stderr.strip().splitlines()[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _skip_reason(name: str, slots: int, last: dict | None, arguments) -> str | None:
    """Why a dense model is not run at ``slots``, from its measurement at ``slots / 4``."""
    if name not in GROWTH or last is None:
        return None
    if "skipped" in last:
        return last["skipped"]
    growth = GROWTH[name] * slots / (4 * last["slots"])
    memory_gib = last["peak_mib"] * growth / 1024
    seconds = last["seconds_per_step"] * growth * arguments.steps * (arguments.repeats + 2)
    if memory_gib > arguments.max_gib:
        return f"skipped: would need about {memory_gib:.0f} GiB"
    if seconds > arguments.max_seconds:
        return f"skipped: would take about {seconds / 60:.0f} minutes"
    return None


def measure(arguments) -> list[dict]:
    results = []
    for name in arguments.models:
        for batch in arguments.batches:
            last = None
            for slots in arguments.slots:
                reason = _skip_reason(name, slots, last, arguments)
                if reason is not None:
                    row = {"model": name, "slots": slots, "batch": batch, "skipped": reason}
                else:
                    row = _run_child(name, slots, batch, arguments)
                    last = row
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> str:
    """Markdown: one row per (slots), a column per (model, batch): ms/step and peak MiB."""
    keys = sorted({(r["model"], r["batch"]) for r in results},
                  key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 99, k[1]))
    cells = {(r["model"], r["batch"], r["slots"]): r for r in results}
    head = "| slots | " + " | ".join(f"{m} B={b}" for m, b in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for slots in sorted({r["slots"] for r in results}):
        row = []
        for model, batch in keys:
            r = cells.get((model, batch, slots))
            if r is None:
                row.append("")
            elif "skipped" in r:
                row.append(r["skipped"].replace("skipped: ", ""))
            else:
                row.append(f"{r['seconds_per_step'] * 1e3:.3g} ms, {r['peak_mib']:.0f} MiB")
        lines.append(f"| {slots:,} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in MODELS:
        for batch, style in ((1, "-"), (8, "--")):
            rows = [r for r in results if r["model"] == model and r["batch"] == batch
                    and "skipped" not in r]
            if not rows:
                continue
            slots = [r["slots"] for r in rows]
            label = f"{model} B={batch}"
            speed.plot(slots, [r["seconds_per_step"] for r in rows], style, marker="o",
                       label=label)
            memory.plot(slots, [max(r["peak_mib"], 0.1) for r in rows], style, marker="o",
                        label=label)
    for axis, name in ((speed, "seconds per step (forward + backward)"),
                       (memory, "peak memory of 100 steps (MiB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("memory slots")
        axis.set_ylabel(name)
        axis.grid(True, which="both", alpha=0.3)
    speed.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--slots", default=",".join(map(str, SLOTS)))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-gib", type=float, default=16.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--json", default="results/memory_scaling.json")
    parser.add_argument("--plot", default="results/memory_scaling.png")
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(*json.loads(arguments.child))))
        return
    arguments.models = arguments.models.split(",")
    arguments.slots = [int(s) for s in arguments.slots.split(",")]
    arguments.batches = [int(b) for b in arguments.batches.split(",")]
    results = measure(arguments)
    from ntm.bench import environment

    Path(arguments.json).write_text(json.dumps(
        {"environment": {**environment(), "threads": 1, "MALLOC_MMAP_THRESHOLD_": 2**20},
         "steps": arguments.steps,
         "results": results}, indent=1) + "\n")
    if arguments.plot:
        plot(results, Path(arguments.plot))
    print(table(results))


if __name__ == "__main__":
    main()
