"""A batch of mixed lengths: a training step with padding only vs with ``lengths=``.

    python benchmarks/lengths.py                     # kernel and python, copy 1..20, batch 32
    python benchmarks/lengths.py --backends kernel,python,autograd --steps 40
    python benchmarks/lengths.py --backends sam     # ntm.SAM (defaults): sorted and split
    python benchmarks/lengths.py --backends sam --freeze-above 0   # SAM, ended sequences frozen

The default NTM (LSTM controller 100, memory 128 x 20) on copy batches with lengths 1 to 20
(3 to 41 steps), 32 sequences, one thread. A step is the forward pass, the loss over the scored
steps and the backward pass (the optimiser's step is the same either way and left out). Every
round draws a fresh batch and times each (backend, padding or lengths) once on it, in turn
(padding and lengths each first in every other round), so that the noise of a shared machine
falls on all of them alike; the figure is the median over
the rounds. With ``lengths`` each sequence stops at its own end and the batch shrinks as
sequences end; padded, every sequence runs all the steps of the longest.

Prints a markdown table and writes a JSON file (--json, default results/lengths.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ntm
from ntm.bench import environment
from ntm.metrics import sequence_loss


def _step(model, batch, lengths) -> float:
    """One forward and backward pass; returns the loss (nats per sequence)."""
    logits, _ = model(batch.inputs, lengths=lengths)
    loss = sequence_loss(logits, batch.targets, batch.mask)
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.item()


def measure(backends: list[str], *, steps: int, warmup: int, batch_size: int, max_length: int,
            seed: int = 0) -> dict:
    """Milliseconds per step of each (backend, mode), medians over ``steps`` rounds."""
    task = ntm.tasks.make("copy", min_length=1, max_length=max_length)
    models = {}
    for backend in backends:
        torch.manual_seed(seed)  # the same weights for every backend
        models[backend] = (ntm.SAM(task.input_size, task.output_size) if backend == "sam" else
                           ntm.NTM(task.input_size, task.output_size, backend=backend))
    generator = torch.Generator().manual_seed(seed)
    times = {(b, mode): [] for b in backends for mode in ("padded", "lengths")}
    useful = []
    for round_ in range(warmup + steps):
        batch = task.sample(batch_size, generator=generator)
        useful.append(float(batch.lengths.sum()) / batch.lengths.numel() / batch.inputs.size(0))
        for backend, model in models.items():
            losses = []
            modes = [("padded", None), ("lengths", batch.lengths)]
            for mode, lengths in modes[::-1] if round_ % 2 else modes:  # each first in turn
                started = time.perf_counter()
                losses.append(_step(model, batch, lengths))
                if round_ >= warmup:
                    times[backend, mode].append(time.perf_counter() - started)
            # The scored steps lie within each sequence: the loss is the same to rounding.
            assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0])), losses
    return {"useful_fraction": statistics.mean(useful),
            "milliseconds": {f"{b}/{mode}": 1e3 * statistics.median(t)
                             for (b, mode), t in times.items()}}


def table(result: dict, backends: list[str]) -> str:
    """The medians as a markdown table, one row per backend."""
    lines = ["| backend | padded (ms/step) | with lengths (ms/step) | speed-up |",
             "|---|---:|---:|---:|"]
    for backend in backends:
        padded = result["milliseconds"][f"{backend}/padded"]
        lengths = result["milliseconds"][f"{backend}/lengths"]
        lines.append(f"| {backend} | {padded:.1f} | {lengths:.1f} | {padded / lengths:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="kernel,python",
                        help="comma-separated: kernel, python, autograd (the NTM's), sam "
                             "(ntm.SAM with its defaults)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=20, help="copy lengths 1..this")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--freeze-above", type=int,
                        help="ntm.core.FREEZE_ELEMENTS: SAM's state size from which a batch "
                             "with lengths runs frozen (default: the library's)")
    parser.add_argument("--json", default="results/lengths.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.freeze_above is not None:
        ntm.core.FREEZE_ELEMENTS = args.freeze_above
    backends = [name for name in args.backends.split(",") if name]
    result = measure(backends, steps=args.steps, warmup=args.warmup,
                     batch_size=args.batch_size, max_length=args.max_length)
    result.update(environment=environment(), threads=args.threads, batch_size=args.batch_size,
                  freeze_elements=ntm.core.FREEZE_ELEMENTS,
                  max_length=args.max_length, steps=args.steps)
    print(f"copy, lengths 1..{args.max_length}, batch {args.batch_size}, {args.threads} "
          f"thread(s), medians of {args.steps} steps; the sequences' own steps are "
          f"{100 * result['useful_fraction']:.0f}% of the padded batch's")
    print(table(result, backends))
    with open(args.json, "w") as file:
        json.dump(result, file, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
