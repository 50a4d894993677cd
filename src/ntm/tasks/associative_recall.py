"""The associative recall task (Graves et al. 2014, section 4.3)."""

from __future__ import annotations

import torch

from ntm.tasks.base import (
    Batch,
    Task,
    check_fraction,
    check_int,
    check_order,
    place,
    random_bits,
    random_ints,
    steps_between,
    time_index,
)


class AssociativeRecallTask(Task):
    """After a list of items and a query item, produce the item that followed the query.

    With n items of ``item_length`` vectors each (written ``l``; ``block = l + 1``)::

        steps i*block              input: item delimiter, channel width = 1   (i = 0..n-1)
        steps i*block+1..i*block+l input: the l random vectors of item i
        step  n*block              input: query delimiter, channel width+1 = 1
        next l steps               input: the vectors of the query item q, uniform in 0..n-2
        next step                  input: query delimiter again, channel width+1 = 1
        last l steps               input: zero; target: the vectors of item q+1 (scored)

    so ``steps = n*(l+1) + 2*l + 2`` (``4n + 8`` for l = 3), ``input_size = width + 2`` and
    ``output_size = width``. n is drawn per sequence; shorter sequences are padded at the end.

    Args:
        min_items, max_items: range of n (paper training: 2..6; generalisation up to 20).
            At least 2, so that some item follows the query.
        item_length: vectors per item (paper: 3).
        width: bits per vector (paper: 6).
        near_items: the probability that a sequence holds a *near item*: one item other than
            the query's, replaced by the query item with 1 to ``near_bits`` of its bits flipped
            (0: never, the paper's distribution). Random items are that close about once in
            4,600 sequences, too rarely to learn to tell them apart (RESULTS.md, "Near items").
            A training-only parameter: validation, ``ntm eval`` and plots of a run draw from
            the task without it (``training_only``).
        near_bits: the most bits a near item differs from the query by (drawn uniformly from
            ``1..near_bits`` per sequence), at most ``item_length * width`` where near items
            are drawn.
    """

    name = "associative_recall"
    # A length curriculum (task.curriculum) grows these from those: ntm.tasks.curriculum.
    curriculum = {"max_items": "min_items"}
    # Parameters that shape only the training data: held-out data is drawn without them.
    training_only = ("near_items", "near_bits")

    def __init__(
        self,
        *,
        min_items: int = 2,
        max_items: int = 6,
        item_length: int = 3,
        width: int = 6,
        near_items: float = 0.0,
        near_bits: int = 3,
    ) -> None:
        self.min_items = check_int("min_items", min_items, minimum=2)
        self.max_items = check_int("max_items", max_items, minimum=2)
        check_order("min_items", self.min_items, "max_items", self.max_items)
        self.item_length = check_int("item_length", item_length)
        self.width = check_int("width", width)
        self.near_items = check_fraction("near_items", near_items)
        self.near_bits = check_int("near_bits", near_bits)
        # Checked only where near items are drawn: a task of tiny items keeps the default.
        if self.near_items > 0 and self.near_bits > self.item_length * self.width:
            raise ValueError(f"near_bits must be at most item_length * width = "
                             f"{self.item_length * self.width} (the bits of an item), "
                             f"got {self.near_bits}")
        self.input_size = self.width + 2
        self.output_size = self.width

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        batch_size = check_int("batch_size", batch_size)
        width, item_length = self.width, self.item_length
        block = item_length + 1
        num_items = random_ints(self.min_items, self.max_items, batch_size, generator)  # (B,)
        # Query index uniform in 0..n-2; float64 so that rand * (n - 1) never rounds up to n - 1.
        uniform = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        query = (uniform * (num_items - 1)).long()  # (B,)
        most_items = int(num_items.max())
        query_start = num_items * block  # (B,)
        answer_start = query_start + item_length + 2  # (B,)
        steps = most_items * block + 2 * item_length + 2

        items = random_bits((most_items, item_length, batch_size, width), generator)
        if self.near_items > 0:  # no extra draws otherwise: the paper's batches stay the same
            plant_near_items(items, num_items, query, self.near_items, self.near_bits, generator)

        # The item list, laid out for the longest sequence, then cut to each sequence's n.
        listing = torch.zeros(most_items, block, batch_size, self.input_size)
        listing[:, 0, :, width] = 1.0
        listing[:, 1:, :, :width] = items
        listing_steps = most_items * block
        listing = listing.reshape(listing_steps, batch_size, self.input_size)  # (n*block, B, I)
        listing = listing * (time_index(listing_steps, num_items) < query_start).unsqueeze(-1)

        by_sequence = items.permute(2, 0, 1, 3)  # (B, n_max, l, W)
        sequence = torch.arange(batch_size)
        query_vectors = by_sequence[sequence, query].transpose(0, 1)  # (l, B, W)
        answer_vectors = by_sequence[sequence, query + 1].transpose(0, 1)  # (l, B, W)

        query_segment = torch.zeros(item_length + 2, batch_size, self.input_size)
        query_segment[0, :, width + 1] = 1.0
        query_segment[1 : item_length + 1, :, :width] = query_vectors
        query_segment[item_length + 1, :, width + 1] = 1.0

        inputs = place(query_segment, start=query_start, steps=steps)
        inputs[:listing_steps] += listing  # the two never overlap within a sequence
        targets = place(answer_vectors, start=answer_start, steps=steps)  # (T, B, W)
        mask = steps_between(answer_start, answer_start + item_length, steps)  # (T, B)
        return Batch(inputs, targets, mask, lengths=answer_start + item_length)


def plant_near_items(
    items: torch.Tensor,
    num_items: torch.Tensor,
    query: torch.Tensor,
    probability: float,
    most_bits: int,
    generator: torch.Generator | None,
) -> None:
    """In each sequence chosen with ``probability``, overwrites one item other than the query
    (uniform over the ``n - 1`` others) by the query item with ``k`` of its bits flipped, ``k``
    uniform in ``1..most_bits`` and the bits uniform among the item's ``l * W``. In place.

    Args:
        items: ``[n_max, l, B, W]`` float32 bits, item ``i`` of sequence ``b`` at ``[i, :, b]``.
        num_items: ``[B]`` int64, the items of each sequence (at least 2).
        query: ``[B]`` int64, the query's item, ``0..n-2``.
    """
    _, length, batch_size, width = items.shape
    chosen = torch.rand(batch_size, generator=generator) < probability  # (B,)
    # float64, as for the query: rand * (n - 1) never rounds up to n - 1.
    uniform = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    near = (query + 1 + (uniform * (num_items - 1)).long()) % num_items  # (B,), never the query
    flips = random_ints(1, most_bits, batch_size, generator)  # (B,)
    # Each bit's rank in a random order of the item's bits: the k lowest ranks are flipped.
    rank = torch.rand(batch_size, length * width, generator=generator).argsort(1).argsort(1)
    flip = (rank < flips.unsqueeze(1)).view(batch_size, length, width)  # (B, l, W)
    sequences = torch.nonzero(chosen).squeeze(1)
    query_items = items[query[sequences], :, sequences]  # (b, l, W)
    items[near[sequences], :, sequences] = torch.where(flip[sequences], 1 - query_items,
                                                       query_items)
