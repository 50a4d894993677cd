"""What the heads of a trained NTM wrote and read, step by step, as figures and as text.

Runs the model of a run directory on one sequence of its task with ``model.trace`` and draws
the weightings with ``ntm.plots`` (the paper's Figure 6: a copy model writes to consecutive
locations, then reads them back in the same order)::

    python examples/inspect_heads.py runs/demo          # a run directory, or pretrained:copy
    python examples/inspect_heads.py runs/demo --set task.min_length=30 --set task.max_length=30
    python examples/inspect_heads.py                    # the shipped copy model, else one
                                                        # trained here for about a minute
    python examples/inspect_heads.py --quick            # a tiny model, a few seconds (tests)

Writes ``heads.png`` (weightings) and ``sequence.png`` (inputs, targets, outputs) into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ntm
import ntm.plots

# A small copy model when no run is given and no model is shipped: memory 32 x 8, lengths
# 1..8, stopped after a minute whether or not it has learned.
SMALL = ["task.max_length=8", "model.memory_slots=32", "model.memory_width=8",
         "model.controller_size=64", "train.steps=2000", "optim.lr=3e-4",
         "train.max_seconds=60", "train.device=cpu"]
QUICK = ["task.max_length=3", "task.width=3", "model.memory_slots=8", "model.memory_width=4",
         "model.controller_size=8", "train.steps=4", "train.batch_size=2",
         "train.val_batches=1", "train.val_batch_size=2", "train.device=cpu"]


def train_copy(out: Path, quick: bool) -> Path:
    """Trains a small copy model into ``out`` (replacing an earlier one); returns ``out``."""
    for name in (ntm.training.CONFIG_FILE, ntm.training.METRICS_FILE, ntm.training.MODEL_FILE,
                 ntm.training.BEST_FILE, ntm.training.STATE_FILE):
        (out / name).unlink(missing_ok=True)
    config = ntm.training.apply_overrides(ntm.training.preset_config("copy", "ntm-lstm"),
                                          QUICK if quick else SMALL)
    ntm.training.train(config, out, progress=not quick)
    return out


def focus(weights: torch.Tensor) -> str:
    """``weights [heads, memory_slots]`` as the most weighted slot of each head and its weight."""
    values, slots = weights.max(dim=-1)
    return " ".join(f"{slot:3d} ({value:.2f})" for value, slot in zip(values.tolist(),
                                                                       slots.tolist(), strict=True))


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description="Draw what an NTM's heads wrote and read.")
    parser.add_argument("run", nargs="?", help="run directory or pretrained:TASK")
    parser.add_argument("--set", action="append", default=[], metavar="task.KEY=VALUE",
                        help="a task parameter of the sequence shown (repeatable)")
    parser.add_argument("--best", action="store_true", help="the best validation's weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequence shown")
    parser.add_argument("--out", default="runs/inspect-heads", help="directory of the figures")
    parser.add_argument("--quick", action="store_true", help="a tiny model, a few seconds")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run = args.run
    if run is None and not args.quick and "copy-ntm-lstm" in ntm.pretrained.list():
        run = "pretrained:copy"
    if run is None:
        run = train_copy(out / "run", args.quick)
    model, config = ntm.training.load_run(run, best=args.best, device="cpu")
    if not hasattr(model, "trace"):
        parser.error(f"{run} holds an LSTM baseline, which has no heads")
    # Test settings (a run's opening or curriculum shapes its training only).
    config = ntm.training.apply_overrides(ntm.training.evaluation_config(config), args.set)
    batch = ntm.training.build_task(config.task).sample(
        1, generator=torch.Generator().manual_seed(args.seed))

    with torch.no_grad():
        logits, _, trace = model.trace(batch.inputs)  # trace fields: [T, 1, heads, slots]
    writes, reads = trace.write_weights[:, 0], trace.read_weights[:, 0]  # (T, W, N), (T, R, N)
    scored = batch.mask[:, 0, None].float()  # unscored steps drawn as zero, as in the paper
    outputs = torch.sigmoid(logits[:, 0]) * scored

    print(f"{config.task.name}, {batch.inputs.shape[0]} steps; most weighted slot (weight):")
    print(f"{'step':>4}  {'input':<{batch.inputs.shape[2]}}  write heads   read heads")
    for step in range(batch.inputs.shape[0]):
        bits = "".join(str(int(bit)) for bit in batch.inputs[step, 0].round().tolist())
        print(f"{step:4d}  {bits}  {focus(writes[step])}   {focus(reads[step])}")

    title = f"{config.task.name}, {config.model.kind} ({run})"
    written = [
        ntm.plots.save_figure(ntm.plots.weightings_figure(reads, writes, title=title),
                              out / "heads.png"),
        ntm.plots.save_figure(ntm.plots.sequence_figure(batch.inputs[:, 0],
                                                        batch.targets[:, 0] * scored, outputs,
                                                        title=title), out / "sequence.png"),
    ]
    print("figures:", *written)
    return written


if __name__ == "__main__":
    main()
