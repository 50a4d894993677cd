"""Where the shipped repeat-copy models fail outside their training distribution.

Prints, for each shipped NTM and each (length L, repeats K), the bit errors per sequence in each
repeat of the answer (data channels), on the end-marker step, and on the marker channel before
it (markers emitted too early). Used by RESULTS.md, "Repeat copy".

    python results/scripts/repeat_copy_errors.py [--sequences 64] [--seed 0]
        [--run DIR ...] [--best] [--memory-slots N]

With --run, the run directories given (their last weights, or with --best their best
validation's) instead of the shipped models; with --memory-slots, the same weights with a memory
of N slots instead of the one their config names.
"""

from __future__ import annotations

import argparse

import torch

from ntm import tasks
from ntm.metrics import bit_errors_per_sequence
from ntm.training import load_run

SETTINGS = ((10, 20), (20, 10), (10, 12), (10, 14), (15, 8))


def errors_by_repeat(model: torch.nn.Module, length: int, repeats: int, sequences: int,
                     seed: int) -> tuple[list[float], float, float, float]:
    """Per-repeat data-bit errors, end-step errors and early-marker errors, per sequence, and
    the median answer step at which the write head's focus is back on a slot it wrote an
    input to (inf: never)."""
    task = tasks.make("repeat_copy", min_length=length, max_length=length,
                      min_repeats=repeats, max_repeats=repeats)
    batch = task.sample(sequences, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits, _, trace = model.trace(batch.inputs)

    def errors(steps: slice, channels: slice) -> float:
        """ntm.metrics' bit errors per sequence, over some steps and channels only."""
        targets = batch.targets[steps, :, channels]
        return bit_errors_per_sequence(logits[steps, :, channels], targets,
                                       batch.mask[steps]).item()

    first = length + 1  # the first answer step (RepeatCopyTask's docstring)
    end = first + length * repeats  # the end-marker step
    width = task.output_size - 1
    data, marker = slice(0, width), slice(width, width + 1)
    per_repeat = [errors(slice(first + r * length, first + (r + 1) * length), data)
                  for r in range(repeats)]
    return (per_repeat, errors(slice(end, end + 1), slice(None)), errors(slice(first, end), marker),
            overwrite_step(trace.write_weights[:, :, 0], length))


def overwrite_step(write_weights: torch.Tensor, length: int) -> float:
    """The median over sequences of the first answer step at which the write focus (the most
    weighted slot of the first write head) comes back to a slot that held an input's focus
    after leaving those slots; inf if it never does.

    Args:
        write_weights: ``[steps, batch, memory_slots]``.
        length: L, the number of inputs (steps 0..L-1); the answer starts at step L + 1.
    """
    focus = write_weights.argmax(-1)  # (T, B)
    data_slots = focus[:length]  # (L, B)
    answer = focus[length + 1:]  # (T - L - 1, B)
    on_inputs = (answer.unsqueeze(1) == data_slots.unsqueeze(0)).any(1)  # (T - L - 1, B)
    has_left = torch.cumsum((~on_inputs).long(), 0) > 0  # it may rest on the last one at first
    back = on_inputs & has_left
    steps = torch.where(back.any(0), back.float().argmax(0).float(), torch.tensor(float("inf")))
    return steps.median().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", nargs="+", metavar="DIR",
                        help="run directories to analyse (default: the shipped models)")
    parser.add_argument("--best", action="store_true",
                        help="with --run, the weights of the best validation")
    parser.add_argument("--memory-slots", type=int, metavar="N",
                        help="test with a memory of N slots (the same weights)")
    args = parser.parse_args()
    runs = args.run or ["pretrained:repeat_copy-ntm-lstm", "pretrained:repeat_copy-ntm-ff"]
    models = {run: load_run(run, best=args.best, device="cpu", memory_slots=args.memory_slots)[0]
              for run in runs}
    for name, model in models.items():
        for length, repeats in SETTINGS:
            per_repeat, end_step, early, overwrite = errors_by_repeat(
                model, length, repeats, args.sequences, args.seed)
            cells = " ".join(f"{e:.0f}" for e in per_repeat)
            print(f"{name} L={length:2} K={repeats:2}  errors in repeat 1..K: {cells}  "
                  f"| end step {end_step:.2f} | early markers {early:.2f} "
                  f"| write head back on the inputs at answer step {overwrite:g}")


if __name__ == "__main__":
    main()
