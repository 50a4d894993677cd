"""The scripts in examples/, run as a user runs them (a fresh process each) in --quick mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

from ntm.cli import main
from ntm.tasks import registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(tmp_path: Path, script: str, *args: str, pythonpath: Path | None = None) -> str:
    """Runs ``examples/script --quick args`` in ``tmp_path``; returns its stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny models: threads only add overhead
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath),
                                                          env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ntm_layer(tmp_path):
    out = _run(tmp_path, "ntm_layer.py")
    lines = out.strip().splitlines()
    assert lines[0].startswith("always 'no' scores")
    assert lines[-1].startswith("step    20") and "test accuracy" in lines[-1]


def test_custom_task_then_inspect_its_heads(tmp_path):
    out = _run(tmp_path, "custom_task.py", "--out", "run")
    assert "trained 6 steps" in out and "length=3:" in out
    task = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert task == {"name": "reverse", "params": {"max_length": 3, "width": 3},
                    "module": "custom_task", "curriculum": None, "harden_below": None,
                    "opening": None, "opening_params": {}}
    # A fresh process loads the run by importing the recorded module from PYTHONPATH.
    out = _run(tmp_path, "inspect_heads.py", "run", "--out", "figures",
               "--set", "task.min_length=2", "--set", "task.max_length=2",
               pythonpath=EXAMPLES)
    assert out.startswith("reverse, 5 steps")  # 2L + 1 steps
    assert (tmp_path / "figures" / "heads.png").stat().st_size > 0


def test_inspect_heads_trains_a_tiny_model(tmp_path):
    out = _run(tmp_path, "inspect_heads.py", "--out", "figures")
    assert "write heads" in out
    for name in ("heads.png", "sequence.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 0


def test_the_command_in_custom_task_docstring(tmp_path, monkeypatch):
    # `ntm train reverse --task-module custom_task`, run in-process with a private registry.
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "custom_task", raising=False)
    try:
        assert main(["train", "reverse", "--task-module", "custom_task", "--steps", "1",
                     "--batch-size", "2", "--out", str(tmp_path / "run"), "--no-progress",
                     "--set", "task.max_length=2", "--set", "model.memory_slots=4",
                     "--set", "model.memory_width=3", "--set", "model.controller_size=4",
                     "--set", "train.val_batches=1", "--set", "train.val_batch_size=2"]) == 0
    finally:
        sys.modules.pop("custom_task", None)
    task = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert task == {"name": "reverse", "params": {"max_length": 2}, "module": "custom_task",
                    "curriculum": None, "harden_below": None, "opening": None,
                    "opening_params": {}}
