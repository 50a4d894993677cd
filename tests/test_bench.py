"""The training-step benchmark runs and reports what it timed (speed itself is not tested)."""

import json

import pytest

from ntm.bench import benchmark, write_json


def test_benchmark_times_each_path_and_writes_json(tmp_path):
    lines = []
    rows = benchmark([2], [1], ["fused", "plain"], timed_steps=2, warmup_steps=1, length=2,
                     log=lines.append)  # fmt: skip
    assert [(r.path, r.batch_size, r.threads, r.timed_steps) for r in rows] == [
        ("fused", 2, 1, 2),
        ("plain", 2, 1, 2),
    ]
    assert all(r.sequences_per_second > 0 and r.peak_memory_mib > 0 for r in rows)
    assert len(lines) == 2 and lines[0].startswith("fused")
    path = tmp_path / "bench.json"
    write_json(rows, str(path))
    saved = json.loads(path.read_text())
    assert saved["results"][1]["path"] == "plain" and "torch" in saved["environment"]


def test_benchmark_rejects_unknown_path():
    with pytest.raises(ValueError, match="valid paths: fused, plain"):
        benchmark([1], [1], ["compiled"])
