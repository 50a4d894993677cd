"""Which validation sequences a run's validation cost comes from.

    python results/scripts/validation_breakdown.py runs/reliability/ROW/seed6
    python results/scripts/validation_breakdown.py RUN [RUN ...] --worst 5 --best

A run's validation cost is the mean over its held-out sequences (``train.val_batches`` x
``train.val_batch_size``, drawn from ``train.val_seed``: the same for every seed). This scores
each of them alone with the run's final (or ``--best``) weights and prints the mean, the
number of sequences with any bit wrong, and the worst sequences' cost in bits. For associative
recall it also gives, for each of those, the Hamming distance between the query item and the
nearest other item of its list: the validation set of the default ``val_seed`` holds one
sequence (number 80) whose query differs from another item by one bit of 18.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

import ntm
from ntm.metrics import bit_errors_per_sequence
from ntm.rundir.directory import load_run
from ntm.training.evaluate import batch_logits
from ntm.training.loop import validation_set


def query_distance(task, inputs: torch.Tensor) -> int:
    """Associative recall: the Hamming distance from the query item to the nearest other item
    of the list, for one sequence's ``inputs [T, width + 2]``."""
    width, length = task.width, task.item_length
    starts = (inputs[:, width] == 1).nonzero().flatten().tolist()  # item delimiters
    items = [inputs[s + 1:s + 1 + length, :width].flatten() for s in starts]
    query_start = int((inputs[:, width + 1] == 1).nonzero()[0, 0]) + 1
    query = inputs[query_start:query_start + length, :width].flatten()
    position = next(i for i, item in enumerate(items) if torch.equal(item, query))
    return min(int((item != query).sum()) for i, item in enumerate(items) if i != position)


def breakdown(run: str, *, best: bool = False, worst: int = 5) -> dict:
    """The validation cost of ``run`` sequence by sequence: mean, failures, the worst."""
    model, config = load_run(run, best=best, device="cpu")
    task = ntm.tasks.make(config.task.name, **config.task.params)
    costs, errors, distances = [], [], []
    with torch.no_grad():
        for batch in validation_set(config, task):
            logits = batch_logits(model, batch)
            nats = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none")
            costs += ((nats * batch.mask.unsqueeze(-1)).sum(dim=(0, 2)) / math.log(2)).tolist()
            for i in range(batch.inputs.size(1)):
                one = slice(i, i + 1)
                errors.append(bit_errors_per_sequence(
                    logits[:, one], batch.targets[:, one], batch.mask[:, one]).item())
                if config.task.name == "associative_recall":
                    distances.append(query_distance(task, batch.inputs[:, i]))
    order = sorted(range(len(costs)), key=lambda i: -costs[i])[:worst]
    return {"run": run, "weights": "best" if best else "final", "sequences": len(costs),
            "mean_bits": sum(costs) / len(costs), "with_bit_errors": sum(e > 0 for e in errors),
            "worst": [{"sequence": i, "bits": costs[i], "bit_errors": errors[i],
                       "query_distance": distances[i] if distances else None} for i in order]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--best", action="store_true", help="the best validated weights")
    parser.add_argument("--worst", type=int, default=5, help="sequences to list per run")
    parser.add_argument("--json", help="also write the breakdowns to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for run in args.runs:
        try:
            result = breakdown(run, best=args.best, worst=args.worst)
        except (OSError, ValueError, ntm.errors.NTMError) as error:
            print(f"validation_breakdown.py: {run}: {error}", file=sys.stderr)
            return 2
        results.append(result)
        worst = ", ".join(
            f"#{w['sequence']} {w['bits']:.2f} bits"
            + (f" (query {w['query_distance']} bit(s) from another item)"
               if w["query_distance"] is not None else "") for w in result["worst"])
        print(f"{run}: {result['mean_bits']:.4f} bits per sequence, "
              f"{result['with_bit_errors']} of {result['sequences']} with bit errors; "
              f"worst: {worst}")
    if args.json:
        from ntm.rundir.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
