"""How much context an ngrams model uses: it against Bayesian estimators of shorter contexts.

The task's optimal estimator counts, per sequence, the ones and zeros seen after each 5-bit
context. The same estimator with k-bit contexts (k = 0..5, ``optimal_predictions(bits, k + 1)``)
stands for a predictor that uses only the last k bits (near the best such a one can do); its
cost rises as k falls.
A model whose cost sits between two of them, and whose predictions are closest to one of them
(the KL divergence from that estimator's predictions to the model's, in bits per sequence), has
learned about that much context. Used by RESULTS.md, "Ngrams".

    python results/scripts/ngrams_context_order.py [--sequences 1024] [--seed 0]
        [--run DIR ...] [--best]

Without --run: the shipped LSTM-controller NTM and the best feedforward NTM (the best weights
of runs/ngrams-ntm-ff-tune-lr3e-5-seed2, which is not in the repository: RESULTS.md, "Recreating
the runs", gives the commands that train it there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ntm import tasks
from ntm.tasks.ngrams import optimal_predictions
from ntm.training import load_run

FEEDFORWARD_RUN = Path("runs/ngrams-ntm-ff-tune-lr3e-5-seed2")


def bits_of(probability_one: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``bits`` under ``probability_one``, in bits per sequence ``[batch]``."""
    probability = torch.where(bits > 0.5, probability_one, 1 - probability_one)
    return -torch.log2(probability).sum(0)  # (B,)


def kl_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Sum over steps of KL(Bernoulli(p) || Bernoulli(q)) in bits, per sequence ``[batch]``."""
    kl = p * torch.log2(p / q) + (1 - p) * torch.log2((1 - p) / (1 - q))
    return kl.sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", nargs="+", metavar="DIR", help="ngrams run directories")
    parser.add_argument("--best", action="store_true", help="with --run, the best weights")
    args = parser.parse_args()
    runs = [(run, args.best) for run in args.run] if args.run else [
        ("pretrained:ngrams", False), (str(FEEDFORWARD_RUN), True)]
    if not args.run and not FEEDFORWARD_RUN.is_dir():
        parser.error(f"{FEEDFORWARD_RUN} is missing: recreate it as RESULTS.md, \"Recreating the "
                     "runs\", says, or name runs with --run")

    task = tasks.make("ngrams")
    batch = task.sample(args.sequences, generator=torch.Generator().manual_seed(args.seed))
    bits = batch.targets[..., 0].double()  # (T, B)
    estimators = {k: optimal_predictions(bits, k + 1).clamp(1e-12, 1 - 1e-12) for k in range(6)}
    print(f"{args.sequences} sequences of 200 bits, seed {args.seed}; bits per sequence")
    print("estimator with k-bit contexts: " + "  ".join(
        f"k={k}: {bits_of(p, bits).mean():.1f}" for k, p in estimators.items()))
    for run, best in runs:
        model, config = load_run(run, best=best, device="cpu")
        with torch.no_grad():
            logits = model(batch.inputs)[0][..., 0].double()
        predicted = torch.sigmoid(logits).clamp(1e-12, 1 - 1e-12)  # (T, B)
        distances = "  ".join(f"k={k}: {kl_bits(p, predicted).mean():.1f}"
                              for k, p in estimators.items())
        print(f"{config.model.kind} ({run}{', best' if best else ''}): "
              f"{bits_of(predicted, bits).mean():.1f} bits; "
              f"KL from each estimator to it: {distances}")


if __name__ == "__main__":
    main()
