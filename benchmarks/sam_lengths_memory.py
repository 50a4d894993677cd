"""Peak memory of a SAM running a batch of mixed lengths: ``lengths=`` against the padded batch.

    python benchmarks/sam_lengths_memory.py                    # 1,048,576 slots, batch 8
    PYTHONPATH=OTHER/src python benchmarks/sam_lengths_memory.py --revision REV  # REV's code

A SAM (the defaults but the slots: rows of 20, K = 4, faiss) runs 40 steps of 8 sequences of
lengths 40, 35, ..., 5, without gradients and with (forward, then backward of a loss on the
logits). Each configuration runs in a fresh process, whose peak resident set
(``ru_maxrss``) is the figure; ``model only`` is a process that builds the model and runs
nothing (the libraries' own memory). The memory matrix itself is 640 MiB, of which a sequence
touches only the pages of the rows it writes.

Prints a markdown table and writes a JSON file (--json, default
results/sam_lengths_memory.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

LENGTHS = [40, 35, 30, 25, 20, 15, 10, 5]
MODES = ["model only", "padded", "lengths", "padded + backward", "lengths + backward"]


def child(mode: str, slots: int) -> dict:
    """Run ``mode`` here; the peak resident set in MiB and the seconds it took."""
    import torch

    import ntm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ntm.SAM(9, 8, memory_slots=slots, index="auto")
    inputs = torch.randn(max(LENGTHS), len(LENGTHS), 9, generator=torch.Generator().manual_seed(1))
    started = time.perf_counter()
    if mode != "model only":
        backward = mode.endswith("backward")
        lengths = LENGTHS if mode.startswith("lengths") else None
        with torch.set_grad_enabled(backward):
            logits, _ = model(inputs, lengths=lengths)
            if backward:
                logits.square().sum().backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "peak_mib": round(peak, 1), "seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1 << 20)
    parser.add_argument("--json", default="results/sam_lengths_memory.json")
    parser.add_argument("--revision", default="this checkout",
                        help="what to record as the code measured (with PYTHONPATH)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.slots)))
        return 0
    rows = []
    for mode in MODES:
        result = subprocess.run([sys.executable, __file__, "--child", mode,
                                 "--slots", str(args.slots)],
                                capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    from ntm.bench import environment
    from ntm.rundir.files import atomic_write_text

    report = {"slots": args.slots, "lengths": LENGTHS, "revision": args.revision,
              "environment": environment(), "rows": rows}
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    print(f"SAM, {args.slots:,} slots, batch {len(LENGTHS)}, lengths {LENGTHS}")
    print("| run | peak resident set | seconds |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['peak_mib']:,.0f} MiB | {row['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
