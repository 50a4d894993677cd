"""Settings shared by every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine a 2-thread pool makes every tiny operation
    wait for the other core (a softmax of a few numbers about 50x slower). Restored after each
    test, so a test may still set its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
