"""Training-step speed of two source trees of this library, timed interleaved in one run.

Each round runs one short subprocess per tree (``PYTHONPATH=TREE/src``), in alternating order,
that times training steps of the default NTM on copy (the paper's model, RMSProp, one thread)
and prints the median; the table gives, per tree and batch, the median over rounds. Only the
public API that every release has is used (``ntm.NTM``, ``ntm.tasks.make``,
``ntm.metrics.sequence_loss``), so any two revisions compare::

    git worktree add /tmp/before HEAD~1
    python benchmarks/compare_revisions.py /tmp/before . --batches 1,32 --rounds 5

Run nothing else on the machine meanwhile: the 2-core development machine is noisy, which is
why the trees alternate within each round instead of running one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# The timing child: prints {"sequences_per_second": median} for one tree and one batch.
_CHILD = r"""
import json, statistics, sys, time
import torch
import ntm
from ntm.metrics import sequence_loss

batch, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
torch.manual_seed(0)
task = ntm.tasks.make("copy")
model = ntm.NTM(task.input_size, task.output_size)
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, momentum=0.9, alpha=0.95,
                                eps=1e-4, centered=True)
generator = torch.Generator().manual_seed(1)
batches = [task.sample(batch, generator) for _ in range(4)]
times = []
for step in range(steps + 3):  # three warm-up steps (the kernel loads on the first)
    data = batches[step % len(batches)]
    start = time.perf_counter()
    logits, _ = model(data.inputs)
    loss = sequence_loss(logits, data.targets, data.mask)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
    optimizer.step()
    times.append(time.perf_counter() - start)
print(json.dumps({"sequences_per_second": batch / statistics.median(times[3:])}))
"""


def _time(tree: Path, batch: int, steps: int) -> float:
    environment = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(batch), str(steps)],
                          env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["sequences_per_second"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two source trees: before, after")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    measured = {(str(t), b): [] for t in args.trees for b in batches}
    for round_ in range(args.rounds):
        for batch in batches:
            order = args.trees if round_ % 2 == 0 else args.trees[::-1]
            for tree in order:
                measured[(str(tree), batch)].append(_time(tree, batch, args.steps))
    before, after = (str(t) for t in args.trees)
    print(f"sequences per second, median of {args.rounds} interleaved rounds "
          f"(each the median of {args.steps} steps)")
    print(f"{'batch':>5}  {'before':>10}  {'after':>10}  {'after / before':>14}")
    rows = []
    for batch in batches:
        old = statistics.median(measured[(before, batch)])
        new = statistics.median(measured[(after, batch)])
        rows.append({"batch": batch, "before": old, "after": new, "ratio": new / old})
        print(f"{batch:>5}  {old:>10.1f}  {new:>10.1f}  {new / old:>14.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": {
            f"{tree}@{batch}": values for (tree, batch), values in measured.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
