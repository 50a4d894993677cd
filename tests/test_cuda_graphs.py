"""CUDA-graph updates (ntm.cuda_graphs): the same training as eager updates, to rounding.

The CUDA tests skip where no GPU is available (CI); ``bash benchmarks/gpu.sh`` runs them.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ntm import DNC, NTM, SAM, LSTMBaseline
from ntm.bench import benchmark
from ntm.cuda_graphs import GraphedUpdate, capture_blocker
from ntm.metrics import sequence_loss
from ntm.tasks import make
from ntm.training import TIMING_FIELDS, apply_overrides, preset_config, read_metrics, train
from ntm.training.loop import uses_cuda_graphs
from ntm.training.optim import build_optimizer, set_capturable, set_lr

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
SMALL = {"memory_slots": 16, "memory_width": 8, "controller_size": 16}


def test_refuses_a_model_on_the_cpu() -> None:
    model = NTM(9, 8, **SMALL)
    optimizer = torch.optim.RMSprop(model.parameters())
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedUpdate(model, optimizer, sequence_loss)


def test_bench_refuses_the_graph_path_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        benchmark([1], [1], ["graph"], device="cpu", log=lambda _: None)


@pytest.mark.parametrize("model, blocker", [
    (SAM(9, 8, **SMALL), "SparseAccess"),  # its index and its backward's rows: on the host
    (DNC(9, 8, **SMALL), "DNCAccess"),  # autograd's backward of prod and cumprod reads the host
])
def test_a_memory_a_graph_cannot_capture_trains_eagerly_on_a_gpu(model, blocker) -> None:
    assert capture_blocker(model) == blocker
    with pytest.raises(ValueError, match=f"a CUDA graph cannot capture a step of {blocker}"):
        GraphedUpdate(model, torch.optim.RMSprop(model.parameters()), sequence_loss)
    config, gpu = preset_config("copy"), torch.device("cuda")
    assert not uses_cuda_graphs(config, gpu, model, distributed=False)


def test_the_ntm_is_captured_on_a_gpu_in_one_process_only() -> None:
    config, gpu, ntm = preset_config("copy"), torch.device("cuda"), NTM(9, 8, **SMALL)
    assert capture_blocker(ntm) is None
    assert uses_cuda_graphs(config, gpu, ntm, distributed=False)
    assert not uses_cuda_graphs(config, torch.device("cpu"), ntm, distributed=False)
    assert not uses_cuda_graphs(config, gpu, ntm, distributed=True)
    off = apply_overrides(preset_config("copy"), ["train.cuda_graphs=false"])
    assert not uses_cuda_graphs(off, gpu, ntm, distributed=False)
    # Skipping outlier updates reads each gradient's norm on the host: eager updates.
    skipping = apply_overrides(preset_config("copy"), ["optim.skip_above=100"])
    assert not uses_cuda_graphs(skipping, gpu, ntm, distributed=False)


@pytest.mark.parametrize("kind, blocker", [("sam", "SparseAccess"), ("dnc", "DNCAccess")])
def test_bench_refuses_the_graph_path_for_a_memory_it_cannot_capture(kind, blocker) -> None:
    with pytest.raises(ValueError, match=f"model {kind} cannot take the graph path: a CUDA graph "
                                         f"cannot capture its {blocker}"):
        benchmark([1], [1], ["graph"], device="cuda", model_kinds=[kind], log=lambda _: None)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_set_capturable_sets_the_flag_and_keeps_the_step_counts(name) -> None:
    model = torch.nn.Linear(3, 2)
    config = apply_overrides(preset_config("copy"), [f"optim.name={name}"]).optim
    optimizer = build_optimizer(model.parameters(), config)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    for capturable in (True, False):
        set_capturable(optimizer, capturable)
        assert all(group["capturable"] is capturable for group in optimizer.param_groups)
        assert all(state["step"].device.type == "cpu" and state["step"].item() == 1
                   for state in optimizer.state.values())


@CUDA
def test_set_capturable_moves_the_step_counts_to_the_parameters() -> None:
    model = torch.nn.Linear(3, 2, device="cuda")
    optimizer = build_optimizer(model.parameters(), preset_config("copy").optim)
    model(torch.ones(1, 3, device="cuda")).sum().backward()
    optimizer.step()
    set_capturable(optimizer, True)
    assert all(state["step"].is_cuda for state in optimizer.state.values())
    set_capturable(optimizer, False)
    assert all(not state["step"].is_cuda for state in optimizer.state.values())


def _copy_batches(lengths: list[int], batch_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    task, batches = None, []
    for length in lengths:  # a fixed length per batch: several shapes, one captured each
        task = make("copy", min_length=length, max_length=length)
        batches.append(task.sample(batch_size, generator=generator))
    return task, batches


def _eager_and_graphed(model_factory, batches, rates=None, **optimizer_arguments):
    """Losses and trained models of eager and graphed updates on ``batches``; ``rates[i]``, if
    given, is the learning rate set before update ``i``."""
    losses, models = {}, {}
    for name in ("eager", "graph"):
        torch.manual_seed(0)
        model = model_factory()
        # The same RMSProp either way: capturable changes where the step count lives only.
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9,
                                        centered=True, capturable=name == "graph",
                                        **optimizer_arguments)
        parameters = list(model.parameters())

        def clip(parameters=parameters):
            torch.nn.utils.clip_grad_value_(parameters, 10.0)

        if name == "graph":
            update = GraphedUpdate(model, optimizer, sequence_loss, after_backward=clip)
        else:
            def update(inputs, targets, mask, model=model, optimizer=optimizer, clip=clip):
                outputs, _ = model(inputs.cuda())
                loss = sequence_loss(outputs, targets.cuda(), mask.cuda())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip()
                optimizer.step()
                return loss.detach()
        losses[name] = []
        for batch, rate in zip(batches, rates or [None] * len(batches), strict=True):
            if rate is not None:
                set_lr(optimizer, rate)
            losses[name].append(update(batch.inputs, batch.targets, batch.mask).item())
        models[name] = model
        if name == "graph" and rates is None:
            # the first update runs eagerly; each later shape is captured once
            assert len(update.captured_shapes) == len({b.inputs.shape for b in batches[1:]})
    return losses, models


def _assert_same_training(losses, models) -> None:
    """Graphed and eager updates gave the same losses and weights, to float32 rounding."""
    assert losses["graph"] == pytest.approx(losses["eager"], rel=1e-4)
    for eager, graphed in zip(models["eager"].parameters(), models["graph"].parameters(),
                              strict=True):
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)


@CUDA
@pytest.mark.filterwarnings("error::UserWarning")  # e.g. gradients accumulated on a side stream
@pytest.mark.parametrize("kind", ["ntm", "lstm"])
def test_graphed_updates_match_eager_updates(kind) -> None:
    task, batches = _copy_batches([5, 3, 5, 8, 3, 8, 5], batch_size=4)

    def factory():
        if kind == "lstm":
            return LSTMBaseline(task.input_size, task.output_size, hidden_size=32,
                                num_layers=2, device="cuda")
        return NTM(task.input_size, task.output_size, **SMALL, device="cuda")

    losses, models = _eager_and_graphed(factory, batches)
    _assert_same_training(losses, models)


@CUDA
@pytest.mark.filterwarnings("error::UserWarning")
def test_a_new_learning_rate_is_captured_again() -> None:
    task, batches = _copy_batches([4] * 7, batch_size=3)
    rates = [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4]  # a float rate is a graph constant
    losses, models = _eager_and_graphed(
        lambda: NTM(task.input_size, task.output_size, **SMALL, device="cuda"), batches, rates)
    _assert_same_training(losses, models)


@CUDA
@pytest.mark.filterwarnings("error::UserWarning")
def test_graphs_are_replayed_until_the_learning_rate_changes() -> None:
    task, batches = _copy_batches([4] * 6, batch_size=2)
    model = NTM(task.input_size, task.output_size, **SMALL, device="cuda")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, capturable=True)
    update = GraphedUpdate(model, optimizer, sequence_loss)
    captured = []
    for index, batch in enumerate(batches):
        if index == 3:
            set_lr(optimizer, 5e-4)
        update(batch.inputs, batch.targets, batch.mask)
        captured.append(len(update.captured_shapes))
    # eager first update, one capture replayed; a new rate: eager again, then one capture
    assert captured == [0, 1, 1, 0, 1, 1]


@CUDA
@pytest.mark.filterwarnings("error::UserWarning")
def test_zero_grad_and_a_new_optimiser_state_between_updates_are_safe() -> None:
    task, batches = _copy_batches([4, 4, 4, 4, 4], batch_size=2)
    torch.manual_seed(0)
    model = NTM(task.input_size, task.output_size, **SMALL, device="cuda")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, capturable=True)
    update = GraphedUpdate(model, optimizer, sequence_loss)
    update(*batches[0])
    update(*batches[1])  # captured
    gradients = [p.grad for p in model.parameters()]
    optimizer.zero_grad()  # sets them to None: the graph's own are put back
    update(*batches[2])
    assert all(p.grad is g for p, g in zip(model.parameters(), gradients, strict=True))
    # A copy: loading the optimiser's own state dict keeps its tensors (`.to` returns them).
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # new tensors: recaptured
    update(*batches[3])
    assert update.captured_shapes == []  # dropped; this update ran eagerly
    update(*batches[4])
    assert len(update.captured_shapes) == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


@CUDA
def test_graphed_updates_with_random_memory_stay_finite() -> None:
    task, batches = _copy_batches([4, 6, 4, 6], batch_size=3)
    losses, _ = _eager_and_graphed(
        lambda: NTM(task.input_size, task.output_size, **SMALL, memory_init="random",
                    device="cuda"), batches)
    assert all(math.isfinite(value) for value in losses["graph"])


@CUDA
def test_training_with_and_without_graphs_logs_the_same_costs(tmp_path) -> None:
    base = apply_overrides(preset_config("copy"), [
        "model.memory_slots=16", "model.memory_width=8", "model.controller_size=16",
        "train.steps=12", "train.log_every=2", "train.val_every=6", "train.device=cuda",
    ])
    for graphs in (True, False):
        config = apply_overrides(base, [f"train.cuda_graphs={graphs}"])
        train(config, tmp_path / str(graphs), progress=False)
    records = {graphs: read_metrics(tmp_path / str(graphs)) for graphs in (True, False)}
    assert len(records[True]) == len(records[False]) == 6
    for graphed, eager in zip(records[True], records[False], strict=True):
        for key, value in eager.items():
            if key not in TIMING_FIELDS:
                assert graphed[key] == pytest.approx(value, rel=1e-3), key


@CUDA
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_run_moves_between_the_cpu_and_cuda_with_graphs(tmp_path, first, then) -> None:
    config = apply_overrides(preset_config("copy"), [
        "model.memory_slots=16", "model.memory_width=8", "model.controller_size=16",
        "train.steps=3", f"train.device={first}",
    ])
    train(config, tmp_path / "run", progress=False)
    resumed = apply_overrides(config, ["train.steps=6", f"train.device={then}"])
    result = train(resumed, tmp_path / "run", resume=True, progress=False)
    assert result.step == 6 and math.isfinite(result.val_cost)


@CUDA
@pytest.mark.filterwarnings("error::UserWarning")
def test_bench_times_the_graph_path() -> None:
    rows = benchmark([2], [1], ["fused", "graph"], device="cuda", timed_steps=3, length=4,
                     log=lambda _: None)
    assert [row.path for row in rows] == ["fused", "graph"]
    assert all(row.sequences_per_second > 0 for row in rows)
