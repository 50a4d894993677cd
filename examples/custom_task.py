"""A custom algorithmic task, reversing a sequence, trained by the library's own loop.

The task is a few lines: a ``ntm.tasks.Task`` subclass with ``input_size``, ``output_size`` and
``sample``. Registered under a name, it trains, resumes, evaluates and plots like the paper's
tasks, and its parameters are set like theirs (``task.max_length=...``)::

    python examples/custom_task.py           # about a minute on a CPU
    python examples/custom_task.py --quick   # a few seconds, tiny sizes (the test suite)

The same from the command line, with this file imported as the module ``custom_task`` (the
working directory is searched for it; from elsewhere, put examples/ on PYTHONPATH)::

    cd examples
    ntm train reverse --task-module custom_task --steps 3000 --out ../runs/reverse \\
        --set task.max_length=6 --set model.memory_slots=32 --set model.memory_width=8 \\
        --set model.controller_size=64 --set optim.lr=3e-4
    ntm eval ../runs/reverse     # config.json recorded task.module, so no flag is needed
    ntm plot ../runs/reverse
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ntm


class ReverseTask(ntm.tasks.Task):
    """Reproduce a sequence of random bit vectors in reverse order, after a delimiter.

    Steps ``0..L-1`` input L random vectors on channels ``0..width-1``, step ``L`` the
    delimiter on channel ``width``, and steps ``L+1..2L`` are scored against the vectors, last
    first. L is drawn once per batch, uniform in ``min_length..max_length``, so no sequence of
    a batch is padded.

    Args:
        min_length, max_length: shortest and longest sequence.
        width: bits per vector.
    """

    name = "reverse"

    def __init__(self, *, min_length: int = 1, max_length: int = 6, width: int = 6) -> None:
        if not 1 <= min_length <= max_length or width < 1:
            raise ValueError("need 1 <= min_length <= max_length and width >= 1, got "
                             f"{min_length}, {max_length}, {width}")
        # Stored under their own names: the default Task.params reads them back.
        self.min_length, self.max_length, self.width = min_length, max_length, width
        self.input_size, self.output_size = width + 1, width

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ntm.tasks.Batch:
        length = int(torch.randint(self.min_length, self.max_length + 1, (1,),
                                   generator=generator))
        steps = 2 * length + 1
        bits = torch.randint(0, 2, (length, batch_size, self.width), generator=generator).float()
        inputs = torch.zeros(steps, batch_size, self.input_size)  # (T, B, width + 1)
        inputs[:length, :, : self.width] = bits
        inputs[length, :, self.width] = 1.0  # the delimiter
        targets = torch.zeros(steps, batch_size, self.width)  # (T, B, width)
        targets[length + 1 :] = bits.flip(0)  # last in, first out
        mask = torch.zeros(steps, batch_size, dtype=torch.bool)  # (T, B)
        mask[length + 1 :] = True
        return ntm.tasks.Batch(inputs, targets, mask)


ntm.tasks.register("reverse", ReverseTask)

# Full mode: a small NTM (memory 32 x 8) on lengths 1..6, about a minute on one CPU thread.
FULL = ["task.max_length=6", "model.memory_slots=32", "model.memory_width=8",
        "model.controller_size=64", "train.steps=3000", "train.batch_size=16",
        "optim.lr=3e-4", "train.val_every=250", "train.checkpoint_every=500",
        "train.max_seconds=90", "train.device=cpu"]
# Quick mode: tiny sizes and a few steps; checks that everything runs, not that it learns.
QUICK = ["task.max_length=3", "task.width=3", "model.memory_slots=8", "model.memory_width=4",
         "model.controller_size=8", "train.steps=6", "train.batch_size=2", "train.log_every=2",
         "train.val_every=3", "train.val_batches=1", "train.val_batch_size=2",
         "train.device=cpu"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train an NTM on a custom task: reversal.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--out", default="runs/reverse-example", help="run directory (replaced)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    run_files = (ntm.training.CONFIG_FILE, ntm.training.METRICS_FILE, ntm.training.MODEL_FILE,
                 ntm.training.BEST_FILE, ntm.training.STATE_FILE)
    for name in run_files:
        (out / name).unlink(missing_ok=True)  # a fresh run each time

    config = ntm.training.preset_config("reverse", "ntm-lstm")  # the fast recipe's optimiser
    config = ntm.training.apply_overrides(config, QUICK if args.quick else FULL)
    # Recorded in config.json so that `ntm eval`/`ntm plot` import the task; this script runs
    # as __main__ and has registered "reverse" already, so nothing is imported twice.
    config.task.module = Path(__file__).stem
    result = ntm.training.train(config, out, progress=not args.quick)
    print(f"trained {result.step} steps in {result.seconds:.0f} s: validation cost "
          f"{result.val_cost:.3f} bits, {result.val_bit_errors:.3f} bit errors per sequence")

    # Load the best weights back; test on the training lengths, the longest one, and twice it.
    model, config = ntm.training.load_run(out, best=True)
    longest = config.task.params["max_length"]
    settings = [{}] + [{"min_length": n, "max_length": n} for n in (longest, 2 * longest)]
    rows = ntm.training.generalisation(model, config, settings=settings, batches=2,
                                       batch_size=16)
    for row in rows:
        print(f"{row['setting']:>10}: {row['cost']:.3f} bits, {row['bit_errors']:.3f} bit "
              f"errors per sequence")
    print(f"run directory: {out}  (then: PYTHONPATH={Path(__file__).parent} ntm eval {out})")


if __name__ == "__main__":
    main()
