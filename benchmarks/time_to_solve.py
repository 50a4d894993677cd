"""Wall-clock time until `ntm train copy` (default recipe) solves copy, over several seeds.

Solved: validation cost under 0.1 bits per sequence on the fixed held-out set (lengths 1 to
20). Seeds run one after another on one thread each, so that they do not slow each other.

    python benchmarks/time_to_solve.py                          # seeds 1-5, the fast preset
    python benchmarks/time_to_solve.py --preset paper --set train.batch_size=16
    python benchmarks/time_to_solve.py --set optim.lr=3e-4 --set train.batch_size=32

Prints a table (seconds and sequences to solve per seed, the median) and writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from ntm.training import apply_overrides, preset_config, train


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="copy")
    parser.add_argument("--model", default="ntm-lstm")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--seeds", type=_seeds, default=_seeds("1-5"), help="e.g. 1-5")
    parser.add_argument("--target", type=float, default=0.1, help="validation bits/sequence")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="give up after")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--val-every", type=int, default=50,
                        help="steps between validations: the resolution of the measurement")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default="time_to_solve.json")
    parser.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR")
    args = parser.parse_args(argv)

    rows = []
    print("seed  solved  seconds  sequences  val_cost")
    for seed in args.seeds:
        config = preset_config(args.task, args.model, args.preset)
        config = apply_overrides(
            config,
            [
                *args.overrides,
                f"train.seed={seed}",
                f"train.threads={args.threads}",
                f"train.target_val_cost={args.target}",
                f"train.max_seconds={args.max_seconds}",
                f"train.val_every={args.val_every}",
                "train.steps=10000000",
                "train.checkpoint_every=10000000",
            ],
        )
        if args.keep:
            result = train(config, f"{args.keep}/seed{seed}", progress=False)
        else:
            with tempfile.TemporaryDirectory() as out:
                result = train(config, out, progress=False)
        solved = result.stopped == "target"
        rows.append(
            {"seed": seed, "solved": solved, "seconds": result.seconds,
             "sequences": result.sequences, "val_cost": result.val_cost}
        )  # fmt: skip
        print(f"{seed:>4}  {'yes' if solved else 'no':>6}  {result.seconds:>7.1f}  "
              f"{result.sequences:>9}  {result.val_cost:>8.3f}", flush=True)  # fmt: skip
    solved = [row for row in rows if row["solved"]]
    summary = {
        "solved": f"{len(solved)}/{len(rows)}",
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "median_sequences": statistics.median(r["sequences"] for r in rows),
        "config": config.to_dict(),
    }
    print(f"solved {summary['solved']}; median {summary['median_seconds']:.1f} s, "
          f"{summary['median_sequences']:.0f} sequences (unsolved seeds count at their limit)")
    with open(args.json, "w") as file:
        json.dump({"runs": rows, **summary}, file, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
