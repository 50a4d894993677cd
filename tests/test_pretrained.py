"""The models shipped inside the package load offline, without pickle, and still work."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import ntm
from ntm.cli import main
from ntm.rundir.checkpoint import CHECKSUM_KEY, checksums


def test_list_names_the_shipped_copy_model():
    assert "copy-ntm-lstm" in ntm.pretrained.list()


def test_shipped_files_are_safetensors_and_json_only():
    for name in ntm.pretrained.list():
        folder = ntm.pretrained.run_dir(name)
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
            "config.json",
            "metrics.jsonl",
            "model.safetensors",
        ]
        json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("kind", ["ntm-lstm", "ntm-ff"])
def test_load_gives_an_ntm_that_copies(kind):
    model = ntm.pretrained.load("copy", kind)
    assert isinstance(model, ntm.NTM) and not model.training
    assert (model.cell.controller.states_per_layer == 2) == (kind == "ntm-lstm")
    task = ntm.tasks.make("copy", min_length=10, max_length=10)
    batch = task.sample(16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    errors = ntm.metrics.bit_errors_per_sequence(logits, batch.targets, batch.mask)
    assert errors.item() == 0.0


def test_shipped_dnc_copies_six_times_its_longest_training_length():
    # copy-dnc (trained on lengths 1-20) makes no bit error at length 120 on 256 test
    # sequences (RESULTS.md); weights that load wrongly err on every sequence.
    model = ntm.pretrained.load("copy", "dnc")
    assert isinstance(model, ntm.DNC) and not model.training
    task = ntm.tasks.make("copy", min_length=120, max_length=120)
    batch = task.sample(16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    errors = ntm.metrics.bit_errors_per_sequence(logits, batch.targets, batch.mask)
    assert errors.item() == 0.0


def test_unknown_pretrained_model_is_a_clear_error(capsys):
    with pytest.raises(KeyError, match="copy-ntm-lstm"):
        ntm.pretrained.load("sorting")
    assert main(["eval", "pretrained:sorting"]) == 2
    assert "copy-ntm-lstm" in capsys.readouterr().err


def test_ntm_eval_pretrained_copy(capsys):
    assert main(["eval", "pretrained:copy", "--set", "task.min_length=20",
                 "--set", "task.max_length=20", "--batches", "1", "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["results"][0]["bit_errors"] == 0.0


def test_loading_uses_no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load (pickle) must not be used")

    monkeypatch.setattr(torch, "load", refuse)
    assert isinstance(ntm.pretrained.load("copy"), ntm.NTM)
    assert Path(ntm.pretrained.run_dir("copy")).name == "copy-ntm-lstm"


@pytest.mark.parametrize("task, kind, params", [
    ("associative_recall", "ntm-lstm", {"min_items": 6, "max_items": 6}),
    ("associative_recall", "ntm-ff", {"min_items": 6, "max_items": 6}),
    ("associative_recall", "dnc", {"min_items": 6, "max_items": 6}),
    ("repeat_copy", "ntm-lstm",
     {"min_length": 5, "max_length": 5, "min_repeats": 3, "max_repeats": 3}),
    ("repeat_copy", "ntm-ff",
     {"min_length": 5, "max_length": 5, "min_repeats": 3, "max_repeats": 3}),
    ("repeat_copy", "dnc",
     {"min_length": 5, "max_length": 5, "min_repeats": 3, "max_repeats": 3}),
    ("repeat_copy", "dnc",  # the lengths its first step never saw
     {"min_length": 1, "max_length": 5, "min_repeats": 1, "max_repeats": 10}),
])
def test_shipped_model_makes_almost_no_bit_errors(task, kind, params):
    # 128 sequences: the models err on about one sequence in several hundred (RESULTS.md), so
    # a small batch can hold one such sequence; weights that load wrongly err on every one.
    model = ntm.pretrained.load(task, kind)
    batch = ntm.tasks.make(task, **params).sample(128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    errors = ntm.metrics.bit_errors_per_sequence(logits, batch.targets, batch.mask).item()
    assert errors <= 0.05


def test_shipped_ngrams_model_is_near_the_optimal_estimator():
    model = ntm.pretrained.load("ngrams")
    task = ntm.tasks.make("ngrams")
    batch = task.sample(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    cost = ntm.metrics.bits_per_sequence(logits, batch.targets, batch.mask).item()
    optimal = task.optimal_bits_per_sequence(batch)
    assert optimal < cost < optimal + 3  # 0.88 bits above it over 256 sequences


def test_shipped_priority_sort_model_sorts_far_better_than_chance():
    model = ntm.pretrained.load("priority_sort")
    batch = ntm.tasks.make("priority_sort").sample(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    cost = ntm.metrics.bits_per_sequence(logits, batch.targets, batch.mask).item()
    assert cost < 18  # 4.9 bits over 256 sequences, the paper 18; chance (every bit at 1/2) 128


def test_shipped_repeat_copy_model_copies_length_20_ten_times():
    # Twice the training length in the paper's 128-slot memory: 0.06 bit errors per sequence
    # of 1,600 here (0.43 over 256 sequences, RESULTS.md); a write head that runs round the
    # memory onto the inputs, as the fast preset's model does, makes about 270.
    model = ntm.pretrained.load("repeat_copy")
    task = ntm.tasks.make("repeat_copy", min_length=20, max_length=20, min_repeats=10,
                          max_repeats=10)
    batch = task.sample(16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    assert ntm.metrics.bit_errors_per_sequence(logits, batch.targets, batch.mask).item() < 5


def test_an_unknown_model_names_the_task_and_model_asked_for():
    with pytest.raises(KeyError, match="no model 'ntm-lstm' was shipped for task 'nope'; "
                       "shipped models: .*copy-ntm-lstm"):  # fmt: skip
        ntm.pretrained.load("nope")
    with pytest.raises(KeyError, match="no model 'gru' was shipped for task 'copy'"):
        ntm.pretrained.load("copy", "gru")


def test_load_with_another_memory_length_keeps_the_weights():
    shipped = ntm.pretrained.load("repeat_copy", "ntm-ff")
    assert shipped.cell.memory_init == "constant" and shipped.cell.memory_slots == 128
    longer = ntm.pretrained.load("repeat_copy", "ntm-ff", memory_slots=200)
    assert longer.cell.memory_slots == 200 and not longer.training
    for (name, theirs), mine in zip(
        shipped.state_dict().items(), longer.state_dict().values(), strict=True
    ):
        assert torch.equal(theirs, mine), name
    with torch.no_grad():
        _, state = longer(torch.zeros(3, 2, longer.input_size))
    assert state.memory.shape == (2, 200, longer.cell.memory_width)


def test_a_learned_memory_keeps_its_length():
    shipped = ntm.pretrained.load("copy")  # copy-ntm-lstm learned its initial memory
    assert shipped.cell.memory_init == "learned"
    with pytest.raises(ntm.training.ConfigError, match="learned its initial memory"):
        ntm.pretrained.load("copy", memory_slots=200)
    same = ntm.pretrained.load("copy", memory_slots=shipped.cell.memory_slots)
    assert torch.equal(same.cell.initial_memory, shipped.cell.initial_memory)


def test_pretrained_names_resolve_in_the_run_reader_below_training():
    # ntm.rundir finds the shipped runs by their place in the package, without ntm.pretrained.
    assert ntm.rundir.resolve_run_dir("pretrained:copy") == ntm.pretrained.run_dir("copy")
    assert ntm.rundir.shipped_names() == ntm.pretrained.list()
    assert ntm.rundir.SHIPPED_DIR == Path(ntm.pretrained.__file__).resolve().parent
    with pytest.raises(ntm.errors.RunDirError, match="no pretrained run 'nope'; shipped models: "):
        ntm.rundir.resolve_run_dir("pretrained:nope")


@pytest.mark.parametrize("name", ntm.pretrained.list())
def test_load_takes_every_name_that_list_gives(name):
    model = ntm.pretrained.load(name)
    task, kind = name.split("-", 1)
    assert ntm.rundir.read_config(ntm.pretrained.run_dir(name)).model.kind == kind
    same = ntm.pretrained.load(task, kind)  # the older spelling, the same weights
    for (key, value), (other, expected) in zip(model.state_dict().items(),
                                               same.state_dict().items(), strict=True):
        assert key == other and torch.equal(value, expected)


def test_a_full_name_with_another_model_is_a_value_error():
    assert isinstance(ntm.pretrained.load("copy-ntm-ff", "ntm-ff"), ntm.NTM)
    with pytest.raises(ValueError, match="'copy-ntm-lstm' names a shipped model already"):
        ntm.pretrained.load("copy-ntm-lstm", "ntm-ff")


def test_dtype_converts_the_weights():
    single = ntm.pretrained.load("copy-ntm-ff")
    double = ntm.pretrained.load("copy-ntm-ff", dtype=torch.float64)
    assert {p.dtype for p in single.parameters()} == {torch.float32}
    assert {p.dtype for p in double.parameters()} == {torch.float64}
    for a, b in zip(single.parameters(), double.parameters(), strict=True):
        assert torch.equal(a.double(), b)  # float32 -> float64 is exact
    assert ntm.pretrained.load("copy", dtype="bfloat16").cell.output.weight.dtype == (
        torch.bfloat16)


@pytest.mark.parametrize("device", ["gpu", "cuda:99", "tpu", 3, "meta"])
def test_a_bad_device_is_a_value_error_listing_the_available_ones(device):
    with pytest.raises(ValueError, match=rf"device {device!r} is not available; available: cpu"):
        ntm.pretrained.load("copy", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_value_error_not_an_assertion():
    with pytest.raises(ValueError, match="device 'cuda' is not available; available: cpu$"):
        ntm.pretrained.load("copy", device="cuda")


@pytest.mark.parametrize("dtype", [torch.int64, "float8", "int32", 32])
def test_a_bad_dtype_is_a_value_error_listing_the_floating_ones(dtype):
    with pytest.raises(ValueError, match=r"is not a floating-point dtype; expected one of "
                                         r"torch.float32, torch.float64, torch.bfloat16"):
        ntm.pretrained.load("copy", dtype=dtype)


# Shipped before the run files had checksums; every model shipped since keeps the ones its run
# wrote.
UNCHECKSUMMED = {"associative_recall-ntm-ff", "associative_recall-ntm-lstm", "copy-ntm-ff",
                 "copy-ntm-lstm", "ngrams-ntm-lstm", "priority_sort-ntm-lstm",
                 "repeat_copy-ntm-ff", "repeat_copy-ntm-lstm"}


def test_shipped_weights_keep_their_checksums_and_are_never_rewritten():
    files = {name: ntm.pretrained.run_dir(name) / "model.safetensors"
             for name in ntm.pretrained.list()}
    before = {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in files.items()}
    for name, path in files.items():
        with safe_open(path, framework="pt") as file:
            header = file.metadata()
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
        if name in UNCHECKSUMMED:
            assert CHECKSUM_KEY not in header, name  # loading must not add them
        else:
            assert json.loads(header[CHECKSUM_KEY]) == checksums(tensors, header["ntm"]), name
        ntm.pretrained.load(name)
    assert {name: (path.read_bytes(), path.stat().st_mtime_ns)
            for name, path in files.items()} == before
