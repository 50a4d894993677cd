"""Checks shared by the tests of several models: the autograd graph a run left, and a run on
the command line split by --resume against one run."""

from ntm.cli import main
from ntm.rundir import read_metrics

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
