"""The training-step benchmark runs and reports what it timed (speed itself is not tested)."""

import json

import pytest
import torch

import ntm.bench
from ntm._threads import torch_threads
from ntm.backends import kernel
from ntm.bench import benchmark, resolve_paths, write_json


def test_benchmark_times_each_path_and_writes_json(tmp_path):
    lines = []
    rows = benchmark([2], [1], ["kernel", "python", "autograd"], timed_steps=2, warmup_steps=1,
                     length=2, log=lines.append)  # fmt: skip
    assert [(r.path, r.batch_size, r.threads, r.timed_steps) for r in rows] == [
        ("kernel", 2, 1, 2),
        ("python", 2, 1, 2),
        ("autograd", 2, 1, 2),
    ]
    assert all(r.sequences_per_second > 0 and r.peak_memory_mib > 0 for r in rows)
    assert len(lines) == 3 and lines[0].startswith("ntm-lstm  kernel ")
    path = tmp_path / "bench.json"
    write_json(rows, str(path))
    saved = json.loads(path.read_text())
    assert saved["results"][2]["path"] == "autograd" and "torch" in saved["environment"]


def test_each_path_builds_the_ntm_with_its_backend(monkeypatch):
    built = []
    make = ntm.models.make

    def recording_make(config, *args, **kwargs):
        model = make(config, *args, **kwargs)
        built.append((config.kind, model.backend))
        return model

    monkeypatch.setattr(ntm.bench.models, "make", recording_make)
    rows = benchmark([1], [1], ["fused", "kernel", "python", "plain"], timed_steps=1,
                     warmup_steps=0, length=1, log=lambda _: 0)
    assert built == [("ntm-lstm", b) for b in ["auto", "kernel", "python", "autograd"]]
    assert [row.path for row in rows] == ["auto", "kernel", "python", "autograd"]


def test_several_models_are_timed_interleaved_and_a_missing_path_is_refused():
    rows = benchmark([2], [1], ["auto", "autograd"], timed_steps=1, warmup_steps=0, length=1,
                     log=lambda _: 0, model_kinds=("ntm-lstm", "dnc"))
    assert [(row.model, row.path) for row in rows] == [
        ("ntm-lstm", "auto"), ("ntm-lstm", "autograd"), ("dnc", "auto"), ("dnc", "autograd")]
    with pytest.raises(ValueError, match="model dnc has no 'python' path; its paths: auto, "
                                         "kernel, autograd"):
        benchmark([1], [1], ["python"], model_kinds=("dnc",), log=lambda _: 0)
    with pytest.raises(ValueError, match="model lstm has no backends to choose"):
        benchmark([1], [1], ["autograd"], model_kinds=("lstm",), log=lambda _: 0)
    with pytest.raises(ValueError, match="unknown model 'gru'"):
        benchmark([1], [1], ["auto"], model_kinds=("gru",), log=lambda _: 0)


def test_older_path_names_are_aliases_and_each_path_is_timed_once():
    assert resolve_paths(["fused", "plain", "graph"]) == ["auto", "autograd", "graph"]
    assert resolve_paths(["auto", "fused", "python", "python"]) == ["auto", "python"]


def test_benchmark_leaves_the_thread_count_as_it_found_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    benchmark([1], [other], ["auto"], timed_steps=1, warmup_steps=0, length=1, log=lambda _: 0)
    assert torch.get_num_threads() == before


def test_torch_threads_restores_the_count_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(other):
            assert torch.get_num_threads() == other
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_benchmark_rejects_unknown_path():
    with pytest.raises(ValueError, match="valid paths: auto, kernel, python, autograd, graph "
                                         r"\(also fused for auto, plain for autograd\)"):
        benchmark([1], [1], ["compiled"])


@pytest.mark.parametrize(("path", "device", "message"), [
    ("graph", "cpu", "the graph path .* needs a CUDA device"),
    ("kernel", "cuda", "the kernel path .* runs on the CPU, not on cuda"),
])
def test_benchmark_rejects_a_path_on_a_device_it_cannot_run_on(path, device, message):
    with pytest.raises(ValueError, match=message):
        benchmark([1], [1], [path], device=device)


def test_the_kernel_path_says_why_it_cannot_run():
    enabled = kernel.is_enabled()
    kernel.set_enabled(False)
    try:
        with pytest.raises(ValueError, match="the kernel path cannot run: the kernel is switched "
                                             "off"):
            benchmark([1], [1], ["kernel"], timed_steps=1, warmup_steps=0, length=1)
    finally:
        kernel.set_enabled(enabled)


def test_ntm_bench_command_prints_the_table_and_writes_json(tmp_path, capsys):
    from ntm.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--batch-sizes", "1", "--threads", "1", "--steps", "1",
                 "--paths", "fused,plain", "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "sequences/s" in printed and printed.count("cpu") >= 2
    assert [row["path"] for row in json.loads(out.read_text())["results"]] == ["auto", "autograd"]


@pytest.mark.parametrize(
    "arguments",
    [["--paths", "compiled"], ["--batch-sizes", "0"], ["--batch-sizes", "x"], ["--threads", ""]],
)
def test_ntm_bench_rejects_bad_input_in_one_line(arguments, capsys):
    from ntm.cli import main

    assert main(["bench", "--steps", "1", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ntm: error:") and error.count("\n") == 1
