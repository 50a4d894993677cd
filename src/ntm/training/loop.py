"""The training loop: seeded, logged, checkpointed and resumable step for step.

Under ``torchrun`` the same loop trains data-parallel (see :mod:`ntm.training.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._threads import torch_threads
from ..cuda_graphs import GraphedUpdate, capture_blocker
from ..metrics import LN_2, sequence_loss
from ..rundir import parse_metrics, read_metrics
from ..rundir.files import append_text, lock_run_dir
from ..tasks.curriculum import curriculum_of, stage_params
from . import distributed
from .build import build_model, build_task
from .checkpoint import (
    BEST_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STATE_FILE,
    atomic_write_text,
    load_state,
    load_weights,
    read_snapshot,
    save_state,
    save_weights,
)
from .config import RunConfig
from .distributed import World, data_seed
from .errors import ConfigError, RunDirError, TrainingDiverged
from .evaluate import batch_logits, evaluate_batches, read_config, weights_file
from .optim import (
    build_optimizer,
    clip_gradients,
    gradient_norm,
    outlier_gradient,
    remember_norm,
    scheduled_lr,
    set_capturable,
    set_lr,
)
from .restarts import attempt_validations, reset_optimizer, restart_due, weight_seed
from .rewinds import new_best, restore_snapshot, rewind_due, take_snapshot

__all__ = ["RESUMABLE_FIELDS", "RESUMABLE_OPTIM_FIELDS", "TIMING_FIELDS", "TrainResult",
           "resumable_overrides", "train", "validation_set"]

# Fields of metrics.jsonl that measure time and so differ between otherwise identical runs.
TIMING_FIELDS = ("seconds", "sequences_per_second")
# Fields of TrainConfig a resumed run may change without changing what it computes.
# Restarts and rewinds too: a run found on a plateau, or spiking, can be resumed with them.
RESUMABLE_FIELDS = ("steps", "device", "threads", "tensorboard", "cuda_graphs", "max_seconds",
                    "target_val_cost", "restart_after", "restart_below", "rewind_above",
                    "rewind_factor")
# Fields of OptimConfig a resumed run may change: the learning rate's schedule (to continue a
# run with a decaying rate; the rate of every update is in metrics.jsonl, "lr") and the
# clipping and skipping (to rescue a run, or to replay one from a checkpoint with another: the
# collapse test).
RESUMABLE_OPTIM_FIELDS = ("lr", "schedule", "warmup", "lr_half_life", "min_lr", "drop_below",
                          "drop_factor", "clip", "clip_value", "max_norm", "skip_above",
                          "skip_window")
# Why a run stops, by priority: the ranks agree on the highest reason any of them has.
_STOP_REASONS = ("steps", "interrupted", "time", "target")


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        out_dir: the run directory.
        step: updates done in total (including those before a resume).
        sequences: training sequences seen in total.
        cost: training bits per sequence over the last logging interval, or over the part of
            one the run ended in (None before any update).
        val_cost, val_bit_errors: the final model's scores on the held-out set.
        seconds: training wall-clock time in total (including before a resume).
        stopped: ``"steps"`` (reached ``train.steps``), ``"target"`` (validation cost under
            ``train.target_val_cost``), ``"time"`` (``train.max_seconds`` spent) or
            ``"interrupted"`` (Ctrl-C or SIGTERM; a checkpoint was saved).
        best_step, best_val_cost: the validation with the lowest cost, whose weights are in
            ``best.safetensors``.
        world_size: processes that trained together (torchrun's ``WORLD_SIZE``). Only rank 0
            validates, so on other ranks the validation fields are None.
        resumed_from: the step a resumed run started from (None for a new run); equal to
            ``step`` when there was nothing left to train.
    """

    out_dir: Path
    step: int
    sequences: int
    cost: float | None
    val_cost: float | None
    val_bit_errors: float | None
    seconds: float
    stopped: str
    best_step: int | None = None
    best_val_cost: float | None = None
    world_size: int = 1
    resumed_from: int | None = None


def train(
    config: RunConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the model of ``config`` on its task, writing a run directory.

    Writes ``config.json``, ``metrics.jsonl`` (one line per ``train.log_every`` steps: ``step``,
    ``sequences``, ``cost`` in bits per sequence averaged over the interval, ``seconds``,
    ``sequences_per_second``, ``lr`` (the learning rate of the interval's last update), and
    every ``train.val_every`` steps ``val_cost`` and
    ``val_bit_errors`` on a fixed held-out set, plus ``val_optimal_cost`` for ngrams; a run
    that ends between two records adds one more for its last step, marked ``"final": true``,
    whose cost covers the steps since the last record and which a resumed run replaces; a
    validation that ended an attempt, ``train.restart_after``, carries ``"restart": K``), the
    weights and a resumable training state every ``train.checkpoint_every`` steps and at the end
    (see :mod:`ntm.training.checkpoint`), the weights of the best validation so far
    (``best.safetensors``), and TensorBoard logs if ``train.tensorboard``.

    Args:
        config: the run; ``train.seed`` seeds the initialisation and the training data.
            ``train.threads`` sets torch's CPU threads for the run (restored afterwards).
        out_dir: the run directory; created if missing. It must not hold a run unless resuming.
        resume: continue the run in ``out_dir`` up to ``config.train.steps`` steps in total.
            The metrics then match those of one uninterrupted run, except the timing fields.
            ``train`` fields of :data:`RESUMABLE_FIELDS` and ``optim`` fields of
            :data:`RESUMABLE_OPTIM_FIELDS` may differ from the saved config; a changed learning
            rate or schedule applies from the resumed step on.
            (The final model of every piece is scored too, so ``best.safetensors`` can be a
            model that an uninterrupted run never scored.)
        progress: show a progress bar with the cost and sequences per second.

    Under ``torchrun`` (``WORLD_SIZE`` above 1) every process calls ``train`` with the same
    arguments; they train one model with DistributedDataParallel, each rank drawing its own
    ``train.batch_size`` sequences per step from a seed derived from ``train.seed`` and its rank
    (:func:`~ntm.training.distributed.data_seed`), so ``sequences`` counts ``world_size *
    batch_size`` per step and the logged cost is the mean over all ranks' sequences. Rank 0
    alone validates and writes the run directory; a resumed run must have as many processes,
    and every rank reads the saved state, so ``out_dir`` must be on a file system all see.

    Raises:
        ConfigError: an invalid config, or one that differs from the saved run's when resuming,
            or, resuming, ``train.steps`` below the step the run has reached.
        RunDirError: ``out_dir`` holds a run (not resuming), or no resumable state (resuming).
        TrainingDiverged: the loss or the weights became NaN or infinite; the last checkpoint
            is kept.
    """
    config = RunConfig.from_dict(config.to_dict())  # checks every type and bound, and the task
    with distributed.process_group(config.train.device) as world:
        return _train(config, Path(out_dir), world, resume=resume, progress=progress)


def _train(config: RunConfig, out: Path, world: World, *, resume: bool,
           progress: bool) -> TrainResult:
    """:func:`train` in the process group of ``world``, holding the run directory's lock
    (rank 0, which alone writes it) so that no other process trains the same run."""
    # A run to resume that is not there is an error of _check_resumable, not a new folder.
    locked = world.main and (out.is_dir() or not resume)
    with lock_run_dir(out) if locked else contextlib.nullcontext():
        if resume:
            _check_resumable(config, out)
        elif world.main:  # rank 0 alone: another rank could see files rank 0 has begun to write
            _check_new_run_dir(out)
        return _Run(config, out, world, resume=resume).train(progress)


def _check_new_run_dir(out: Path) -> None:
    """Refuse an output directory that already holds a run."""
    if not ((out / STATE_FILE).exists() or (out / METRICS_FILE).exists()):
        return
    if not (out / STATE_FILE).exists():
        raise RunDirError(f"{out} holds a run that stopped before its first checkpoint "
                          f"(no {STATE_FILE}), so it cannot be continued; delete it or "
                          "choose another output directory")
    raise RunDirError(f"{out} already holds a run; continue it with --resume {out} "
                      "(train(..., resume=True) in Python) or choose another output "
                      "directory")


def _new_counters(world: World) -> dict[str, Any]:
    """The counters of a run that has not started; the state file saves and restores them."""
    return {"step": 0, "sequences": 0, "seconds": 0.0, "interval_cost": 0.0,
            "interval_steps": 0, "interval_start": 0.0, "cost": None, "val_cost": None,
            "val_bit_errors": None, "val_step": None, "best_val_cost": None, "best_step": None,
            "world_size": world.size, "dropped_step": None, "hardened_step": None,
            "restarts": 0, "attempt_start": 0, "attempt_validations": [], "rewinds": 0,
            "rewind_step": None, "rewind_scale": 1.0, "recent_norms": [], "snapshot_norms": [],
            "skipped": 0, "interval_skipped": 0}


class _Run:
    """One call of :func:`train`: the model, optimiser, generators and counters of a run, and
    the pieces of its loop. Building it draws the initial weights and, resuming, restores the
    saved state; :meth:`train` then runs the loop."""

    def __init__(self, config: RunConfig, out: Path, world: World, *, resume: bool):
        self.config, self.out, self.world, self.resume = config, out, world, resume
        self.device = device = world.device
        self.task = build_task(config.task, training=True)
        # Validation draws from the task without its training-only parameters (near items).
        self.held_out_task = build_task(config.task)
        # The curriculum's stages and the opening's task, by their parameters.
        self.stages: dict[tuple, Any] = {}
        # Two streams from one seed: even for the initial weights (and random memory), odd for
        # the data; the same seed for both would make the first batch a copy of the first
        # weights' draws.
        torch.manual_seed(weight_seed(config.train.seed, 0))
        self.model = build_model(config.model, self.task.input_size, self.task.output_size,
                                 device=device)
        if config.train.init is not None and not resume:  # a resumed run has its own weights
            load_weights(self.model, weights_file(config.train.init))
        # Updates replayed from CUDA graphs (ntm.cuda_graphs) need an optimiser whose step can
        # be captured; PyTorch warns when such a one steps eagerly, so only then.
        self.graphs = uses_cuda_graphs(config, device, self.model, world.distributed)
        self.optimizer = build_optimizer(self.model.parameters(), config.optim,
                                         capturable=self.graphs)
        self.generators = {
            "data": torch.Generator().manual_seed(data_seed(config.train.seed, world.rank))}
        if device.type == "cuda":  # random memory initialisation draws on the device
            self.generators["cuda"] = torch.cuda.default_generators[device.index or 0]
        self.validation = (validation_set(config, self.held_out_task, device) if world.main
                           else [])
        self.counters = _new_counters(world)
        self.snapshot: dict[str, Any] | None = None  # what a rewind goes back to
        # The step after which a restart or a rewind replaced the weights it had validated.
        self.replaced_step: int | None = None
        if resume:
            self._restore()
        # A resumed run with nothing left to train keeps the record of where it ended.
        self.nothing_to_train = resume and config.train.steps == self.counters["step"]
        if world.main:
            out.mkdir(parents=True, exist_ok=True)
            if resume and not self.nothing_to_train:
                _truncate_metrics(out / METRICS_FILE, self.counters["step"])
            atomic_write_text(out / CONFIG_FILE, config.to_json())
        self.replica = distributed.wrap(self.model, world)  # after loading: DDP broadcasts
        self.per_step = config.train.batch_size * world.size  # sequences of one update
        self.parameters = list(self.model.parameters())
        self.graphed = None
        if self.graphs:
            self.graphed = GraphedUpdate(
                self.model, self.optimizer, sequence_loss,
                after_backward=lambda: clip_gradients(self.parameters, config.optim))
        self.last_checkpoint = self.counters["step"] if resume else None
        self.final_cost: float | None = None  # the cost of a "final" record, if one ends it

    def _restore(self) -> None:
        """Load the saved state of the run being resumed into the model, optimiser, generators
        and counters, and check that it can be continued as configured."""
        out, world, counters = self.out, self.world, self.counters
        # A run moved from the CPU to a GPU has no state of the device's generator to restore.
        saved = load_state(out / STATE_FILE, self.model, self.optimizer, self.generators,
                           optional={"cuda"})
        if saved.get("world_size", 1) != world.size:
            raise ConfigError(f"the run in {out} was trained by {saved.get('world_size', 1)} "
                              f"process(es), not {world.size}; resume it with as many, so that "
                              "every rank draws the data it would have drawn")
        counters.update(saved)
        for key, value in (("rewinds", 0), ("rewind_step", None), ("rewind_scale", 1.0),
                           ("recent_norms", []), ("snapshot_norms", []), ("skipped", 0),
                           ("interval_skipped", 0)):
            counters.setdefault(key, value)  # saved before rewinds, or skipped updates, were
        if self.config.optim.skip_above is None:  # resumed without skipping: no stale window
            counters.update(recent_norms=[], snapshot_norms=[])
        if counters["rewind_step"] is not None:
            self.snapshot = read_snapshot(out / STATE_FILE)
        if "attempt_validations" not in saved:  # saved before the state kept them
            best = counters.pop("attempt_best", None)
            metrics = out / METRICS_FILE
            if metrics.is_file():
                counters["attempt_validations"] = attempt_validations(
                    read_metrics(out), counters["step"], counters["attempt_start"])
            else:  # no record of when: the attempt's best, as if just now (restarts no sooner)
                counters["attempt_validations"] = ([] if best is None
                                                   else [[counters["sequences"], best]])
        if self.config.train.steps < counters["step"]:
            raise ConfigError(f"train.steps={self.config.train.steps} is below the step the run "
                              f"in {out} has reached ({counters['step']}); give a larger number "
                              "of steps to continue it")
        distributed.restore_generators(out / STATE_FILE, self.generators, world)
        set_capturable(self.optimizer, self.graphs)  # the saved groups carry the saved setting

    def validate(self, *, scheduled: bool = True) -> dict[str, float]:
        """Score the model on the held-out set (rank 0 only), saving it if it is the best.
        Only a validation on the schedule of ``val_every`` (``scheduled``) counts for restarts:
        a run stopped between two of them and resumed must restart where one that never
        stopped does."""
        counters = self.counters
        # The bare model: the DDP wrapper's forward pass is collective.
        scores = evaluate_batches(self.model, self.validation, self.held_out_task)
        counters.update(val_cost=scores["cost"], val_bit_errors=scores["bit_errors"],
                        val_step=counters["step"])
        best = counters["best_val_cost"]
        # Validation spikes happen (RESULTS.md); weights that score NaN are never the best.
        finite = math.isfinite(scores["cost"])
        if finite and scheduled:  # what restarts read (ntm.training.restarts.restart_due)
            counters["attempt_validations"].append([counters["sequences"], scores["cost"]])
        if finite and (best is None or scores["cost"] < best):
            counters.update(best_val_cost=scores["cost"], best_step=counters["step"])
            save_weights(self.model, self.out / BEST_FILE, {"step": counters["step"],
                                                            "val_cost": scores["cost"]})
        return scores

    def validate_aside(self) -> dict[str, float]:
        """:meth:`validate` off the schedule of ``val_every`` (the final model). Random memory
        draws on the global generators, so they are put back: a run stopped here and resumed
        must draw what one that never stopped draws."""
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            return self.validate(scheduled=False)

    def checkpoint(self) -> None:
        """Save the weights and the resumable state; collective (every rank gathers)."""
        # An update from a finite loss can still leave non-finite weights (a rate far too
        # high); they must not replace the last good checkpoint. The ranks' weights are equal.
        if not all(bool(torch.isfinite(p).all()) for p in self.parameters):
            raise TrainingDiverged(f"the weights became NaN or infinite by step "
                                   f"{self.counters['step']}; "
                                   f"{_kept(self.last_checkpoint, self.out)} "
                                   "(try a lower optim.lr)")
        others = distributed.gather_generators(self.generators, self.world)
        if not self.world.main:
            return
        # The state file first: resuming reads it alone, load_run reads the weights.
        save_state(self.out / STATE_FILE, self.model, self.optimizer,
                   {**self.generators, **others}, self.counters, self.snapshot)
        save_weights(self.model, self.out / MODEL_FILE, {"step": self.counters["step"]})

    def train(self, progress: bool) -> TrainResult:
        """Run the loop up to ``train.steps`` steps in total; returns what it did."""
        config, world, counters = self.config, self.world, self.counters
        writer = _tensorboard(self.out, config.train.tensorboard and world.main,
                              counters["step"])
        bar = tqdm(total=config.train.steps * self.per_step, initial=counters["sequences"],
                   unit="seq", disable=not (progress and world.main), dynamic_ncols=True,
                   leave=True)
        resumed_from = counters["step"] if self.resume else None
        # The cost of the steps after the last record, if the run ended there (before now too).
        if self.nothing_to_train and world.main:
            self.final_cost = _final_cost(self.out / METRICS_FILE)
        self.replica.train()
        # Unbuffered bytes: each record is written whole or fails there (append_text).
        metrics_file = (open(self.out / METRICS_FILE, "ab", buffering=0)  # noqa: SIM115
                        if world.main else contextlib.nullcontext())
        try:
            with (metrics_file as metrics, _interruptible() as stop,
                  torch_threads(config.train.threads)):
                stopped = self._loop(metrics, stop, bar, writer)
                if self.last_checkpoint is None:  # train.steps = 0: score and save the model
                    if world.main and counters["val_step"] != counters["step"]:
                        self.validate_aside()
                    self.checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        cost = counters["cost"] if self.final_cost is None else self.final_cost
        return TrainResult(self.out, counters["step"], counters["sequences"], cost,
                           counters["val_cost"], counters["val_bit_errors"],
                           counters["seconds"], stopped, counters["best_step"],
                           counters["best_val_cost"], world.size, resumed_from)

    def _loop(self, metrics, stop: threading.Event, bar, writer) -> str:
        """Update until ``train.steps`` or another reason to stop; returns that reason."""
        config, counters = self.config, self.counters
        started, seconds_before = time.perf_counter(), counters["seconds"]
        stopped = "steps"
        while counters["step"] < config.train.steps:
            lr, value, skipped = self._step()
            step = counters["step"] = counters["step"] + 1
            counters["skipped"] += skipped
            counters["interval_skipped"] += skipped
            counters["sequences"] += self.per_step
            counters["interval_cost"] += value / LN_2  # nats -> bits per sequence
            counters["interval_steps"] += 1
            counters["seconds"] = seconds_before + time.perf_counter() - started
            bar.update(self.per_step)
            if self.world.main and (step % config.train.log_every == 0
                                    or step % config.train.val_every == 0):
                self._record(metrics, bar, writer, lr)
            if step % config.train.val_every == 0:
                self._note_first_solved(step)
                self._snapshot_or_rewind(step)
                self._restart_if_due()
            stopped = self._stop_reason(step, started, stop)
            final = stopped != "steps" or step == config.train.steps
            if final or step % config.train.checkpoint_every == 0:
                self.checkpoint()
                self.last_checkpoint = step
            if final:
                self._finish(metrics, lr)
            if stopped != "steps":
                break
        return stopped

    def _step(self) -> tuple[float, float, bool]:
        """One update at the scheduled rate; returns the rate, the loss in nats per sequence
        and whether the update was skipped (``optim.skip_above``).

        Raises:
            TrainingDiverged: the loss is not finite.
        """
        # An attempt after a restart schedules its rate over what is left of the budget.
        start = self.counters["attempt_start"]
        lr = scheduled_lr(self.config.optim, self.counters["sequences"] - start,
                          self.config.train.steps * self.per_step - start,
                          dropped=self.counters["dropped_step"] is not None)
        lr *= self.counters["rewind_scale"]
        set_lr(self.optimizer, lr)  # also replaces the rate a resumed optimiser state holds
        batch = self._training_task().sample(self.config.train.batch_size,
                                             generator=self.generators["data"]).to(self.device)
        skipped = False
        if self.graphed is None:
            value, skipped = _update(self.replica, self.optimizer, self.parameters, batch,
                                     self.config, self.world, self.counters["recent_norms"])
        else:  # the update is done even if the loss is not finite: the run stops
            # A CUDA graph replays fixed shapes: the padded batch, without lengths.
            value = self.graphed(batch.inputs, batch.targets, batch.mask).item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"the loss became {value} at step {self.counters['step'] + 1};"
                                   f" {_kept(self.last_checkpoint, self.out)} "
                                   "(try a lower optim.lr)")
        return lr, value, skipped

    def _training_task(self):
        """The task the next update trains on: the full task, or the stage of its length
        curriculum (``task.curriculum``) that the sequences seen so far have reached, or its
        opening (``task.opening``) while the sequences seen are fewer; without its
        training-only parameters until ``task.harden_below`` is reached."""
        # (An attempt after a restart opens again.)
        task_config = self.config.task
        seen = self.counters["sequences"] - self.counters["attempt_start"]
        hardened = task_config.harden_below is None or self.counters["hardened_step"] is not None
        params: dict[str, Any] = {}
        if task_config.curriculum is not None and seen < task_config.curriculum:
            stage = stage_params(self.task, seen / task_config.curriculum)
            params = {name: stage[name] for name in curriculum_of(self.task)}
        if task_config.opening is not None and seen < task_config.opening:
            params = dict(task_config.opening_params)
        if not params:
            return self.task if hardened else self.held_out_task
        key = (hardened, *sorted(params.items()))
        if key not in self.stages:
            self.stages[key] = build_task(task_config, training=hardened, **params)
        return self.stages[key]

    def _note_first_solved(self, step: int) -> None:
        """Note the first validation under ``optim.drop_below`` (the rate is multiplied by
        ``optim.drop_factor`` from the next update on) and under ``task.harden_below`` (the
        training data follows the task's training-only parameters from the next update on).
        Collective (rank 0 alone validates)."""
        counters = self.counters
        for below, noted in ((self.config.optim.drop_below, "dropped_step"),
                             (self.config.task.harden_below, "hardened_step")):
            if below is None or counters[noted] is not None:
                continue
            solved = self.world.main and counters["val_cost"] < below
            if distributed.agree(int(solved), self.world):
                counters[noted] = step

    def _snapshot_or_rewind(self, step: int) -> None:
        """Keep the weights and optimiser state (and the window of gradient norms that
        ``optim.skip_above`` judges by) of a new best validation of the attempt, or go back to
        them after a spike (:mod:`ntm.training.rewinds`), if ``train.rewind_above`` is set.
        Collective (rank 0 alone validates); every rank holds the same weights and state, so
        each keeps its own snapshot."""
        counters, main = self.counters, self.world.main
        if self.config.train.rewind_above is None:  # off, or turned off on resuming
            self.snapshot = None
            counters.update(rewind_step=None, snapshot_norms=[])
            return
        best = main and counters["val_step"] == step and new_best(counters)
        if distributed.agree(int(best), self.world):
            self.snapshot = take_snapshot(self.model, self.optimizer)
            # The window of norms goes back with the weights (optim.skip_above): the spike's
            # would raise its median and let the next outliers through.
            counters.update(rewind_step=step, snapshot_norms=list(counters["recent_norms"]))
            return
        due = main and counters["val_step"] == step and self._rewind_due()
        if distributed.agree(int(due), self.world):
            restore_snapshot(self.snapshot, self.model, self.optimizer)
            counters["recent_norms"] = list(counters["snapshot_norms"])
            counters["rewinds"] += 1
            counters["rewind_scale"] *= self.config.train.rewind_factor
            self.replaced_step = step

    def _rewind_due(self) -> bool:
        """Whether the validation just made sends the run back to its snapshot: a run resumed
        with rewinds newly set has none until its next best validation, and a validation that
        ends the attempt (a restart) throws the snapshot away instead."""
        return (self.snapshot is not None and rewind_due(self.config.train, self.counters)
                and not restart_due(self.config.train, self.counters))

    def _restart_if_due(self) -> None:
        """Start a new attempt from fresh weights if the one under way is due to end
        (:func:`~ntm.training.restarts.restart_due`); collective (rank 0 alone validates).
        Every rank draws the same weights, so the replicas stay equal."""
        counters = self.counters
        due = self.world.main and restart_due(self.config.train, counters)
        if not distributed.agree(int(due), self.world):
            return
        counters["restarts"] += 1
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # random memory draws on them: left as is
            torch.manual_seed(weight_seed(self.config.train.seed, counters["restarts"]))
            fresh = build_model(self.config.model, self.task.input_size, self.task.output_size,
                                device=self.device)
        with torch.no_grad():  # in place: DDP and a CUDA graph hold these tensors
            self.model.load_state_dict(fresh.state_dict())
        reset_optimizer(self.optimizer)
        # Fresh weights have gradients of another size: their own median of norms to skip by.
        counters.update(attempt_start=counters["sequences"], attempt_validations=[],
                        dropped_step=None, hardened_step=None, rewinds=0, rewind_step=None,
                        rewind_scale=1.0, recent_norms=[], snapshot_norms=[])
        self.snapshot = None
        self.replaced_step = counters["step"]

    def _record(self, metrics, bar, writer, lr: float) -> None:
        """Write the record of the step just done (validating on ``val_every``), rank 0 only;
        a validation that ends an attempt says so (``"restart"``: the next attempt's number)."""
        record = _log(self.counters, self.config, self.validate, lr)
        if "val_cost" in record and restart_due(self.config.train, self.counters):
            record["restart"] = self.counters["restarts"] + 1
        if "val_cost" in record and self._rewind_due():
            record["rewind"] = self.counters["rewinds"] + 1
        append_text(metrics, json.dumps(record) + "\n")
        bar.set_postfix({k: f"{record[k]:.3g}" for k in ("cost", "val_cost") if k in record},
                        refresh=False)
        if writer is not None:
            for key, number in record.items():
                if number is not None and key != "step":
                    writer.add_scalar(key, number, record["step"])

    def _stop_reason(self, step: int, started: float, stop: threading.Event) -> str:
        """Why the run stops after ``step`` (``"steps"``: it goes on, or reached the last step),
        the same on every rank; collective."""
        counters, train_config = self.counters, self.config.train
        target, budget = train_config.target_val_cost, train_config.max_seconds
        stopped = "steps"
        if target is not None and counters["val_step"] == step and counters["val_cost"] < target:
            stopped = "target"
        elif budget is not None and time.perf_counter() - started >= budget:
            stopped = "time"
        elif stop.is_set():
            stopped = "interrupted"
        # Every rank must stop at the same step, but rank 0 alone validates and each rank has
        # its own clock and its own Ctrl-C.
        return _STOP_REASONS[distributed.agree(_STOP_REASONS.index(stopped), self.world)]

    def _finish(self, metrics, lr: float) -> None:
        """Score the final model if it was not just validated and save it again, so that the
        state file records any new best (the first save is there for a second Ctrl-C). The
        same on every rank, so the collectives meet."""
        counters = self.counters
        # Weights replaced after their validation (a restart or a rewind) are scored again.
        rescored = self.world.main and (counters["val_step"] != counters["step"]
                                        or self.replaced_step == counters["step"])
        if rescored:
            scores = self.validate_aside()
            if counters["interval_steps"]:  # the run ended between two records
                record = _final_record(counters, self.config, scores, lr)
                self.final_cost = record["cost"]
                append_text(metrics, json.dumps(record) + "\n")
        if distributed.agree(int(rescored), self.world):
            self.checkpoint()


def uses_cuda_graphs(config: RunConfig, device: torch.device, model: torch.nn.Module,
                     distributed: bool) -> bool:
    """Whether ``ntm train`` replays its updates from CUDA graphs: on a CUDA device, with
    ``train.cuda_graphs``, in one process, for a model a graph can capture
    (:func:`ntm.cuda_graphs.capture_blocker`; the DNC and sparse access memory cannot, and
    train eagerly), and without ``optim.skip_above`` (which reads each gradient's norm on the
    host to decide)."""
    return (device.type == "cuda" and config.train.cuda_graphs and not distributed
            and config.optim.skip_above is None and capture_blocker(model) is None)


def validation_set(config: RunConfig, task, device: torch.device | str = "cpu") -> list:
    """The held-out batches of a run of ``task``: ``train.val_batches`` batches of
    ``train.val_batch_size`` sequences, from a generator of their own seeded with
    ``train.val_seed``, so the same for every seed and every resumed run."""
    generator = torch.Generator().manual_seed(config.train.val_seed)
    return [task.sample(config.train.val_batch_size, generator=generator).to(device)
            for _ in range(config.train.val_batches)]


def _update(model, optimizer, parameters, batch, config: RunConfig, world: World,
            recent_norms: list[float] | None = None) -> tuple[float, bool]:
    """One update on ``batch``; returns its loss in nats per sequence, measured before it, and
    whether the update was skipped (``optim.skip_above``: judged against ``recent_norms``, the
    norms of the updates before, to which this one's is added).

    With several ranks the loss returned is the mean over all ranks' sequences, and the gradient
    is averaged over the ranks (by DDP, in ``backward``) before it is clipped, so each component
    is clipped as in one process with the ranks' batches together; every rank measures the same
    norm, so all skip or none. A NaN or infinite loss on any rank is returned without touching
    the weights or the optimiser state on any rank.
    """
    logits = batch_logits(model, batch)  # each sequence stops at its own length
    loss = sequence_loss(logits, batch.targets, batch.mask)
    value = distributed.mean(loss, world)  # every rank sees the same value, so all skip or none
    skipped = False
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces the gradients here, as their mean over the ranks
        if config.optim.skip_above is not None:
            norm = gradient_norm(parameters)  # of the ranks' mean: the same on every rank
            skipped = bool(distributed.agree(
                int(outlier_gradient(norm, recent_norms or [], config.optim)), world))
            if recent_norms is not None:
                remember_norm(recent_norms, norm, config.optim.skip_window)
        if not skipped:
            clip_gradients(parameters, config.optim)
            optimizer.step()
    return value, skipped


def _interval_record(counters: dict[str, Any], config: RunConfig, lr: float) -> dict[str, Any]:
    """The record of the steps since the last one: cost, speed and learning rate."""
    elapsed = counters["seconds"] - counters["interval_start"]
    sequences = counters["interval_steps"] * config.train.batch_size * counters["world_size"]
    # Only a run that may skip updates says how many it did.
    skipped = ({} if config.optim.skip_above is None
               else {"skipped": counters["interval_skipped"]})
    return {"step": counters["step"], "sequences": counters["sequences"],
            "cost": counters["interval_cost"] / counters["interval_steps"],
            "seconds": round(counters["seconds"], 3),
            "sequences_per_second": round(sequences / elapsed, 2) if elapsed > 0 else None,
            "lr": lr, **skipped}


def _log(counters: dict[str, Any], config: RunConfig, validate, lr: float) -> dict[str, Any]:
    """One metrics record; resets the interval sums. Validation runs every ``val_every``."""
    record = _interval_record(counters, config, lr)
    counters["cost"] = record["cost"]
    if counters["step"] % config.train.val_every == 0:
        scores = validate()
        record.update({f"val_{key}": value for key, value in scores.items()})
    counters.update(interval_cost=0.0, interval_steps=0, interval_start=counters["seconds"],
                    interval_skipped=0)
    return record


def _final_record(counters: dict[str, Any], config: RunConfig, scores: dict[str, float],
                  lr: float) -> dict[str, Any]:
    """The record of a run's last step when it ends between two records: its cost covers the
    steps since the last record. The interval sums are kept, as saved in the checkpoint, so a
    resumed run (which drops this record) logs the whole interval as one that never stopped."""
    record = _interval_record(counters, config, lr)
    record.update({f"val_{key}": value for key, value in scores.items()})
    record["final"] = True
    return record


def _final_cost(path: Path) -> float | None:
    """The cost of the ``"final"`` record that ends ``metrics.jsonl``, if it ends with one."""
    records = parse_metrics(path)[0] if path.is_file() else []
    last = records[-1][1] if records else {}
    return last.get("cost") if last.get("final") else None


def _kept(last_checkpoint: int | None, out: Path) -> str:
    """What a stopped run keeps, for its error message."""
    if last_checkpoint is None:
        return "no checkpoint was saved yet"
    return f"the checkpoint of step {last_checkpoint} is kept in {out}"


def _check_resumable(config: RunConfig, out: Path) -> None:
    if not (out / STATE_FILE).is_file():
        raise RunDirError(f"{out} has no training state to resume ({STATE_FILE} is missing)")
    saved = read_config(out).to_dict()
    given = config.to_dict()
    for section, values in saved.items():
        for key, value in values.items():
            if key in _resumable(section):
                continue
            if given[section][key] != value:
                raise ConfigError(
                    f"cannot resume with {section}.{key}={given[section][key]!r}: the run in "
                    f"{out} has {value!r} (a resumed run may change only "
                    f"{', '.join(resumable_overrides())})")


def _resumable(section: str) -> tuple[str, ...]:
    return {"train": RESUMABLE_FIELDS, "optim": RESUMABLE_OPTIM_FIELDS}.get(section, ())


def resumable_overrides() -> list[str]:
    """The ``section.key`` names a resumed run may change (``--set`` with ``--resume``)."""
    return [f"{section}.{key}" for section in ("train", "optim") for key in _resumable(section)]


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the records logged after the checkpoint, and the record of where the last piece
    ended between two records: the resumed run logs them as one that never stopped. A last
    line torn by a crash is dropped with a warning; anything else malformed is a
    :class:`RunDirError`."""
    if not path.is_file():
        return
    records, torn = parse_metrics(path)
    if torn:
        warnings.warn(f"dropped the last line of {path}, cut short by the crash or failed write "
                      f"that ended the run ({len(torn.encode('utf-8'))} bytes, not a whole "
                      "record); the run resumes from its checkpoint", RuntimeWarning,
                      stacklevel=2)
    # A whole last record may lack its newline: the resumed run's first one must not join it.
    kept = [line if line.endswith("\n") else line + "\n" for line, record in records
            if record["step"] <= step and not record.get("final")]
    atomic_write_text(path, "".join(kept))


def _tensorboard(out: Path, enabled: bool, step: int):
    """A TensorBoard writer in ``out/tensorboard``, or None (with a warning if not installed)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed, so no TensorBoard logs are written "
                      "(pip install tensorboard)", RuntimeWarning, stacklevel=3)
        return None
    # purge_step drops events a crashed run logged after its last checkpoint.
    return SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=step or None)


# Signals that stop a run with a checkpoint: Ctrl-C, and what schedulers, `docker stop` and
# `kill` send (SLURM and Kubernetes send SIGTERM, then SIGKILL after a grace period).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """While active, a first Ctrl-C or SIGTERM sets the yielded event (the loop saves and stops
    after the current step, so no update is cut in half); a second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handling in previous.items():
            if handling is not None:  # None: a handler set from C, which cannot be put back
                signal.signal(number, handling)
