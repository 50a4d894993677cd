"""Checks shared by the tests of several models: the autograd graph a run left, a run on the
command line split by --resume against one run, a run stopped as by a crash, one sequence
of a batched state, and validations scripted to given costs."""

import pytest
import torch

import ntm
import ntm.training.loop as loop
from ntm.cli import main
from ntm.rundir import read_metrics
from ntm.training import train

TIMING = ("seconds", "sequences_per_second")  # the only fields two equal runs may differ in


def node_names(tensor) -> set[str]:
    """The class names of every autograd node behind ``tensor``."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack += [next_node for next_node, _ in node.next_functions]
    return names


def untimed_metrics(folder) -> list[dict]:
    """The records of a run's metrics.jsonl without their timings."""
    return [{key: value for key, value in record.items() if key not in TIMING}
            for record in read_metrics(folder)]


def check_resumed_run_equals_one_run(tmp_path, options) -> str:
    """``ntm train copy`` for 2 steps then ``--resume`` to 4 gives the metrics of 4 steps in
    one go (timing aside); returns the resumed run's directory."""
    run, whole = tmp_path / "run", tmp_path / "whole"
    assert main(["train", "copy", "--steps", "2", "--out", str(run), *options]) == 0
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    assert main(["train", "copy", "--steps", "4", "--out", str(whole), *options]) == 0
    assert untimed_metrics(run) == untimed_metrics(whole)
    return str(run)


def poison_loss_at(monkeypatch, call: int) -> None:
    """Make the training loss NaN at the ``call``-th call of the loop's loss, from now on."""
    calls = {"n": 0}
    original = loop.sequence_loss

    def poisoned(*args):
        calls["n"] += 1
        loss = original(*args)
        return loss * torch.nan if calls["n"] == call else loss

    monkeypatch.setattr(loop, "sequence_loss", poisoned)


def train_until_diverged(config, out, monkeypatch, call: int) -> None:
    """Trains ``config`` into ``out`` with the ``call``-th loss of the loop made NaN, so that the
    run stops (``TrainingDiverged``) and keeps its last checkpoint, as after a crash."""
    poison_loss_at(monkeypatch, call)
    with pytest.raises(loop.TrainingDiverged):
        train(config, out, progress=False)
    monkeypatch.undo()


def sequence_of(state, b: int):
    """Sequence ``b`` of a batched ``LSTMState``, ``NTMState`` or ``MemoryState``, as a batch
    of one (controller states are ``[layers, B, H]``, the rest batch-first)."""
    if isinstance(state, ntm.LSTMState):
        return ntm.LSTMState(*(t[:, b:b + 1] for t in state))
    if isinstance(state, ntm.NTMState):
        return ntm.NTMState(*(t[b:b + 1] for t in state[:4]),
                            tuple(t[:, b:b + 1] for t in state.controller))
    return ntm.MemoryState(tuple(t[:, b:b + 1] for t in state.controller),
                           type(state.access)(*(t[b:b + 1] for t in state.access)),
                           state.reads[b:b + 1])


def scripted_validations(monkeypatch, costs):
    """Validations that score ``costs[step]`` whatever the model (the rest as usual); a list
    there gives one cost per validation of that step, in turn."""
    original = loop._Run.validate

    def validate(self, *, scheduled=True):
        cost = costs[self.counters["step"]]
        if isinstance(cost, list):
            cost = cost.pop(0)
        with monkeypatch.context() as patch:
            patch.setattr(loop, "evaluate_batches",
                          lambda *args: {"cost": cost, "bit_errors": 0.0})
            return original(self, scheduled=scheduled)

    monkeypatch.setattr(loop._Run, "validate", validate)
