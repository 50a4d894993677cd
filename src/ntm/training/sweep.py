"""Several seeds of one run at once: one ``ntm train`` process per seed, then a summary.

A sweep writes ``OUT/seed<S>/`` for every seed ``S`` (a run directory, plus ``train.log``, the
output of its ``ntm train``) and ``OUT/summary.json``. A run converges when a validation's
cost falls under the target (bits per sequence); the summary gives, per seed, the training
sequences it needed to get there, and for the sweep the fraction of seeds that converged and
the median of those sequences. Seeds run in separate processes, each with one thread, so that
they neither share an interpreter nor compete for the cores (``--set train.threads=N`` in
``train_args`` overrides that).

A sweep into a directory that already holds a summary adds its seeds to it: the summary then
lists the earlier seeds and the new ones, sorted by seed, and its counts are over all of them.
Only seeds of the same sweep are added (the same ``train_args`` and target), so that the
counts compare like with like.

The seeds run here, one process each, unless ``run_sweep`` is given a ``cluster``: then each
seed's ``ntm train`` runs in a Ray task (:mod:`ntm.training.ray_sweep`), with the same run
directories, summary and table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from .checkpoint import CONFIG_FILE, METRICS_FILE, STATE_FILE, atomic_write_text, read_counters
from .config import SEED_LIMIT
from .errors import ConfigError, RunDirError
from .evaluate import read_metrics
from .reliability import reliability

__all__ = ["LAUNCHER_VARIABLES", "LOG_FILE", "MAX_SEEDS", "SUMMARY_FILE", "SeedRun", "SeedRunner",
           "check_sweep", "cpu_cores", "parse_seeds", "read_summary", "run_sweep",
           "seed_command", "seed_result", "summarize", "sweep_table"]

SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
MAX_SEEDS = 10_000  # a typo such as 1-1000000 should be an error, not a million processes
# torchrun's variables: a sweep started inside a distributed job still trains each seed alone.
LAUNCHER_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                       "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system reports one)."""
    if hasattr(os, "sched_getaffinity"):  # Linux: what taskset, cgroups or a scheduler allow
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def parse_seeds(text: str) -> list[int]:
    """The seeds in ``text``: comma-separated seeds and inclusive ranges, e.g. ``1-3,7``.

    Returns them in the order given, each once.

    Raises:
        ConfigError: malformed text, a negative seed, a decreasing range, or more than
            :data:`MAX_SEEDS` seeds.

    >>> parse_seeds("1-3,7"), parse_seeds("5,1,5")
    ([1, 2, 3, 7], [5, 1])
    """
    seeds: dict[int, None] = {}  # ordered and without repeats
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ConfigError(f"seeds must look like 1-10, 1,3,5 or 1-3,7; got {text!r}") from None
        if low < 0 or high < low:
            raise ConfigError(f"seed range {part.strip()!r} must go up from a seed of at least 0")
        if high >= SEED_LIMIT:
            raise ConfigError(f"seeds must be less than {SEED_LIMIT}, got {high}")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ConfigError(f"a sweep takes at most {MAX_SEEDS} seeds; got {text!r}")
        seeds.update(dict.fromkeys(range(low, high + 1)))
    return list(seeds)


@dataclass
class SeedRun:
    """How one seed of a sweep ended.

    Attributes:
        seed: the run's ``train.seed``.
        out_dir: its run directory (with ``train.log``, the output of ``ntm train``).
        returncode: the exit status of ``ntm train``: 0 finished, 2 an error, 130 interrupted;
            None if it could not be started (``error`` says why).
        steps, sequences: training done, as checkpointed (None without a checkpoint).
        val_cost: the final model's validation cost in bits per sequence (None if unknown).
        sequences_to_target: the training sequences seen at the first validation under the
            target, or None if none was.
        error: the last line of ``train.log`` when ``ntm train`` failed.
        seconds_to_target: the training seconds at that first validation under the target.
        collapses: how many times the run collapsed (spiked) after it had learned, by the
            measure of :mod:`ntm.training.reliability` (None without validations).
        solved_at_end: whether its last validation is under the target: it stayed solved.
        collapses_in_opening: how many of those collapses came during an opening
            (``task.opening``; the run's, or that of an attempt after a restart), when it
            validates on the task but trains on other data.
        restarts: how many times the run started again from fresh weights
            (``train.restart_after``).
        rewinds: how many times the run went back to its best validation after a spike
            (``train.rewind_above``).
    """

    seed: int
    out_dir: str
    returncode: int | None
    steps: int | None = None
    sequences: int | None = None
    val_cost: float | None = None
    sequences_to_target: int | None = None
    error: str | None = None
    seconds_to_target: float | None = None
    collapses: int | None = None
    solved_at_end: bool | None = None
    collapses_in_opening: int | None = None
    restarts: int | None = None
    rewinds: int | None = None

    @property
    def finished(self) -> bool:
        """Whether ``ntm train`` ran to its end (steps, target or time limit)."""
        return self.returncode == 0

    @property
    def converged(self) -> bool:
        """Whether a validation cost fell under the sweep's target."""
        return self.sequences_to_target is not None


class SeedRunner(Protocol):
    """Trains the seeds of a sweep somewhere else (a Ray cluster: :mod:`ntm.training.ray_sweep`).

    ``train_seeds`` trains every seed of ``folders`` (seed -> its run directory, none holding a
    run) with ``train_args``, calls ``report`` with each seed's result as it ends, and returns
    the results by seed. A seed that fails is a result, not an exception; on Ctrl-C it stops
    every seed with a checkpoint, then raises KeyboardInterrupt.
    """

    def train_seeds(self, folders: dict[int, Path], train_args: Sequence[str], target: float,
                    *, jobs: int | None,
                    report: Callable[[SeedRun], None] | None) -> dict[int, SeedRun]: ...


def run_sweep(
    train_args: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    target: float = 0.1,
    report: Callable[[SeedRun], None] | None = None,
    cluster: SeedRunner | None = None,
) -> list[SeedRun]:
    """Train every seed in its own ``python -m ntm train`` process, then write the summary.

    Each seed runs ``python -m ntm train --set train.threads=1 *train_args --seed S --out
    OUT/seedS --no-progress`` in the current directory, its output going to
    ``OUT/seedS/train.log``. A failed seed is recorded, not raised. If ``OUT/summary.json``
    exists (an earlier sweep into ``OUT``), these seeds are added to it: it keeps the earlier
    seeds (a seed run again, which can only be one whose directory holds no run, takes the
    new result), lists them all sorted by seed, and counts over all of them.

    Args:
        train_args: the task and the options of ``ntm train`` that every seed shares.
        seeds: the seeds to train.
        out_dir: the parent of the run directories; ``summary.json`` goes here.
        jobs: processes at a time; None means one per CPU core (with a ``cluster``: as many
            as its resources allow).
        target: the validation cost, in bits per sequence, that counts as converged.
        report: called with each seed's result as it ends, in the calling thread.
        cluster: where the seeds train instead of local processes, e.g.
            :class:`ntm.training.ray_sweep.RayCluster`.

    Returns:
        The runs in the order of ``seeds`` (this sweep's only; :func:`read_summary` gives all).

    Raises:
        RunDirError: a seed's run directory already holds a run, or ``OUT/summary.json`` is
            corrupt or summarises a sweep with other ``train_args`` or ``target`` (nothing is
            started then).
    """
    out = Path(out_dir)
    folders = {seed: out / f"seed{seed}" for seed in seeds}
    earlier = check_sweep(train_args, seeds, out, target)
    if cluster is None:
        runs = _train_seeds(folders, train_args, target, jobs, report)
    else:
        runs = cluster.train_seeds(folders, train_args, target, jobs=jobs, report=report)
    every = {run.seed: run for run in (earlier["runs"] if earlier else [])}
    every.update(runs)  # a seed run again takes its new result
    _write_summary(out, train_args, target, sorted(every.values(), key=lambda run: run.seed))
    return [runs[seed] for seed in seeds]


def check_sweep(train_args: Sequence[str], seeds: Iterable[int], out_dir: str | os.PathLike[str],
                target: float) -> dict[str, Any] | None:
    """Check, before anything starts, that :func:`run_sweep` may train ``seeds`` into
    ``out_dir``: no seed's folder holds a run, and a summary there is of the same sweep.
    Returns that summary (:func:`read_summary`; None if there is none).

    Raises:
        RunDirError: as :func:`run_sweep` does.
    """
    out = Path(out_dir)
    for folder in (out / f"seed{seed}" for seed in seeds):
        if (folder / STATE_FILE).exists() or (folder / METRICS_FILE).exists():
            raise RunDirError(f"{folder} already holds a run; choose another output directory")
    earlier = read_summary(out)
    if earlier is not None:
        _check_same_sweep(earlier, out / SUMMARY_FILE, train_args, target)
    return earlier


def _train_seeds(folders: dict[int, Path], train_args: Sequence[str], target: float,
                 jobs: int | None, report: Callable[[SeedRun], None] | None) -> dict[int, SeedRun]:
    """Train every seed of ``folders`` in its own process, at most ``jobs`` at a time."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in LAUNCHER_VARIABLES}
    environment["OMP_NUM_THREADS"] = "1"  # also the threads torch starts before train() runs
    workers = min(jobs or cpu_cores(), len(folders)) or 1
    runs: dict[int, SeedRun] = {}
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = {pool.submit(_run_seed, seed, folder, train_args, environment, target): seed
                   for seed, folder in folders.items()}
        for future in as_completed(pending):
            run = runs[pending[future]] = future.result()
            if report is not None:
                report(run)
    finally:
        # On Ctrl-C the running seeds get the signal too and checkpoint; start no more.
        pool.shutdown(wait=True, cancel_futures=True)
    return runs


def _write_summary(out: Path, train_args: Sequence[str], target: float,
                   runs: Sequence[SeedRun]) -> None:
    """Write ``out/summary.json``: the sweep's options, its counts and every seed's run."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"train_args": list(train_args), "target": target, **summarize(runs),
               "runs": [{**asdict(run), "finished": run.finished, "converged": run.converged}
                        for run in runs]}
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


# The type of every SeedRun field in summary.json (bool is an int to Python: refused apart).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "seed": (int,), "out_dir": (str,), "returncode": (int, type(None)),
    "steps": (int, type(None)), "sequences": (int, type(None)),
    "val_cost": (int, float, type(None)), "sequences_to_target": (int, type(None)),
    "error": (str, type(None)), "seconds_to_target": (int, float, type(None)),
    "collapses": (int, type(None)), "solved_at_end": (bool, type(None)),
    "collapses_in_opening": (int, type(None)), "restarts": (int, type(None)),
    "rewinds": (int, type(None)),
}


def read_summary(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``summary.json`` of the sweep in ``out_dir``, checked; None if there is none.

    Returns:
        ``{"train_args": [...], "target": float, "runs": [SeedRun, ...]}`` (the counts are
        left out: :func:`summarize` recomputes them from the runs).

    Raises:
        RunDirError: the file cannot be read or is not a summary written by :func:`run_sweep`.
    """
    path = Path(out_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return _parse_summary(summary)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # JSONDecodeError: ValueError
        raise RunDirError(f"{path} is corrupt ({error}); repair or remove it, or choose "
                          "another output directory") from None


def _parse_summary(summary: Any) -> dict[str, Any]:
    """The checked contents of a summary; ValueError says what is wrong."""
    if not isinstance(summary, dict):
        raise ValueError(f"expected a JSON object, got {type(summary).__name__}")
    for key, kinds in (("train_args", list), ("target", (int, float)), ("runs", list)):
        if isinstance(summary.get(key), bool) or not isinstance(summary.get(key), kinds):
            raise ValueError(f"{key!r} is missing or of the wrong type")
    if not all(isinstance(arg, str) for arg in summary["train_args"]):
        raise ValueError("'train_args' must hold strings")
    runs = []
    for number, entry in enumerate(summary["runs"]):
        if not isinstance(entry, dict):
            raise ValueError(f"runs[{number}] is not a JSON object")
        values = {field.name: entry.get(field.name, field.default) for field in fields(SeedRun)}
        for name, value in values.items():
            kinds = _FIELD_TYPES[name]
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                raise ValueError(f"runs[{number}].{name} is missing or of the wrong type")
        runs.append(SeedRun(**values))
    if len({run.seed for run in runs}) != len(runs):
        raise ValueError("a seed is listed twice")
    return {"train_args": summary["train_args"], "target": float(summary["target"]),
            "runs": runs}


def _check_same_sweep(earlier: dict[str, Any], path: Path, train_args: Sequence[str],
                      target: float) -> None:
    """Refuse to add seeds to a summary of a sweep with other options: its counts would mix
    them."""
    if earlier["target"] != target:
        raise RunDirError(f"{path} counts seeds converged under a target of "
                          f"{earlier['target']:g}, not {target:g}; sweep with that target to "
                          "add seeds to it, or choose another output directory")
    if earlier["train_args"] != list(train_args):
        raise RunDirError(f"{path} summarises seeds trained with {' '.join(earlier['train_args'])}"
                          f", not {' '.join(train_args)}; sweep with those options to add seeds "
                          "to it, or choose another output directory")


def summarize(runs: Sequence[SeedRun]) -> dict[str, Any]:
    """Counts over a sweep: ``seeds``, ``finished``, ``converged``, ``converged_fraction``
    (of all seeds, failed ones included), ``median_sequences_to_target`` (over the seeds
    that converged; None if none did), ``solved_at_end`` (seeds whose last validation is
    under the target), ``collapsed`` (seeds that collapsed at least once), ``collapses``
    (in all), ``collapses_in_opening`` (of those, the ones during an opening) and
    ``restarts`` (from fresh weights, in all) and ``rewinds`` (after a spike, in all)."""
    needed = [run.sequences_to_target for run in runs if run.converged]
    return {"seeds": len(runs), "finished": sum(run.finished for run in runs),
            "converged": len(needed),
            "converged_fraction": len(needed) / len(runs) if runs else 0.0,
            "median_sequences_to_target": statistics.median(needed) if needed else None,
            "solved_at_end": sum(bool(run.solved_at_end) for run in runs),
            "collapsed": sum(bool(run.collapses) for run in runs),
            "collapses": sum(run.collapses or 0 for run in runs),
            "collapses_in_opening": sum(run.collapses_in_opening or 0 for run in runs),
            "restarts": sum(run.restarts or 0 for run in runs),
            "rewinds": sum(run.rewinds or 0 for run in runs)}


def sweep_table(runs: Sequence[SeedRun], target: float) -> str:
    """The summary of a sweep as text: one row per seed, then the totals and any failures."""
    header = ("seed", "status", "steps", "sequences", "val_cost", "converged",
              f"sequences to {target:g}", "seconds", "collapses", "solved at end")
    cells = [header] + [
        (str(run.seed), _status(run),
         _cell(run.steps), _cell(run.sequences),
         "-" if run.val_cost is None else f"{run.val_cost:.3f}",
         "yes" if run.converged else "no",
         _cell(run.sequences_to_target) + (f" ({run.restarts} restarts)" if run.restarts else ""),
         "-" if run.seconds_to_target is None else f"{run.seconds_to_target:.1f}",
         _cell(run.collapses) + (f" ({run.collapses_in_opening} in opening)"
                                 if run.collapses_in_opening else "")
         + (f" ({run.rewinds} rewinds)" if run.rewinds else ""),
         "-" if run.solved_at_end is None else ("yes" if run.solved_at_end else "no"))
        for run in runs
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i in (1, 5) else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    totals = summarize(runs)
    median = totals["median_sequences_to_target"]
    lines.append(f"Converged: {totals['converged']} of {totals['seeds']} seeds "
                 f"({totals['converged_fraction']:.0%}) under {target:g} bits per sequence; "
                 f"median sequences to converge: {'-' if median is None else f'{median:.12g}'}.")
    lines.append(f"Stayed solved to the end: {totals['solved_at_end']} of {totals['seeds']}; "
                 f"collapsed after learning: {totals['collapsed']} seed(s), "
                 f"{totals['collapses']} collapse(s) in all"
                 + (f", {totals['collapses_in_opening']} of them in an opening (task.opening)"
                    if totals["collapses_in_opening"] else "")
                 + (f"; {totals['restarts']} restart(s) from fresh weights (train.restart_after)"
                    if totals["restarts"] else "")
                 + (f"; {totals['rewinds']} rewind(s) after a spike (train.rewind_above)"
                    if totals["rewinds"] else "") + ".")
    lines += [f"Seed {run.seed} failed: {run.error or 'no output'}"
              + ("" if run.returncode is None else f" (log: {Path(run.out_dir) / LOG_FILE})")
              for run in runs if not run.finished]
    return "\n".join(lines)


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _status(run: SeedRun) -> str:
    if run.finished:
        return "finished"
    return "not started" if run.returncode is None else f"failed ({run.returncode})"


def seed_command(seed: int, folder: Path, train_args: Sequence[str]) -> list[str]:
    """The ``ntm train`` command line of one seed of a sweep: one thread unless ``train_args``
    set ``train.threads``, output to ``folder``."""
    return [sys.executable, "-m", "ntm", "train", "--set", "train.threads=1", *train_args,
            "--seed", str(seed), "--out", str(folder), "--no-progress"]


def _run_seed(seed: int, folder: Path, train_args: Sequence[str], environment: dict[str, str],
              target: float) -> SeedRun:
    """Train one seed in a child process and read back how it went."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG_FILE, "w", encoding="utf-8") as log:
            returncode = subprocess.run(seed_command(seed, folder, train_args), stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=environment).returncode
    except OSError as error:  # no log or no process: this seed fails, the others go on
        return SeedRun(seed, str(folder), None, error=f"could not start ntm train: {error}")
    return seed_result(seed, folder, returncode, target)


def seed_result(seed: int, folder: Path, returncode: int, target: float, *,
                where: Path | None = None) -> SeedRun:
    """How the ``ntm train`` of ``seed`` into ``folder`` ended with ``returncode``: its error
    (the last line of its log), steps, sequences, costs and sequences to ``target``, read
    from ``where`` (default: ``folder``; where ``folder`` is relative to another directory)."""
    where = folder if where is None else where
    run = SeedRun(seed, str(folder), returncode)
    if returncode != 0:
        lines = (where / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        run.error = next((line.strip() for line in reversed(lines) if line.strip()), None)
    try:
        _read_results(run, where, target)
    except (RunDirError, ConfigError, OSError, KeyError, ValueError) as error:
        if run.finished:  # a finished run whose files cannot be read is a failure too
            run.returncode, run.error = 1, f"cannot read the run: {error}"
    return run


def _opening(folder: Path) -> int | None:
    """The training sequences of the opening of the run in ``folder`` (``task.opening``), or
    None: none, or no readable config."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        opening = config["task"]["opening"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return opening if isinstance(opening, int) and not isinstance(opening, bool) else None


def _read_results(run: SeedRun, folder: Path, target: float) -> None:
    """Fill ``run`` from the state file's counters and the validations in metrics.jsonl."""
    if not (folder / STATE_FILE).is_file():
        return
    counters = read_counters(folder / STATE_FILE)
    run.steps, run.sequences = counters["step"], counters["sequences"]
    records = read_metrics(folder) if (folder / METRICS_FILE).is_file() else []
    measured = reliability(records, target, opening=_opening(folder))
    run.sequences_to_target = measured.first_solved_sequences
    if measured.validations:
        run.seconds_to_target = measured.first_solved_seconds
        run.collapses, run.solved_at_end = measured.collapses, measured.solved
        run.collapses_in_opening = measured.collapses_in_opening
        run.restarts, run.rewinds = measured.restarts, measured.rewinds
    if counters.get("val_step") == counters["step"]:
        run.val_cost = counters["val_cost"]
