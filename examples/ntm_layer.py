"""The NTM as one layer of your own model, trained by a plain PyTorch loop.

The problem needs memory: a sequence of tokens goes in, and at every step the model answers
"has this token appeared earlier in the sequence?". The model is an ``nn.Embedding``, an
``ntm.NTM`` used like ``nn.LSTM`` (``batch_first=True``, ``(output, state)`` back) and a linear
classifier head; nothing about it is specific to the library's tasks or training loop::

    python examples/ntm_layer.py           # about a minute on a CPU
    python examples/ntm_layer.py --quick   # a few seconds, tiny sizes (the test suite)

Always answering "no" scores about 64% with the full mode's 16 tokens in sequences of 16.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import ntm


def make_batch(
    batch_size: int, length: int, vocab_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences and, per step, whether the token occurred at an earlier step.

    Returns:
        ``tokens [batch, length]`` int64 and ``seen [batch, length]`` float32, 0 or 1.
    """
    tokens = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    same = tokens.unsqueeze(2) == tokens.unsqueeze(1)  # (B, T, T): token t equals token s
    earlier = torch.ones(length, length, dtype=torch.bool).tril(-1)  # (T, T): s < t
    return tokens, (same & earlier).any(dim=2).float()


class SeenBefore(nn.Module):
    """Embedding -> NTM -> linear head: one logit per step, ``[batch, length]``."""

    def __init__(self, vocab_size: int, embedding_size: int, features: int, **ntm_sizes) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size)
        # The NTM's output layer gives `features` channels for the head to classify.
        self.ntm = ntm.NTM(embedding_size, features, batch_first=True, **ntm_sizes)
        self.head = nn.Linear(features, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features, _ = self.ntm(self.embed(tokens))  # (B, T, E) -> (B, T, F); the state is unused
        return self.head(torch.relu(features)).squeeze(-1)  # (B, T)


def accuracy(model: nn.Module, tokens: torch.Tensor, seen: torch.Tensor) -> float:
    with torch.no_grad():
        return ((model(tokens) > 0).float() == seen).float().mean().item()


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="An NTM layer inside a PyTorch model.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--steps", type=int, help="updates (default: 1500, quick: 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.quick:
        vocab_size, length, batch_size, steps = 6, 6, 8, args.steps or 20
        sizes = {"controller_size": 16, "memory_slots": 8, "memory_width": 8}
    else:
        vocab_size, length, batch_size, steps = 16, 16, 32, args.steps or 1500
        sizes = {"controller_size": 64, "memory_slots": 32, "memory_width": 16}

    model = SeenBefore(vocab_size, embedding_size=16, features=32, **sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_function = nn.BCEWithLogitsLoss()
    data = torch.Generator().manual_seed(args.seed + 1)
    test_tokens, test_seen = make_batch(512, length, vocab_size, torch.Generator().manual_seed(99))
    print(f"always 'no' scores {1 - test_seen.mean().item():.1%} on the test set")

    score = accuracy(model, test_tokens, test_seen)  # before training
    started = time.perf_counter()
    for step in range(1, steps + 1):
        tokens, seen = make_batch(batch_size, length, vocab_size, data)
        loss = loss_function(model(tokens), seen)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # NTMs spike early without it
        optimizer.step()
        if step % max(steps // 10, 1) == 0 or step == steps:
            score = accuracy(model, test_tokens, test_seen)
            print(f"step {step:5d}  loss {loss.item():.4f}  test accuracy {score:.1%}  "
                  f"({time.perf_counter() - started:.0f} s)")
    return score


if __name__ == "__main__":
    main()
