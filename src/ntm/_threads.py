"""torch's CPU thread count for a block of work, restored afterwards.

``torch.set_num_threads`` is process-wide, so the library's entry points that take a thread
count (training, evaluation from the command line, the benchmark) must leave it as they found it
for a caller that goes on in the same process (a notebook, a test, a sweep).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` torch CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
