"""A model of one's own: one module with one ``ntm.models.register`` call, trained, evaluated,
plotted and resumed through ``ntm`` with ``--model-module``.

Each test writes its module under a name of its own, registers into a private copy of the
model registry and forgets the module afterwards, so tests stay independent.
"""

import json
import sys
import uuid

import pytest
import torch

from ntm import models, training
from ntm.cli import main
from ntm.models import registry

# A model module as a user would write it: its config dataclass, its module, one register().
MODULE_SOURCE = '''
from dataclasses import dataclass

import torch
from torch import nn

import ntm


@dataclass
class GRUConfig:
    kind: str = {name!r}
    hidden_size: int = ntm.fields.bounded(8, min=1)


class GRUModel(nn.Module):
    """A GRU with a linear read-out: [steps, batch, input] -> (logits, state)."""

    def __init__(self, input_size, output_size, hidden_size, *, device=None, dtype=None):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, device=device, dtype=dtype)
        self.out = nn.Linear(hidden_size, output_size, device=device, dtype=dtype)

    def forward(self, input, state=None):
        hidden, state = self.gru(input, state)
        return self.out(hidden), state


def build(config, input_size, output_size, *, device=None, dtype=None):
    return GRUModel(input_size, output_size, config.hidden_size, device=device, dtype=dtype)


ntm.models.register({name!r}, build, GRUConfig, description="a GRU baseline")
'''

TINY = ["train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=2", "train.batch_size=2", "task.max_length=3"]
TINY_CLI = [arg for item in TINY for arg in ("--set", item)] + ["--no-progress"]


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    """Writes a module registering a new model; returns ``(module, model_name)``.

    The module is importable (``tmp_path`` on ``sys.path``) but not imported yet; the registry
    is a private copy of the package's own models, and ``sys.modules`` forgets the module
    after the test.
    """
    # The package's models only: another test may have registered one of its own.
    monkeypatch.setattr(registry, "_ENTRIES", {name: entry for name, entry
                                               in registry._ENTRIES.items() if entry.builtin})
    suffix = uuid.uuid4().hex[:8]
    module, name = f"user_models_{suffix}", f"my-memory-{suffix}"
    (tmp_path / f"{module}.py").write_text(MODULE_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module, name
    sys.modules.pop(module, None)


def _forget(module: str, name: str) -> None:
    """Undo an import of ``module``: as in a new process, the model must be imported again."""
    sys.modules.pop(module, None)
    registry._ENTRIES.pop(name, None)


def _error(capsys, argv):
    """Run the CLI; check exit 2 and one ``ntm: error:`` line without a traceback."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("ntm: error: "), lines
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


def test_a_registered_model_trains_evaluates_plots_and_resumes(model_module, tmp_path, capsys):
    module, name = model_module
    out = tmp_path / "run"
    assert main(["train", "copy", "--model", name, "--model-module", module, "--steps", "2",
                 "--out", str(out), "--set", "model.hidden_size=5", *TINY_CLI]) == 0
    saved = json.loads((out / "config.json").read_text())["model"]
    assert saved == {"kind": name, "hidden_size": 5, "module": module}
    assert [r["step"] for r in training.read_metrics(out)] == [1, 2]

    _forget(module, name)  # a new process: eval must import the recorded module itself
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1", "--batch-size", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == name and report["memory_slots"] is None
    assert [row["setting"] for row in report["results"]][:2] == ["training", "length=10"]

    _forget(module, name)
    assert main(["plot", str(out), "--batches", "1", "--batch-size", "1",
                 "--out", str(tmp_path / "figures")]) == 0
    drawn = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert drawn == ["generalisation.png", "learning_curve.png", "sequence.png"]  # no trace

    _forget(module, name)  # resuming imports it too
    assert main(["train", "--resume", str(out), "--steps", "3", "--no-progress"]) == 0
    assert [r["step"] for r in training.read_metrics(out)] == [1, 2, 3]
    model, config = training.load_run(out)
    assert config.model.hidden_size == 5 and model.gru.hidden_size == 5


def test_a_registered_models_keys_are_checked(model_module, tmp_path, capsys):
    module, name = model_module
    base = ["train", "copy", "--model", name, "--model-module", module,
            "--out", str(tmp_path / "run")]
    line = _error(capsys, base[:4] + base[6:])  # not imported: not registered
    assert line == (f"ntm: error: argument --model: invalid choice: {name!r} (choose from "
                    "ntm-lstm, ntm-ff, dnc, dnc-ff, lstm, sam, sam-ff, or register one with "
                    "--model-module)")
    line = _error(capsys, [*base, "--set", "model.memory_slots=3"])
    assert line == (f"ntm: error: unknown key 'model.memory_slots'; valid keys of model "
                    f"{name!r}: kind, module, hidden_size")
    line = _error(capsys, [*base, "--set", "model.hidden_size=0"])
    assert line == "ntm: error: model.hidden_size must be at least 1, got 0"
    line = _error(capsys, [*base, "--set", f"model.module={module}"])
    assert "--model-module MODULE" in line


def test_memory_slots_do_not_apply_to_a_model_without_a_memory(model_module, tmp_path, capsys):
    module, name = model_module
    out = tmp_path / "run"
    assert main(["train", "copy", "--model", name, "--model-module", module, "--steps", "1",
                 "--out", str(out), *TINY_CLI]) == 0
    line = _error(capsys, ["eval", str(out), "--memory-slots", "40"])
    assert line == ("ntm: error: memory_slots applies to ntm-lstm, ntm-ff, dnc, dnc-ff, sam, "
                    f"sam-ff, not to {name} (a GRU baseline): it has no memory whose length can "
                    "change")


def test_an_unimportable_model_module_is_one_line(model_module, tmp_path, capsys):
    module, name = model_module
    line = _error(capsys, ["train", "copy", "--model", name, "--model-module", "no_such_models"])
    assert line == ("ntm: error: cannot import model module 'no_such_models': no module named "
                    "'no_such_models' (is its directory on PYTHONPATH?)")
    out = tmp_path / "run"
    assert main(["train", "copy", "--model", name, "--model-module", module, "--steps", "1",
                 "--out", str(out), *TINY_CLI]) == 0
    _forget(module, name)
    (tmp_path / f"{module}.py").unlink()
    line = _error(capsys, ["eval", str(out)])
    assert line.startswith(f"ntm: error: cannot import model module '{module}'")
    with pytest.raises(training.ModelModuleError):
        training.load_run(out)


def test_the_python_api_records_the_module(model_module, tmp_path):
    module, name = model_module
    models.import_module(module)
    config = training.apply_overrides(training.preset_config("copy", name),
                                      [*TINY, "train.steps=2", f"model.module={module}"])
    assert config.model_module == module and config.model == models.default_config(name)
    result = training.train(config, tmp_path / "run", progress=False)
    assert result.step == 2
    _forget(module, name)
    model, loaded = training.load_run(tmp_path / "run")
    # Imported again, the module defines its config class anew: compare what was written.
    assert loaded.to_dict() == config.to_dict() and isinstance(model, torch.nn.Module)
