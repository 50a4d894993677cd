"""Custom tasks: registration, interface checks, ``--task-module`` and the Python training API.

Every test registers its tasks in a private copy of the registry and imports its task modules
under names of its own, so tests stay independent of one another and of their order.
"""

import json
import sys
import textwrap
import uuid

import pytest
import torch

from ntm import tasks, training
from ntm.cli import main
from ntm.tasks import registry

# A task module as a user would write it: a Task subclass, registered on import.
MODULE_SOURCE = '''
import torch
import ntm


class Echo(ntm.tasks.Task):
    """The input bits are the targets: the smallest task that trains."""

    def __init__(self, *, length: int = 3, width: int = 2) -> None:
        self.length, self.width = length, width
        self.input_size = self.output_size = width

    def sample(self, batch_size, generator=None):
        bits = torch.randint(0, 2, (self.length, batch_size, self.width),
                             generator=generator).float()
        return ntm.tasks.Batch(bits, bits, torch.ones(self.length, batch_size, dtype=torch.bool))


ntm.tasks.register({name!r}, Echo)
'''

# Tiny models and short runs: these tests check plumbing, not learning.
TINY = ["model.memory_slots=6", "model.memory_width=4", "model.controller_size=6",
        "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=2", "train.batch_size=2", "train.device=cpu"]
TINY_CLI = [arg for item in TINY for arg in ("--set", item)] + ["--no-progress"]


@pytest.fixture
def fresh_registry(monkeypatch):
    """A private copy of the task registry, restored after the test."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))


@pytest.fixture
def task_module(tmp_path, monkeypatch, fresh_registry):
    """Writes a task module registering a new task; returns ``(module, task_name)``.

    The module is importable (``tmp_path`` on ``sys.path``) but not imported yet, and is
    forgotten by ``sys.modules`` after the test.
    """
    suffix = uuid.uuid4().hex[:8]
    module, name = f"user_tasks_{suffix}", f"echo_{suffix}"
    (tmp_path / f"{module}.py").write_text(MODULE_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module, name
    sys.modules.pop(module, None)


def _forget(module: str, name: str) -> None:
    """Undo an import of ``module``: as in a new process, the task must be imported again."""
    sys.modules.pop(module, None)
    registry._FACTORIES.pop(name, None)


def _config(name: str, *extra: str) -> training.RunConfig:
    return training.apply_overrides(training.preset_config(name), [*TINY, *extra])


def _error(capsys, argv):
    """Run the CLI; check exit 2 and one ``ntm: error:`` line without a traceback."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("ntm: error: "), lines
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


class Wrong(tasks.Task):
    """A task whose batches break the interface in the way ``kind`` names."""

    def __init__(self, *, kind: str = "targets") -> None:
        self.kind = kind
        self.input_size, self.output_size = 3, 2

    def sample(self, batch_size, generator=None):
        steps = 4
        inputs = torch.zeros(steps, batch_size, 3)
        targets = torch.zeros(steps, batch_size, 2)
        mask = torch.ones(steps, batch_size, dtype=torch.bool)
        if self.kind == "targets":
            targets = torch.zeros(steps, batch_size, 5)
        elif self.kind == "batch_first":
            inputs = torch.zeros(batch_size, steps, 3)
        elif self.kind == "fixed_batch":
            inputs, targets, mask = inputs[:, :1], targets[:, :1], mask[:, :1]
        elif self.kind == "mask_dtype":
            mask = mask.float()
        elif self.kind == "mask_shape":
            mask = mask[:-1]
        elif self.kind == "float64":
            inputs = inputs.double()
        elif self.kind == "tuple":
            return inputs, targets, mask
        elif self.kind == "targets_range":
            targets = torch.full_like(targets, 2.0)
        elif self.kind == "targets_nan":
            targets = torch.full_like(targets, torch.nan)
        elif self.kind == "inputs_inf":
            inputs = torch.full_like(inputs, torch.inf)
        elif self.kind == "mask_empty":
            mask = torch.zeros_like(mask)
        return tasks.Batch(inputs, targets, mask)


# -- registration -----------------------------------------------------------------------------


def test_registering_a_name_twice_is_a_clear_error(fresh_registry):
    tasks.register("wrong_once", Wrong)
    with pytest.raises(ValueError, match=r"'wrong_once' is already registered \(by .*Wrong\)"):
        tasks.register("wrong_once", Wrong)
    tasks.register("wrong_once", Wrong, replace=True)  # a notebook cell run again
    with pytest.raises(ValueError, match="'copy' is already registered"):
        tasks.register("copy", Wrong, replace=True)  # the paper's tasks stay as they are


def test_default_params_come_from_init_keywords():
    assert Wrong(kind="tuple").params == {"kind": "tuple"}

    class Forgetful(Wrong):
        def __init__(self, *, size: int = 3) -> None:
            self.input_size = self.output_size = size

    with pytest.raises(TypeError, match="store the parameter 'size' as self.size"):
        _ = Forgetful().params


# -- interface checks -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "message"), [
    ("targets", r"Batch.targets must have shape \[steps, batch, output_size\] = "
                r"\[steps, 2, 2\], got \[4, 2, 5\]"),
    ("batch_first", r"Batch.inputs must have shape \[steps, batch, input_size\] = "
                    r"\[steps, 2, 3\], got \[2, 4, 3\]"),
    ("fixed_batch", r"Batch.inputs must have shape .* got \[4, 1, 3\]"),
    ("mask_dtype", r"Batch.mask must be a bool tensor, got torch.float32"),
    ("mask_shape", r"Batch.mask must have shape \[steps, batch\] = \[4, 2\], got \[3, 2\]"),
    ("float64", r"Batch.inputs must be a float32 tensor, got torch.float64"),
    ("tuple", r"sample\(\) must return an ntm.tasks.Batch, got tuple"),
    ("targets_range", r"Batch.targets must lie in \[0, 1\] .* got 2.0"),
    ("targets_nan", r"Batch.targets must lie in \[0, 1\] .* got nan"),
    ("inputs_inf", r"Batch.inputs must be finite, got NaN or infinite values"),
    ("mask_empty", r"Batch.mask marks no step to score \(all False\).*"),
])
def test_a_wrong_batch_stops_training_with_one_line(fresh_registry, tmp_path, kind, message):
    tasks.register("wrong", Wrong)
    config = _config("wrong", f"task.kind={kind}", "train.steps=1")
    with pytest.raises(training.ConfigError, match=f"^task 'wrong': {message}$"):
        training.train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before any step


def test_wrong_sizes_are_reported():
    task = Wrong()
    task.output_size = 0
    with pytest.raises(ValueError, match="output_size must be at least 1, got 0"):
        tasks.check_task(task)


def test_a_wrong_batch_through_the_command_line_exits_2(fresh_registry, tmp_path, capsys):
    tasks.register("wrong", Wrong)
    line = _error(capsys, ["train", "wrong", "--steps", "1", "--out", str(tmp_path / "run"),
                           *TINY_CLI])
    assert line == ("ntm: error: task 'wrong': Batch.targets must have shape "
                    "[steps, batch, output_size] = [steps, 2, 2], got [4, 2, 5]")


# -- --task-module ----------------------------------------------------------------------------


def test_task_module_trains_evaluates_and_plots(task_module, tmp_path, capsys):
    module, name = task_module
    out = tmp_path / "run"
    assert main(["train", name, "--task-module", module, "--steps", "2", "--out", str(out),
                 "--set", "task.length=4", *TINY_CLI]) == 0
    saved = json.loads((out / "config.json").read_text())["task"]
    assert saved == {"name": name, "params": {"length": 4}, "module": module, "curriculum": None,
                     "harden_below": None, "opening": None,
                    "opening_params": {}}

    _forget(module, name)  # a new process: eval must import the recorded module itself
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1", "--batch-size", "2", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]  # no generalisation tests: one row
    assert row["setting"] == "training" and row["cost"] >= 0

    _forget(module, name)
    assert main(["plot", str(out), "--batches", "1", "--batch-size", "2",
                 "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "weightings.png").stat().st_size > 0

    _forget(module, name)  # resuming imports it too
    assert main(["train", "--resume", str(out), "--steps", "3", "--no-progress"]) == 0


def test_set_task_parameters_of_a_custom_task(task_module, tmp_path, capsys):
    module, name = task_module
    out = tmp_path / "run"
    assert main(["train", name, "--task-module", module, "--steps", "1", "--out", str(out),
                 "--set", "task.width=3", *TINY_CLI]) == 0
    config = training.read_config(out)
    assert config.task.params == {"width": 3}
    model, _ = training.load_run(out)
    assert model.input_size == 3  # the task's sizes follow its parameters
    line = _error(capsys, ["train", name, "--task-module", module, "--set", "task.depth=3",
                           "--out", str(tmp_path / "other")])
    assert (f"valid keys of task '{name}': name, module, curriculum, harden_below, opening, "
            "opening_params.<param>, length, "
            "width") in line
    line = _error(capsys, ["train", name, "--task-module", module, "--set", "task.width=wide",
                           "--out", str(tmp_path / "other")])
    assert line == "ntm: error: task.width expects int, got 'wide'"


def test_an_unimportable_task_module_is_one_line(task_module, tmp_path, capsys):
    module, name = task_module
    line = _error(capsys, ["train", name, "--task-module", "no_such_module_here"])
    assert line == ("ntm: error: cannot import task module 'no_such_module_here': no module "
                    "named 'no_such_module_here' (is its directory on PYTHONPATH?)")
    (tmp_path / "broken_tasks.py").write_text("raise RuntimeError('the database is down')\n")
    line = _error(capsys, ["train", name, "--task-module", "broken_tasks"])
    assert line == ("ntm: error: cannot import task module 'broken_tasks': RuntimeError: the "
                    "database is down")
    sys.modules.pop("broken_tasks", None)


def test_a_run_whose_module_is_gone_is_one_line(task_module, tmp_path, capsys):
    module, name = task_module
    out = tmp_path / "run"
    assert main(["train", name, "--task-module", module, "--steps", "1", "--out", str(out),
                 *TINY_CLI]) == 0
    _forget(module, name)
    (tmp_path / f"{module}.py").unlink()
    line = _error(capsys, ["eval", str(out)])
    assert line.startswith(f"ntm: error: cannot import task module '{module}'")
    with pytest.raises(training.TaskModuleError):
        training.load_run(out)


def test_a_module_registering_a_taken_name_is_one_line(fresh_registry, tmp_path, monkeypatch,
                                                        capsys):
    module = f"clash_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent('''
        import ntm
        ntm.tasks.register("copy", ntm.tasks.CopyTask)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    line = _error(capsys, ["train", "copy", "--task-module", module])
    assert "'copy' is already registered" in line
    sys.modules.pop(module, None)


# -- the Python API, as a notebook uses it ----------------------------------------------------


def test_python_api_trains_resumes_and_evaluates(task_module, tmp_path):
    module, name = task_module
    tasks.import_module(module)
    config = _config(name, "train.steps=2")
    config.task.module = module
    out = tmp_path / "run"
    first = training.train(config, out, progress=False)
    assert first.step == 2 and first.stopped == "steps"

    config.train.steps = 4
    resumed = training.train(config, out, resume=True, progress=False)
    assert resumed.step == 4 and [r["step"] for r in training.read_metrics(out)] == [1, 2, 3, 4]

    model, loaded = training.load_run(out, best=True)
    assert loaded.task == config.task
    task = training.build_task(loaded.task)
    scores = training.evaluate(model, task, batches=1, batch_size=2,
                               generator=torch.Generator().manual_seed(0))
    assert set(scores) == {"cost", "bit_errors"} and scores["cost"] >= 0
    (row,) = training.generalisation(model, loaded, batches=1, batch_size=2)
    assert row["setting"] == "training"
