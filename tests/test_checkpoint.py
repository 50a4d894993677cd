"""Tests of crash-safe checkpoint files (ntm.training.checkpoint)."""

import os

import pytest
import torch

from ntm.training import RunDirError, checkpoint


def _model(seed=0, width=3):
    torch.manual_seed(seed)
    return torch.nn.Linear(width, 2)


def _optimizer(model):
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.1, momentum=0.9, centered=True)
    model(torch.ones(1, model.in_features)).sum().backward()
    optimizer.step()  # so that it has per-parameter state to save
    return optimizer


def test_weights_round_trip(tmp_path):
    source, target = _model(0), _model(1)
    checkpoint.save_weights(source, tmp_path / "w.safetensors", {"step": 5})
    assert checkpoint.load_weights(target, tmp_path / "w.safetensors") == {"step": 5}
    torch.testing.assert_close(target.weight, source.weight)


def test_state_round_trip_restores_optimiser_and_rngs(tmp_path):
    model = _model()
    optimizer = _optimizer(model)
    generator = torch.Generator().manual_seed(3)
    checkpoint.save_state(tmp_path / "s.safetensors", model, optimizer, {"data": generator},
                          {"step": 7, "cost": 0.1 + 0.2})
    expected = (torch.rand(3, generator=generator), torch.rand(3))

    restored_model = _model(1)
    restored_optimizer = _optimizer(restored_model)
    restored_generator = torch.Generator()
    counters = checkpoint.load_state(tmp_path / "s.safetensors", restored_model,
                                     restored_optimizer, {"data": restored_generator})
    assert counters == {"step": 7, "cost": 0.1 + 0.2}  # floats exactly
    torch.testing.assert_close(restored_model.weight, model.weight)
    for name, value in optimizer.state_dict()["state"][0].items():
        torch.testing.assert_close(restored_optimizer.state_dict()["state"][0][name], value)
    assert torch.equal(torch.rand(3, generator=restored_generator), expected[0])
    assert torch.equal(torch.rand(3), expected[1])


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    old = _model(0)
    checkpoint.save_weights(old, path)

    def crash(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_weights(_model(1), path)
    monkeypatch.undo()
    loaded = _model(2)
    checkpoint.load_weights(loaded, path)
    torch.testing.assert_close(loaded.weight, old.weight)
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temporary file left behind


def test_writer_dying_mid_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "notes.txt"
    checkpoint.atomic_write_text(path, "first")

    def half_then_crash(temporary):
        with open(temporary, "w") as file:
            file.write("sec")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(path, half_then_crash)
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["notes.txt"]


def test_unreadable_or_mismatched_files_raise_run_dir_error(tmp_path):
    with pytest.raises(RunDirError, match="is missing"):
        checkpoint.load_weights(_model(), tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="corrupt"):
        checkpoint.load_weights(_model(), tmp_path / "bad.safetensors")
    checkpoint.save_weights(_model(width=3), tmp_path / "w.safetensors")
    with pytest.raises(RunDirError, match=r"weight has shape \[2, 3\], the model expects \[2, 4\]"):
        checkpoint.load_weights(_model(width=4), tmp_path / "w.safetensors")
