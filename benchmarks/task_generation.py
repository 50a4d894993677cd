"""Time to generate one batch of each task (the training distribution, CPU).

Usage: python benchmarks/task_generation.py [--draws 50] [--threads 1]

Prints the median milliseconds per batch over ``--draws`` draws after a warm-up, for batches of
32 and 128, plus the N-grams optimal estimator. A training step takes about 50-100 ms at
batch 32 (SPEC.md), so generation should be a small fraction of it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from ntm import tasks

BATCH_SIZES = (32, 128)


def median_ms(draw: Callable[[], object], draws: int) -> float:
    draw()  # warm-up: first-call allocations and dispatch caches
    times = []
    for _ in range(draws):
        start = time.perf_counter()
        draw()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    rows: list[tuple[str, list[float]]] = []
    for name in tasks.TASKS:
        task = tasks.make(name)
        draws = [partial(task.sample, size, generator) for size in BATCH_SIZES]
        rows.append((name, [median_ms(draw, args.draws) for draw in draws]))
    ngrams = tasks.make("ngrams")
    batches = [ngrams.sample(size, generator) for size in BATCH_SIZES]
    scorings = [partial(ngrams.optimal_bits_per_sequence, batch) for batch in batches]
    rows.append(("ngrams optimal estimator", [median_ms(score, args.draws) for score in scorings]))

    header = ["task"] + [f"batch {size} (ms)" for size in BATCH_SIZES]
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.draws} draws")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name, times in rows:
        print(f"| {name} | " + " | ".join(f"{ms:.2f}" for ms in times) + " |")


if __name__ == "__main__":
    main()
