"""``ntm tune``: a search over config keys, each trial a few seeds, on Ray Tune.

A trial sets every key of the space (``--space optim.lr=loguniform:1e-4:1e-2``) and trains
``S`` seeds of it at once, each in its own ``ntm train`` process as a sweep does, into
``OUT/trialNNN/seedS``; a seed stops when a validation cost falls under the target. What the
search maximises is what a user of the recipe needs: the fraction of the seeds that solve the
task, then (among equal fractions) the fewest median training sequences to solve it; trials
that solve nothing rank by their median best validation cost (:func:`score`). Optuna's TPE
sampler proposes the values; ASHA stops trials whose median validation cost lags behind
others' at the same number of validations. The first trial takes the base config's own values
of the searched keys (the preset, with ``--set``), when they lie in the space, so that the
search is measured against it.

:func:`run_tune` writes ``OUT/trials.csv`` (one row per trial: its values, seeds solved,
median sequences to solve, best validation cost, whether ASHA stopped it, its run directories)
and ``OUT/best.json``, the best trial's whole config by dotted key, which ``ntm train --config
OUT/best.json`` trains. Ray Tune's own records go to ``OUT/ray``. Needs the ``cluster`` extra.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text
from .config import RunConfig, apply_overrides
from .config_file import dotted_config, write_config_file
from .errors import ConfigError, RunDirError
from .ray_sweep import INSTALL, POLL_SECONDS, _check_fits, _die_with_parent
from .sweep import LAUNCHER_VARIABLES, LOG_FILE, seed_command

__all__ = ["BEST_CONFIG_FILE", "DISTRIBUTIONS", "TRIALS_FILE", "Dimension", "TrialResult",
           "available", "best_trial", "check_new_search", "check_space", "parse_space",
           "run_tune", "score", "trials_table"]

TRIALS_FILE = "trials.csv"
BEST_CONFIG_FILE = "best.json"
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
STOP_SECONDS = 60.0  # for a stopped trial's seeds to save their checkpoints before they are killed
_NO_COST = 1e9  # the validation cost ASHA sees of a trial with none yet (a seed that failed)
# Keys a trial sets itself, or that choose the preset rather than tune it.
_NOT_SEARCHED = ("train.seed", "train.target_val_cost", "task.name", "model.kind", "task.module",
                 "model.module")


def available() -> str | None:
    """None if Ray Tune and Optuna can be imported, else what to install, in one line."""
    try:
        import optuna  # noqa: F401
        import ray.tune  # noqa: F401
    except ImportError as error:
        return f"ntm tune needs Ray Tune and Optuna ({error}); {INSTALL}"
    return None


@dataclass(frozen=True)
class Dimension:
    """One searched key: ``loguniform`` or ``uniform`` between ``low`` and ``high``, ``int``
    from ``low`` to ``high`` inclusive, or ``choice`` among ``choices`` (as ``--set`` spells
    them)."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def values(self) -> list[Any]:
        """The values that bound the dimension, each of which must be a valid setting."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return _spelled(value) in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.kind != "int" or value == int(value))

    def optuna(self) -> Any:
        """The Optuna distribution of the dimension."""
        from optuna import distributions

        if self.kind == "choice":
            return distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return distributions.IntDistribution(int(self.low), int(self.high))
        return distributions.FloatDistribution(self.low, self.high,
                                               log=self.kind == "loguniform")


def parse_space(items: Sequence[str]) -> list[Dimension]:
    """The dimensions of ``--space KEY=DIST`` items: ``loguniform:LO:HI``, ``uniform:LO:HI``,
    ``int:LO:HI`` or ``choice:A,B,C``.

    >>> parse_space(["optim.lr=loguniform:1e-4:1e-2", "train.batch_size=choice:16,32"])[1]
    Dimension(key='train.batch_size', kind='choice', low=0.0, high=0.0, choices=('16', '32'))

    Raises:
        ConfigError: malformed items, a key given twice or one the tune sets itself.
    """
    space: dict[str, Dimension] = {}
    for item in items:
        key, equals, text = (part.strip() for part in item.partition("="))
        kind, colon, rest = text.partition(":")
        if not equals or "." not in key or kind not in DISTRIBUTIONS or not colon:
            raise ConfigError(f"--space {item!r} must look like KEY=DIST with DIST one of "
                              "loguniform:LO:HI, uniform:LO:HI, int:LO:HI or choice:A,B,C "
                              "(e.g. optim.lr=loguniform:1e-4:1e-2)")
        if key in space or key in _NOT_SEARCHED:
            why = "is searched twice" if key in space else "is not a key to search"
            raise ConfigError(f"--space {item!r}: {key} {why}")
        space[key] = _dimension(item, key, kind, rest)
    if not space:
        raise ConfigError("give at least one --space KEY=DIST")
    return list(space.values())


def _dimension(item: str, key: str, kind: str, rest: str) -> Dimension:
    if kind == "choice":
        choices = tuple(choice.strip() for choice in rest.split(","))
        if not all(choices) or len(set(choices)) != len(choices):
            raise ConfigError(f"--space {item!r}: choices must be distinct and not empty")
        return Dimension(key, kind, choices=choices)
    bounds = rest.split(":")
    try:
        low, high = (int(b) if kind == "int" else float(b) for b in bounds) if len(bounds) == 2 \
            else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high) and low < high) or (
            kind == "loguniform" and low <= 0):
        positive = " above 0" if kind == "loguniform" else ""
        number = "integers" if kind == "int" else "numbers"
        raise ConfigError(f"--space {item!r}: {kind} takes two {number}{positive}, LO below HI "
                          f"({kind}:LO:HI)")
    return Dimension(key, kind, low, high)


def check_space(space: Sequence[Dimension], base: RunConfig) -> dict[str, Any] | None:
    """Check that every bound and choice of ``space`` is a valid setting of ``base``; returns
    ``base``'s own values of the keys, if every one lies in the space (the first trial's).

    Raises:
        ConfigError: an unknown key, or a bound or choice the key does not take.
    """
    for dimension in space:
        for value in dimension.values():
            try:
                apply_overrides(base, [f"{dimension.key}={value}"])
            except ConfigError as error:
                raise ConfigError(f"--space {dimension.key}: {error}") from None
    current = dotted_config(base)
    point = {d.key: _typed(d, current.get(d.key)) for d in space}
    return point if all(d.contains(current.get(d.key)) for d in space) else None


def _typed(dimension: Dimension, value: Any) -> Any:
    return _spelled(value) if dimension.kind == "choice" else value


def _spelled(value: Any) -> str:
    """A config value as ``--set`` (and so a choice) spells it: ``true``, ``null``, ``32``."""
    return value if isinstance(value, str) else json.dumps(value)


def score(solved: int, seeds: int, median_sequences: float | None, budget: int,
          median_cost: float | None) -> float:
    """What the search maximises: the fraction of seeds solved, then fewer median sequences to
    solve (a tie-break worth less than one more seed), and, when no seed solved, a lower
    median best validation cost (a score below 0).

    >>> score(2, 2, 8000, 16000, 0.05) > score(2, 2, 12000, 16000, 0.01) > score(1, 2, 10, 16000,
    ...     0.01) > 0 > score(0, 2, None, 16000, 3.0) > score(0, 2, None, 16000, 30.0)
    True
    """
    if solved:
        return solved / seeds + (1 - min(median_sequences / budget, 1)) / (seeds + 1)
    return -math.log10(1 + median_cost) if median_cost is not None else -10.0


@dataclass
class TrialResult:
    """One trial of a search, read back from its run directories.

    Attributes:
        number: its directory, ``OUT/trial<number>``.
        values: the searched keys' values.
        run_dirs: its seeds' run directories.
        solved: seeds whose validation cost fell under the target.
        median_sequences: the median training sequences to solve, over the seeds that did.
        best_cost: the lowest validation cost of any seed (bits per sequence).
        median_cost: the median over the seeds of their lowest validation cost.
        stopped_early: ASHA stopped it (or it did not end: an error, Ctrl-C).
        budget: the training sequences of one seed's whole run.
        error: why the trial failed, if it did.
    """

    number: int
    values: dict[str, Any]
    run_dirs: list[str] = field(default_factory=list)
    solved: int = 0
    median_sequences: float | None = None
    best_cost: float | None = None
    median_cost: float | None = None
    stopped_early: bool = False
    budget: int = 1
    error: str | None = None

    @property
    def seeds(self) -> int:
        return len(self.run_dirs)

    @property
    def score(self) -> float:
        return score(self.solved, max(self.seeds, 1), self.median_sequences, self.budget,
                     self.median_cost)


# -- reading the seeds' progress -------------------------------------------------------------


@dataclass
class _Progress:
    """What a seed's ``metrics.jsonl`` says so far: its validation costs in order, and the
    validation (counted from 1) and training sequences of the first one under the target."""

    costs: list[float] = field(default_factory=list)
    solved_at: int | None = None
    sequences_to_target: int | None = None


def _progress(folder: Path, target: float) -> _Progress:
    """The validations in ``folder/metrics.jsonl`` (a line still being written is skipped)."""
    progress = _Progress()
    try:
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return progress
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        cost = record.get("val_cost") if isinstance(record, dict) else None
        if isinstance(cost, (int, float)) and math.isfinite(cost):
            progress.costs.append(cost)
            if cost < target and progress.solved_at is None:
                progress.solved_at = len(progress.costs)
                progress.sequences_to_target = record.get("sequences")
    return progress


def _summary(progress: Sequence[_Progress], at: int | None = None) -> dict[str, Any]:
    """Counts over a trial's seeds, from each seed's first ``at`` validations (None: all)."""
    at = at or max((len(p.costs) for p in progress), default=0)
    needed = [p.sequences_to_target for p in progress
              if p.solved_at is not None and p.solved_at <= at]
    costs = [p.costs[:at] for p in progress]
    best = [min(c) for c in costs if c]
    latest = [c[-1] for c in costs if c]
    return {"solved": len(needed),
            "median_sequences": statistics.median(needed) if needed else None,
            "val_cost": statistics.median(latest) if latest else _NO_COST,
            "best_cost": min(best) if best else None,
            "median_cost": statistics.median(best) if best else None}


# -- one trial, in a Ray Tune actor ------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What every trial shares: the seeds' ``ntm train`` arguments, the seeds, the target,
    the search's directory (absolute) and the directory the seeds run in."""

    train_args: tuple[str, ...]
    seeds: tuple[int, ...]
    target: float
    out: str
    cwd: str
    steps: int
    batch_size: int

    def budget(self, values: dict[str, Any]) -> int:
        """The training sequences of one seed's whole run with the trial's ``values``."""
        steps = int(values.get("train.steps", self.steps))
        return max(steps * int(values.get("train.batch_size", self.batch_size)), 1)


def _trial(config: dict[str, Any], plan: _Plan) -> None:
    """Train the seeds of one trial at once and report, after each round of validations that
    every running seed has done, the median of their latest validation costs (for ASHA) and
    the score so far (for the sampler); then the final counts."""
    from ray import tune

    trial_dir = _trial_dir(Path(plan.out), tune.get_context().get_trial_name())
    settings = [item for key, value in config.items() for item in ("--set", f"{key}={value}")]
    args = [*plan.train_args, *settings, "--set", f"train.target_val_cost={plan.target!r}"]
    folders = [trial_dir / f"seed{seed}" for seed in plan.seeds]
    processes = [_start(seed, folder, args, plan.cwd) for seed, folder in zip(plan.seeds, folders,
                                                                             strict=True)]
    budget, reported = plan.budget(config), 0

    def report(at: int | None, finished: bool) -> None:
        counts = _summary(progress, at)
        counts["score"] = score(counts["solved"], len(folders), counts["median_sequences"],
                                budget, counts["median_cost"])
        tune.report({key: value for key, value in counts.items() if value is not None}
                    | {"trial_dir": str(trial_dir), "finished": finished})

    try:
        while True:
            running = [process is not None and process.poll() is None for process in processes]
            progress = [_progress(folder, plan.target) for folder in folders]
            rounds = [len(p.costs) for p, alive in zip(progress, running, strict=True) if alive]
            while reported < (min(rounds) if rounds else 0):
                reported += 1
                report(reported, finished=False)
            if not rounds:
                break
            time.sleep(4 * POLL_SECONDS)
        report(None, finished=True)
    finally:
        _stop(processes)


def _trial_name(trial: Any) -> str:
    """``trialNNN``, the name of a trial (Ray Tune's ``trial_name_creator``): its number in the
    order the sampler proposed it, which its experiment tag begins with (``3_optim.lr=...``),
    so that trial 1 is the first point proposed (the preset's values)."""
    number = str(trial.experiment_tag).partition("_")[0]
    return f"trial{int(number):03d}" if number.isdigit() else f"trial_{trial.trial_id}"


def _trial_dir(out: Path, name: str) -> Path:
    """``out/name`` for a trial named by :func:`_trial_name`, else a new ``out/trialNNN``."""
    if name.startswith("trial") and name.removeprefix("trial").isdigit():
        path = out / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return _new_trial_dir(out)


def _new_trial_dir(out: Path) -> Path:
    """``out/trialNNN`` with the lowest free number, made atomically (trials start at once)."""
    number = 1
    while True:
        path = out / f"trial{number:03d}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            number += 1


def _start(seed: int, folder: Path, train_args: Sequence[str],
           cwd: str) -> subprocess.Popen | None:
    """Start one seed's ``ntm train`` (None if it cannot start: its log says why)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in LAUNCHER_VARIABLES}
    environment["OMP_NUM_THREADS"] = "1"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOG_FILE, "w", encoding="utf-8") as log:
        try:
            return subprocess.Popen(seed_command(seed, folder, train_args), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=environment, cwd=cwd if os.path.isdir(cwd) else None,
                                    preexec_fn=_die_with_parent, start_new_session=True)
        except OSError as error:
            log.write(f"could not start ntm train: {error}\n")
            return None


def _stop(processes: Sequence[subprocess.Popen | None]) -> None:
    """Stop the seeds still training: SIGINT (each saves a checkpoint), then kill."""
    alive = [process for process in processes if process is not None and process.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    for process in alive:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the search, on the driver -----------------------------------------------------------------


def run_tune(
    train_args: Sequence[str],
    space: Sequence[Dimension],
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    trials: int,
    base: RunConfig,
    target: float = 0.1,
    threads: int = 1,
    gpus: int = 0,
    sampler_seed: int = 0,
    report: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Search ``space`` with ``trials`` trials of ``seeds`` each, on the Ray that is connected
    (:func:`ntm.training.ray_sweep.connect`); write ``trials.csv`` and ``best.json``.

    Args:
        train_args: TASK and the ``ntm train`` options every seed shares (as for a sweep).
        space: the searched keys (:func:`parse_space`).
        seeds: every trial trains these seeds, at once, on one node.
        out_dir: where the trials' run directories, ``trials.csv`` and ``best.json`` go.
        trials: how many trials.
        base: the config ``train_args`` make (the preset and ``--set``): the space is checked
            against it and ``best.json`` is it with the best trial's values.
        target: the validation cost (bits per sequence) under which a seed has solved the task.
        threads, gpus: what each seed asks for (``train.threads``; 1 for ``train.device=cuda``).
        sampler_seed: the seed of the TPE sampler.
        report: called with each trial's result as it ends.

    Returns:
        The trials in the order they started.

    Raises:
        ConfigError: a bound or choice of ``space`` that ``base`` does not take, or seeds that
            no node has the CPUs (or GPUs) for.
        RunDirError: ``out_dir`` already holds a search.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # its tables print even at verbose=0
    out = Path(out_dir)
    check_new_search(out)
    first = check_space(space, base)
    _check_fits(len(seeds) * threads, len(seeds) * gpus)
    plan = _Plan(tuple(train_args), tuple(seeds), target, str(out.resolve()), os.getcwd(),
                 base.train.steps, base.train.batch_size)
    tuner = _tuner(plan, {"cpu": len(seeds) * threads, "gpu": len(seeds) * gpus},
                   search_alg=_sampler(space, first, trials, sampler_seed),
                   scheduler=_asha(space, base), trials=trials,
                   callback=_callback(plan, out, report))
    results = sorted((_trial_result(result, plan, out) for result in tuner.fit()),
                     key=lambda trial: trial.number)
    _write_search(out, results, space, base)
    return results


def _tuner(plan: _Plan, resources: dict[str, int], *, search_alg: Any, scheduler: Any,
           trials: int, callback: Any) -> Any:
    """A Ray Tune ``Tuner`` of ``trials`` trials of :func:`_trial`, each holding
    ``resources``, as many at a time as the cluster's CPUs hold; its records in ``OUT/ray``."""
    import ray
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_trial, plan=plan), resources)
    room = int(ray.cluster_resources().get("CPU", 1) // max(resources["cpu"], 1))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=trials, max_concurrent_trials=max(room, 1),
                                    trial_name_creator=_trial_name),
        run_config=tune.RunConfig(name="ray", storage_path=plan.out, verbose=0,
                                  callbacks=[callback]),
    )


def _write_search(out: Path, results: Sequence[TrialResult], space: Sequence[Dimension],
                  base: RunConfig) -> None:
    """``trials.csv``, and ``best.json``: ``base`` with the best trial's values (if one ran)."""
    _write_trials(out / TRIALS_FILE, results, space)
    best = best_trial(results)
    if best is not None:
        config = apply_overrides(base, [f"{key}={value}" for key, value in best.values.items()])
        write_config_file(out / BEST_CONFIG_FILE, dotted_config(
            config, first=tuple(d.key for d in space), leave_out=("train.seed",)))


def best_trial(results: Sequence[TrialResult]) -> TrialResult | None:
    """The trial of the highest :func:`score` (the first of equal ones); None if none ran."""
    ran = [result for result in results if result.seeds and result.error is None]
    return max(ran, key=lambda result: result.score) if ran else None


def check_new_search(out: str | os.PathLike[str]) -> None:
    """Refuse an ``out`` that already holds a search (:class:`RunDirError`)."""
    out = Path(out)
    if (out / TRIALS_FILE).exists() or any(out.glob("trial[0-9]*")):
        raise RunDirError(f"{out} already holds a search; choose another --out")


def _sampler(space: Sequence[Dimension], first: dict[str, Any] | None, trials: int,
             seed: int) -> Any:
    """Optuna's TPE sampler over ``space``, maximising the score; ``first`` is tried first.
    TPE models the trials so far once a few have ended (a third, at least 2, at most 10)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed,
                                         n_startup_trials=min(10, max(2, trials // 3)))
    return OptunaSearch(space={d.key: d.optuna() for d in space}, metric="score", mode="max",
                        points_to_evaluate=[first] if first else None, sampler=sampler)


def _asha(space: Sequence[Dimension], base: RunConfig) -> Any:
    """ASHA on the median validation cost, one rung unit per round of validations: a trial
    runs a quarter of its validations before it can be stopped, and half the trials at each
    rung go on."""
    from ray.tune.schedulers import ASHAScheduler

    steps = max([base.train.steps] + [int(d.high) for d in space if d.key == "train.steps"])
    rounds = steps // base.train.val_every + 2  # and the final model's, and the final report
    return ASHAScheduler(time_attr="training_iteration", metric="val_cost", mode="min",
                         max_t=rounds, grace_period=max(1, rounds // 4), reduction_factor=2)


def _trial_result(result: Any, plan: _Plan, out: Path) -> TrialResult:
    """A trial's row, read from its run directories (its last report names them)."""
    metrics = result.metrics or {}
    values = dict(result.config or {})
    error = None if result.error is None else " ".join(str(result.error).split())[-300:]
    if "trial_dir" not in metrics:
        return TrialResult(0, values, error=error or "the trial reported nothing")
    name = Path(metrics["trial_dir"]).name
    folders = [Path(plan.out) / name / f"seed{seed}" for seed in plan.seeds]
    counts = _summary([_progress(folder, plan.target) for folder in folders])
    return TrialResult(int(name.removeprefix("trial")), values,
                       [str(out / name / f"seed{seed}") for seed in plan.seeds],
                       counts["solved"], counts["median_sequences"], counts["best_cost"],
                       counts["median_cost"], stopped_early=not metrics.get("finished"),
                       budget=plan.budget(values), error=error)


def _callback(plan: _Plan, out: Path, report: Callable[[TrialResult], None] | None) -> Any:
    """A Ray Tune callback that calls ``report`` with each trial's result as it ends."""
    from ray import tune

    class Ended(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if report is not None:
                report(_trial_result(_Ended(trial.last_result, trial.config), plan, out))

        def on_trial_error(self, iteration, trials, trial, **info):
            if report is not None:
                report(_trial_result(_Ended(trial.last_result, trial.config, "failed"), plan,
                                     out))

    return Ended()


@dataclass
class _Ended:
    """What :func:`_trial_result` reads of a Ray Tune result, from a trial as it ends."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    error: str | None = None


def trials_table(results: Sequence[TrialResult], space: Sequence[Dimension],
                 target: float) -> str:
    """The trials as text, best first."""
    keys = [d.key for d in space]
    header = ["trial", *keys, "solved", f"median sequences to {target:g}", "best cost", "ended"]
    order = sorted(results, key=lambda r: (-r.score, r.number))
    rows = [[str(r.number), *(_value(r.values.get(k)) for k in keys), f"{r.solved}/{r.seeds}",
             _value(r.median_sequences), _value(r.best_cost),
             "error" if r.error else "stopped early" if r.stopped_early else "finished"]
            for r in order]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_trials(path: Path, results: Sequence[TrialResult], space: Sequence[Dimension]) -> None:
    """``trials.csv``: one row per trial, in the order they started."""
    keys = [d.key for d in space]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["trial", *keys, "seeds", "seeds_solved", "median_sequences_to_target",
                     "best_cost", "median_best_cost", "stopped_early", "score", "run_dirs",
                     "error"])
    for r in results:
        writer.writerow([r.number, *(r.values.get(k, "") for k in keys), r.seeds, r.solved,
                         "" if r.median_sequences is None else r.median_sequences,
                         "" if r.best_cost is None else r.best_cost,
                         "" if r.median_cost is None else r.median_cost,
                         r.stopped_early, f"{r.score:.6g}", " ".join(r.run_dirs), r.error or ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text.getvalue())
