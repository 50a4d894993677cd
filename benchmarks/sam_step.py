"""A SAM training step with the memory's gradient kept row by row or whole, interleaved.

    python benchmarks/sam_step.py                       # 128 slots; batch 1, 8, 32
    python benchmarks/sam_step.py --slots 4096 --batch-sizes 8 --rounds 30

The in-place step's backward pass keeps the gradient of the memory only for the rows that
have one (``rows``: a Python dict maps each row to its place), or as one dense ``[B N, M]``
tensor (``dense``), which :data:`ntm.functional.sparse.DENSE_GRADIENT_ELEMENTS` chooses for
small memories. A step is the forward pass on an associative-recall batch (with its lengths),
the loss and the backward pass, one thread. Every round times each variant once on the same
batch, in turn (each first in every other round), so that the noise of a shared machine falls
on both alike; the figure is the median over the rounds.

Prints a markdown table and writes a JSON file (--json, default results/sam_step.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ntm
from ntm.bench import environment
from ntm.functional import sparse
from ntm.metrics import sequence_loss
from ntm.rundir.files import atomic_write_text

VARIANTS = {"rows": 0, "dense": sparse.DENSE_GRADIENT_ELEMENTS}


def _step(model, batch) -> None:
    logits, _ = model(batch.inputs, lengths=batch.lengths)
    model.zero_grad(set_to_none=True)
    sequence_loss(logits, batch.targets, batch.mask).backward()


def measure(batch_size: int, slots: int, rounds: int, warmup: int) -> dict:
    """Milliseconds per training step of each variant: medians over ``rounds``."""
    torch.manual_seed(0)
    task = ntm.tasks.make("associative_recall")
    model = ntm.SAM(task.input_size, task.output_size, memory_slots=slots, memory_width=40)
    generator = torch.Generator().manual_seed(0)
    times = {name: [] for name in VARIANTS}
    for round_ in range(warmup + rounds):
        batch = task.sample(batch_size, generator=generator)
        order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
        for name in order:
            sparse.DENSE_GRADIENT_ELEMENTS = VARIANTS[name]
            started = time.perf_counter()
            _step(model, batch)
            if round_ >= warmup:
                times[name].append(1000 * (time.perf_counter() - started))
    sparse.DENSE_GRADIENT_ELEMENTS = VARIANTS["dense"]
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--slots", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--json", default="results/sam_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"SAM training step on associative recall, {args.slots} slots, rows of 40, "
          f"one thread; median of {args.rounds} interleaved rounds (ms)")
    print("| batch | rows | dense | rows / dense |\n|---:|---:|---:|---:|")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        result = measure(batch_size, args.slots, args.rounds, args.warmup)
        rows.append({"batch_size": batch_size, **result})
        print(f"| {batch_size} | {result['rows']:.1f} | {result['dense']:.1f} | "
              f"{result['rows'] / result['dense']:.2f}x |", flush=True)
    report = {"slots": args.slots, "rounds": args.rounds, "environment": environment(),
              "milliseconds": rows}
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
