"""Training-step speed of ntm.NTM (also `ntm bench`).

    python benchmarks/train_step.py                       # CPU: batch 1, 8, 32, 128; threads 1, 2
    python benchmarks/train_step.py --paths kernel,python,autograd   # the NTM's backends
    python benchmarks/train_step.py --device cuda --batch-sizes 1,32,128,1024

Prints a table and writes a JSON file (--json, default train_step.json).
"""

from __future__ import annotations

import argparse

from ntm.bench import HEADER, benchmark, environment, prepare, write_json


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32, 128])
    parser.add_argument("--threads", type=_ints, default=[1, 2])
    parser.add_argument("--paths", default="auto",
                        help="comma-separated: auto, kernel (CPU only), python, autograd, "
                             "graph (CUDA only); fused and plain are auto and autograd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--json", default="train_step.json")
    args = parser.parse_args(argv)
    prepare(args.device, args.paths.split(","))
    print(environment())
    print(HEADER)
    results = benchmark(
        args.batch_sizes,
        args.threads,
        args.paths.split(","),
        device=args.device,
        timed_steps=args.steps,
    )
    write_json(results, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
