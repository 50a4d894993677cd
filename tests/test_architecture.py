"""docs/architecture.md's walkthrough: its listing, run as written, is a memory on the core.

The listing is read from the page (the first ```python block of the walkthrough), written to
a module of its own, built through ntm.MemoryRNN and trained with ``ntm train`` through the
model registry, so the page cannot drift from what works.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ntm

PAGE = Path(__file__).parent.parent / "docs" / "architecture.md"
MODULE = "content_memory"


def _listing() -> str:
    walkthrough = PAGE.read_text().split("## Walkthrough", 1)[1]
    return re.search(r"```python\n(.*?)```", walkthrough, re.S).group(1)


@pytest.fixture
def content_memory(tmp_path, monkeypatch):
    """The listing as the module ``content_memory``, imported (its model registered once)."""
    (tmp_path / f"{MODULE}.py").write_text(_listing())
    monkeypatch.syspath_prepend(str(tmp_path))
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    return importlib.import_module(MODULE)


def test_the_listing_is_under_100_lines():
    assert len(_listing().splitlines()) < 100


def test_the_memory_runs_on_the_core_and_its_gradients_are_right(content_memory):
    access = content_memory.ContentAccess(memory_slots=6, memory_width=3, read_heads=2)
    torch.manual_seed(0)
    model = ntm.MemoryRNN(4, 2, access, controller_size=5, dtype=torch.float64)
    assert ntm.backends.choices(access) == ["auto", "autograd"]  # no fast path: autograd
    inputs = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    logits, state, trace = model.trace(inputs)
    assert logits.shape == (5, 3, 2) and state.access.memory.shape == (3, 6, 3)
    assert trace.access.read_weights.shape == (5, 3, 2, 6)
    torch.testing.assert_close(trace.access.read_weights.sum(-1),
                               torch.ones(5, 3, 2, dtype=torch.float64))
    first, middle = model(inputs[:2])
    second, _ = model(inputs[2:], middle)
    torch.testing.assert_close(torch.cat([first, second]), logits)

    def run(inputs):
        return model(inputs)[0]

    assert torch.autograd.gradcheck(run, (inputs,), eps=1e-6, atol=1e-6)


def test_the_registry_builds_it(content_memory):
    config = content_memory.ContentMemoryConfig(memory_slots=16)
    model = ntm.models.make(config, input_size=8, output_size=6)
    assert isinstance(model, ntm.MemoryRNN) and model.cell.access.slots == 16


def test_ntm_train_trains_it_through_the_registry(tmp_path):
    (tmp_path / f"{MODULE}.py").write_text(_listing())
    out = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "ntm", "train", "associative_recall",
               "--model", "content-memory", "--model-module", MODULE, "--steps", "30",
               "--out", str(out), "--set", "model.memory_slots=16",
               "--set", "model.controller_size=16", "--set", "train.val_every=15",
               "--set", "train.log_every=15", "--set", "train.batch_size=4"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=environment)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["kind"] == "content-memory"
    assert config["model"]["memory_slots"] == 16
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    costs = [r["val_cost"] for r in records if r.get("val_cost") is not None]
    assert costs and all(cost == cost and cost > 0 for cost in costs)  # finite validations
    evaluated = subprocess.run([sys.executable, "-m", "ntm", "eval", str(out), "--json"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env=environment)
    assert evaluated.returncode == 0, evaluated.stderr
    wrong = subprocess.run(command[:-8] + ["--set", "model.shift_range=2"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300,
                           env=environment)
    assert wrong.returncode != 0
    assert "content-memory" in wrong.stderr and "memory_slots" in wrong.stderr
