"""Tests of data-parallel training (ntm.training.distributed), on the CPU with gloo.

Two real processes each time: ``torchrun`` running ``ntm train`` (the command users type), and
``torch.multiprocessing`` for the gradient of two ranks against one process on their batches
together. Each start of a process group costs seconds, so the tests share few of them.
"""

import doctest
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import save_file

from ntm import tasks
from ntm.cli import main
from ntm.training import TIMING_FIELDS, RunConfig, World, apply_overrides, read_metrics
from ntm.training import distributed as ntm_distributed
from ntm.training.build import build_model
from ntm.training.checkpoint import STATE_FILE
from ntm.training.loop import _log, _update
from ntm.training.optim import build_optimizer

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with the gloo backend")

TINY = ["model.memory_slots=8", "model.memory_width=4", "model.controller_size=8",
        "model.memory_init=random",  # random memory draws from the global RNG, to restore too
        "train.batch_size=2", "train.log_every=1", "train.val_every=2", "train.val_batches=1",
        "train.val_batch_size=2", "train.checkpoint_every=2", "train.device=cpu",
        "task.max_length=3"]
SETS = [item for setting in TINY for item in ("--set", setting)]
RANKS, BATCH = 2, 3  # the gradient test: 2 ranks of 3 sequences against 1 process of 6
RUN_FILES = [".lock", "best.safetensors", "config.json", "metrics.jsonl", "model.safetensors",
             "training_state.safetensors"]  # .lock: rank 0's, the one writer


def _torchrun(*args, cwd):
    """``torchrun --standalone`` (a free port) of ``ntm train`` with two CPU processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={RANKS}", "-m", "ntm", "train", *args, "--no-progress"]
    before = Path(cwd).with_name(Path(cwd).name + "-before")
    shutil.rmtree(before, ignore_errors=True)
    shutil.copytree(cwd, before)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "terminate called without an active exception" in done.stderr:
        # A rank aborting as it exits (seen twice in hundreds of runs, under load, once before
        # the C++ kernel existed): a shutdown race below ntm. Run it again, once, from the same
        # files; any other failure, or this one twice, fails the test.
        shutil.rmtree(cwd)
        shutil.copytree(before, cwd)
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_torchrun_trains_and_rank_0_alone_writes(tmp_path):
    _torchrun("copy", "--steps", "4", "--out", "run", *SETS, cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == RUN_FILES
    records = read_metrics(tmp_path / "run")
    # One line per logged step, counting the sequences of both ranks.
    assert [(r["step"], r["sequences"]) for r in records] == [(1, 4), (2, 8), (3, 12), (4, 16)]
    assert [r["step"] for r in records if "val_cost" in r] == [2, 4]


def _rank(rank: int, tmp: str, ports: list[int]) -> None:
    """One of two ranks: the gradient check, then a run in two pieces and one in one go."""
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank,
                            world_size=RANKS)
    try:
        torch.save(_rank_updates(rank), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    # What torchrun sets: ntm train finds it and joins the ranks (a fresh port per group).
    runs = [["copy", "--steps", "4", "--out", f"{tmp}/whole", *SETS],
            ["copy", "--steps", "2", "--out", f"{tmp}/pieces", *SETS],
            ["--resume", f"{tmp}/pieces", "--steps", "4"]]
    for port, args in zip(ports, runs, strict=True):
        os.environ.update(WORLD_SIZE=str(RANKS), RANK=str(rank), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        assert main(["train", *args, "--no-progress"]) == 0


def _rank_updates(rank: int) -> dict:
    """The loop's update on this rank's share of the batch, with and without the fused node."""
    world, share, results = World(RANKS, rank), slice(rank * BATCH, (rank + 1) * BATCH), {}
    for fused in (True, False):
        model, optimizer, config, batch = _setup(fused)
        batch = tasks.Batch(batch.inputs[:, share], batch.targets[:, share], batch.mask[:, share])
        replica = ntm_distributed.wrap(model, world)
        value, _ = _update(replica, optimizer, list(model.parameters()), batch, config, world)
        results[fused] = _snapshot(model, value)
    return results


def _setup(fused: bool):
    """A float64 NTM, its optimiser and config, and the whole batch of every rank."""
    # Constant memory: random memory would draw each rank's noise from the same global seed.
    config = apply_overrides(RunConfig(), [*TINY, "model.memory_init=constant",
                                           f"model.fused={fused}", "optim.clip_value=0.02"])
    task = tasks.make("copy", max_length=3)
    torch.manual_seed(0)
    model = build_model(config.model, task.input_size, task.output_size).double()
    batch = task.sample(RANKS * BATCH, generator=torch.Generator().manual_seed(1))
    batch = tasks.Batch(batch.inputs.double(), batch.targets.double(), batch.mask)
    return model, build_optimizer(model.parameters(), config.optim), config, batch


def _snapshot(model, value):
    return {"value": value,
            "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
            "weights": {name: p.detach().clone() for name, p in model.named_parameters()}}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# One pair of processes for both checks: starting them costs seconds on a loaded CPU.
def test_two_gloo_ranks_update_as_one_process_and_resume_exactly(tmp_path):
    mp.spawn(_rank, args=(str(tmp_path), _free_ports(3)), nprocs=RANKS)

    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(RANKS)]
    for fused in (True, False):
        model, optimizer, config, batch = _setup(fused)
        value, _ = _update(model, optimizer, list(model.parameters()), batch, config, World())
        expected = _snapshot(model, value)
        clipped = [g.abs().max().item() for g in expected["grads"].values()]
        assert max(clipped) == pytest.approx(0.02), "the test should clip some components"
        for got in (rank[fused] for rank in ranks):
            # The mean over ranks of per-rank mean losses is the mean over all sequences...
            assert got["value"] == pytest.approx(expected["value"], rel=1e-12)
            for kind in ("grads", "weights"):  # ...and so are the averaged, clipped gradients
                for name, tensor in expected[kind].items():
                    torch.testing.assert_close(got[kind][name], tensor, rtol=1e-10, atol=1e-12,
                                               msg=f"{kind} {name}, fused={fused}")

    assert sorted(p.name for p in (tmp_path / "pieces").iterdir()) == RUN_FILES
    # Every rank's generators were restored, so the losses (means over both ranks) match.
    whole = _without_timing(read_metrics(tmp_path / "whole"))
    assert _without_timing(read_metrics(tmp_path / "pieces")) == whole
    assert [r["sequences"] for r in whole] == [4, 8, 12, 16]


def test_resuming_with_another_number_of_processes_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "copy", "--steps", "2", "--out", str(run), *SETS,
                 "--no-progress"]) == 0
    # Record two processes, as a run of torchrun --nproc_per_node 2 would have.
    state = run / STATE_FILE
    with safe_open(state, framework="pt") as file:
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
        meta = json.loads(file.metadata()["ntm"])
    meta["counters"]["world_size"] = 2
    save_file(tensors, state, metadata={"ntm": json.dumps(meta)})
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 2
    assert "trained by 2 process(es), not 1" in capsys.readouterr().err


def test_rank_seeds_and_doctests():
    seeds = [ntm_distributed.data_seed(seed, rank) for seed in range(3) for rank in range(4)]
    assert len(set(seeds)) == len(seeds)
    assert ntm_distributed.data_seed(5) == 11  # rank 0 draws what a one-process run draws
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert doctest.testmod(ntm_distributed, verbose=False).failed == 0


def test_a_world_of_one_needs_no_process_group():
    with ntm_distributed.process_group("cpu") as world:
        assert (world.size, world.rank, world.main, world.distributed) == (1, 0, True, False)
        assert not dist.is_initialized()
        model = torch.nn.Linear(2, 2)
        assert ntm_distributed.wrap(model, world) is model
        assert ntm_distributed.mean(torch.tensor(3.0), world) == 3.0
        assert ntm_distributed.agree(2, world) == 2
        assert ntm_distributed.gather_generators({"data": torch.Generator()}, world) == {}


def test_metrics_count_the_sequences_of_every_rank():
    counters = {"step": 4, "sequences": 32, "seconds": 2.0, "interval_cost": 6.0,
                "interval_steps": 2, "interval_start": 1.0, "world_size": 4}
    config = apply_overrides(RunConfig(), ["train.batch_size=2", "train.val_every=3"])
    record = _log(counters, config, validate=None, lr=1e-4)
    assert record["sequences_per_second"] == 16.0  # 2 steps x 2 sequences x 4 ranks in 1 s
    assert json.dumps(record)
