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

``--near-items D,...`` (associative recall) also scores each run on sequences made hard on
purpose: 3 to 6 items, one item other than the query and its successor replaced by the query
item with ``D`` of its bits flipped (``D`` >= 1), 256 sequences each: a model that tells
items apart by content makes no more errors on them than on the task's own sequences.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F

import ntm
from ntm.metrics import bit_errors_per_sequence
from ntm.rundir.directory import load_run
from ntm.training import build_task
from ntm.training.evaluate import batch_logits, evaluate_batches
from ntm.training.loop import validation_set


class Listing(NamedTuple):
    """One associative-recall sequence read back from its inputs."""

    starts: list[int]  # the step of each item's delimiter (the item follows it)
    items: list[torch.Tensor]  # each item's bits, flattened ([item_length * width])
    query: torch.Tensor  # the query item's bits, flattened
    position: int  # which item the query is


def read_listing(task, inputs: torch.Tensor) -> Listing:
    """The items and the query of one sequence's ``inputs [T, width + 2]``."""
    width, length = task.width, task.item_length
    starts = (inputs[:, width] == 1).nonzero().flatten().tolist()  # item delimiters
    items = [inputs[s + 1:s + 1 + length, :width].flatten() for s in starts]
    query_start = int((inputs[:, width + 1] == 1).nonzero()[0, 0]) + 1
    query = inputs[query_start:query_start + length, :width].flatten()
    position = next(i for i, item in enumerate(items) if torch.equal(item, query))
    return Listing(starts, items, query, position)


def query_distance(task, inputs: torch.Tensor) -> int:
    """Associative recall: the Hamming distance from the query item to the nearest other item
    of the list, for one sequence's ``inputs [T, width + 2]``."""
    listing = read_listing(task, inputs)
    return min(int((item != listing.query).sum()) for i, item in enumerate(listing.items)
               if i != listing.position)


def near_items_batch(task, batch_size: int, distance: int, generator: torch.Generator):
    """A batch of ``task`` (associative recall, at least 3 items) in which, in each sequence,
    an item other than the query's and its successor's is the query item with ``distance`` of
    its bits flipped; the targets (the successor) do not change."""
    batch = task.sample(batch_size, generator=generator)
    inputs, width, length = batch.inputs.clone(), task.width, task.item_length
    for b in range(batch_size):
        x = inputs[:, b]  # a view: written in place
        listing = read_listing(task, x)
        others = [i for i in range(len(listing.starts))
                  if i not in (listing.position, listing.position + 1)]
        start = listing.starts[others[int(torch.randint(len(others), (), generator=generator))]]
        near = listing.query.clone()
        flips = torch.randperm(near.numel(), generator=generator)[:distance]
        near[flips] = 1.0 - near[flips]
        x[start + 1:start + 1 + length, :width] = near.view(length, width)
    return batch._replace(inputs=inputs)


def near_items(model, config, distances: list[int], *, sequences: int = 256) -> dict:
    """A loaded run's cost and bit errors per sequence on near-item batches, per distance."""
    if min(distances) < 1:
        raise ValueError(f"near-item distances must be at least 1 bit, got {distances}")
    task = build_task(config.task, min_items=3)  # the run's task, held out (no near items)
    scores = {}
    for distance in distances:
        generator = torch.Generator().manual_seed(distance)
        batches = [near_items_batch(task, 32, distance, generator)
                   for _ in range(max(1, sequences // 32))]
        scores[distance] = evaluate_batches(model, batches)
    return scores


def breakdown(run: str, model, config, *, best: bool = False, worst: int = 5) -> dict:
    """The validation cost of ``run`` (loaded: ``model``, ``config``; its ``best`` weights or
    not) sequence by sequence: mean, failures, the worst."""
    task = build_task(config.task)
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
    parser.add_argument("--near-items", help="comma-separated bit distances (associative "
                        "recall): also score near-item sequences")
    parser.add_argument("--json", help="also write the breakdowns to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for run in args.runs:
        try:
            distances = [int(d) for d in args.near_items.split(",")] if args.near_items else []
            model, config = load_run(run, best=args.best, device="cpu")
            result = breakdown(run, model, config, best=args.best, worst=args.worst)
            if distances:
                result["near_items"] = near_items(model, config, distances)
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
        if distances:
            print("  near items: " + ", ".join(
                f"{d} bit(s): {score['cost']:.3f} bits, {score['bit_errors']:.3f} bit errors"
                for d, score in result["near_items"].items()))
    if args.json:
        from ntm.rundir.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
