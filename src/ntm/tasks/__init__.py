"""The five tasks of the NTM paper (Graves et al. 2014, section 4), as batch generators.

>>> import torch
>>> from ntm import tasks
>>> task = tasks.make("copy")  # the training distribution: lengths 1..20, 8 bits
>>> batch = task.sample(32, generator=torch.Generator().manual_seed(0))
>>> batch.inputs.shape[1:], batch.targets.shape[1:], batch.mask.shape[1]
(torch.Size([32, 9]), torch.Size([32, 8]), 32)
>>> tasks.make("copy", min_length=120, max_length=120).sample(1).inputs.shape
torch.Size([241, 1, 9])
"""

from __future__ import annotations

from ntm.tasks.associative_recall import AssociativeRecallTask
from ntm.tasks.base import Batch, Task, check_batch, check_task
from ntm.tasks.copy import CopyTask
from ntm.tasks.ngrams import NGramsTask, optimal_predictions
from ntm.tasks.priority_sort import PrioritySortTask
from ntm.tasks.registry import TASKS, import_module, make, names, register
from ntm.tasks.repeat_copy import REPEAT_MEAN, REPEAT_STD, RepeatCopyTask

# The paper's generalisation tests (Graves et al. 2014, section 4), as parameter overrides of
# `make(name, **overrides)`.
# ngrams and priority_sort are tested on their training distribution; ngrams is compared with
# the optimal estimator (NGramsTask.optimal_bits_per_sequence).
GENERALISATION: dict[str, list[dict[str, int]]] = {
    "copy": [{"min_length": n, "max_length": n} for n in (10, 20, 30, 50, 120)],
    "repeat_copy": [
        {"min_length": 10, "max_length": 10, "min_repeats": 20, "max_repeats": 20},
        {"min_length": 20, "max_length": 20, "min_repeats": 10, "max_repeats": 10},
    ],
    "associative_recall": [{"min_items": n, "max_items": n} for n in (6, 10, 12, 15, 20)],
    "ngrams": [{}],
    "priority_sort": [{}],
}

__all__ = [
    "GENERALISATION",
    "REPEAT_MEAN",
    "REPEAT_STD",
    "TASKS",
    "AssociativeRecallTask",
    "Batch",
    "CopyTask",
    "NGramsTask",
    "PrioritySortTask",
    "RepeatCopyTask",
    "Task",
    "check_batch",
    "check_task",
    "import_module",
    "make",
    "names",
    "optimal_predictions",
    "register",
]
