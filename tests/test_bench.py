"""The training-step benchmark runs and reports what it timed (speed itself is not tested)."""

import json

import pytest
import torch

from ntm._threads import torch_threads
from ntm.bench import benchmark, write_json


def test_benchmark_times_each_path_and_writes_json(tmp_path):
    lines = []
    rows = benchmark([2], [1], ["fused", "python", "plain"], timed_steps=2, warmup_steps=1,
                     length=2, log=lines.append)  # fmt: skip
    assert [(r.path, r.batch_size, r.threads, r.timed_steps) for r in rows] == [
        ("fused", 2, 1, 2),
        ("python", 2, 1, 2),
        ("plain", 2, 1, 2),
    ]
    assert all(r.sequences_per_second > 0 and r.peak_memory_mib > 0 for r in rows)
    assert len(lines) == 3 and lines[0].startswith("fused")
    path = tmp_path / "bench.json"
    write_json(rows, str(path))
    saved = json.loads(path.read_text())
    assert saved["results"][2]["path"] == "plain" and "torch" in saved["environment"]


def test_benchmark_leaves_the_thread_count_as_it_found_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    benchmark([1], [other], ["fused"], timed_steps=1, warmup_steps=0, length=1, log=lambda _: 0)
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
    with pytest.raises(ValueError, match="valid paths: fused, python, plain"):
        benchmark([1], [1], ["compiled"])


def test_ntm_bench_command_prints_the_table_and_writes_json(tmp_path, capsys):
    from ntm.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--batch-sizes", "1", "--threads", "1", "--steps", "1",
                 "--paths", "fused,plain", "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "sequences/s" in printed and printed.count("cpu") >= 2
    assert len(json.loads(out.read_text())["results"]) == 2


@pytest.mark.parametrize(
    "arguments",
    [["--paths", "compiled"], ["--batch-sizes", "0"], ["--batch-sizes", "x"], ["--threads", ""]],
)
def test_ntm_bench_rejects_bad_input_in_one_line(arguments, capsys):
    from ntm.cli import main

    assert main(["bench", "--steps", "1", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ntm: error:") and error.count("\n") == 1
