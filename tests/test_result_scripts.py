"""The analysis scripts behind RESULTS.md (results/scripts/): their numeric helpers against hand
values, and each script's main path on a tiny model."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from ntm.training import apply_overrides, preset_config, train

SCRIPTS = Path(__file__).resolve().parents[1] / "results" / "scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_hot_focus(slots, memory_slots=4):
    """``[steps, 1, memory_slots]`` write weightings focused on ``slots``, one per step."""
    return torch.nn.functional.one_hot(torch.tensor(slots), memory_slots).float().unsqueeze(1)


def test_overwrite_step_finds_the_write_head_coming_back_onto_the_inputs():
    overwrite_step = _script("repeat_copy_errors").overwrite_step
    # L=2 inputs written to slots 0 and 1; step 2 is the delimiter; the answer starts at step 3,
    # resting on slot 1 first (not a return), then moving on round the memory: back on slot 0
    # at answer step 3.
    assert overwrite_step(_one_hot_focus([0, 1, 1, 1, 2, 3, 0, 1]), length=2) == 3
    assert overwrite_step(_one_hot_focus([0, 1, 1, 2, 3, 2, 3]), length=2) == math.inf


def test_bits_and_kl_against_hand_values():
    ngrams = _script("ngrams_context_order")
    bits = torch.tensor([[1.0], [0.0]], dtype=torch.float64)  # (T=2, B=1)
    p = torch.full((2, 1), 0.25, dtype=torch.float64)
    assert ngrams.bits_of(p, bits).item() == pytest.approx(2 - math.log2(0.75))
    half = torch.full((1, 1), 0.5, dtype=torch.float64)
    assert ngrams.kl_bits(half, p[:1]).item() == pytest.approx(0.5 + 0.5 * math.log2(2 / 3))
    assert ngrams.kl_bits(p, p).item() == 0


def test_repeat_copy_errors_runs_on_a_run_directory(tmp_path, capsys, monkeypatch):
    config = apply_overrides(preset_config("repeat_copy"), [
        "model.memory_slots=16", "model.memory_width=4", "model.controller_size=8",
        "train.steps=1", "train.batch_size=2", "train.val_batches=1", "train.val_batch_size=2",
        "task.max_length=2", "task.max_repeats=2"])
    train(config, tmp_path / "run", progress=False)
    module = _script("repeat_copy_errors")
    monkeypatch.setattr(module, "SETTINGS", ((2, 3),))
    monkeypatch.setattr(sys, "argv", ["repeat_copy_errors.py", "--run", str(tmp_path / "run"),
                                      "--sequences", "2", "--memory-slots", "24"])
    module.main()
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'run'} L= 2 K= 3  errors in repeat 1..K: ")
    assert "write head back on the inputs at answer step" in line
