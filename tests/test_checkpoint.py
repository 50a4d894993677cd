"""Tests of crash-safe checkpoint files (ntm.training.checkpoint); faults injected into whole
runs are in test_faults.py."""

import json
import os
import struct
import zlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ntm.errors import WriteError
from ntm.rundir.checkpoint import CHECKSUM_KEY, checksums
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
    with pytest.raises(WriteError, match="disk full") as raised:  # still an OSError too
        checkpoint.save_weights(_model(1), path)
    assert isinstance(raised.value, OSError) and str(path) in str(raised.value)
    assert "the previous w.safetensors, the last good checkpoint, is intact" in str(raised.value)
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


def _header(path):
    """The JSON header of a safetensors file and the offset where its tensor data starts."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), 8 + size


def _flip(path, key, byte=0):
    """Flip one bit of byte ``byte`` of tensor ``key``'s data in a safetensors file."""
    header, start = _header(path)
    data = bytearray(path.read_bytes())
    data[start + header[key]["data_offsets"][0] + byte] ^= 0x04
    path.write_bytes(bytes(data))


def test_every_tensor_and_the_metadata_have_a_crc32(tmp_path):
    model = _model()
    checkpoint.save_state(tmp_path / "s.safetensors", model, _optimizer(model),
                          {"data": torch.Generator()}, {"step": 1})
    checkpoint.save_weights(model, tmp_path / "w.safetensors", {"step": 1})
    for name in ("s.safetensors", "w.safetensors"):
        with safe_open(tmp_path / name, framework="pt") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
            meta = file.metadata()
        recorded = json.loads(meta[CHECKSUM_KEY])
        assert set(recorded) == set(tensors) | {"__metadata__"}
        assert recorded == checksums(tensors, meta["ntm"])
        # Re-derived: CRC-32 of "dtype [shape]" continued over the tensor's bytes.
        weight = tensors["weight" if name == "w.safetensors" else "model.weight"]
        described = zlib.crc32(f"{weight.dtype} {list(weight.shape)}".encode())
        assert recorded["weight" if name == "w.safetensors" else "model.weight"] == (
            f"{zlib.crc32(weight.numpy().tobytes(), described):08x}")


@pytest.mark.parametrize("key", ["weight", "bias"])
def test_a_flipped_bit_in_any_tensor_is_an_error_naming_it(tmp_path, key):
    path = tmp_path / "w.safetensors"
    checkpoint.save_weights(_model(), path)
    _flip(path, key, byte=3)
    with pytest.raises(RunDirError, match=f"{path} is corrupt: tensor {key} does not match"):
        checkpoint.load_weights(_model(), path)


def test_flipped_metadata_and_dropped_tensors_are_errors(tmp_path):
    model, path = _model(), tmp_path / "s.safetensors"
    checkpoint.save_state(path, model, _optimizer(model), {}, {"step": 21})
    data = path.read_bytes()
    path.write_bytes(data.replace(b'\\"step\\": 21', b'\\"step\\": 31'))
    assert path.read_bytes() != data
    for read in (lambda: checkpoint.read_counters(path),
                 lambda: checkpoint.load_state(path, model, _optimizer(_model()), {})):
        with pytest.raises(RunDirError, match="is corrupt: its metadata does not match"):
            read()
    with safe_open(tmp_path / "s.safetensors", framework="pt") as file:
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
        meta = file.metadata()
    meta["ntm"] = meta["ntm"].replace('"step": 31', '"step": 21')
    del tensors["model.bias"]
    save_file(tensors, path, metadata=meta)
    with pytest.raises(RunDirError, match="tensor model.bias is missing"):
        checkpoint.load_state(path, model, _optimizer(_model()), {})


def test_files_without_checksums_load_unchecked(tmp_path):
    source, path = _model(0), tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path,
              metadata={"ntm": json.dumps({"step": 9})})  # as files were written before
    target = _model(1)
    assert checkpoint.load_weights(target, path) == {"step": 9}
    torch.testing.assert_close(target.weight, source.weight)


def test_non_finite_weights_in_a_file_without_checksums_are_an_error(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"weight": torch.full((2, 3), float("nan")), "bias": torch.zeros(2)}, path)
    with pytest.raises(RunDirError, match="is corrupt: weight holds NaN or infinite values"):
        checkpoint.load_weights(_model(), path)


def test_metadata_that_is_not_json_is_a_write_error_and_writes_nothing(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(WriteError, match=f"cannot write {path}: .*not JSON serializable; "
                                         "no w.safetensors was written"):
        checkpoint.save_weights(_model(), path, {"step": object()})
    assert os.listdir(tmp_path) == []
