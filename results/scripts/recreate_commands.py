"""The `ntm train` (or `ntm sweep`) command that recreates a run directory, from its files.

Training runs are not kept in the repository; RESULTS.md gives, for each run it cites, the
command this script prints for it, so that anyone can train it again (seeded: the same metrics
on the same kind of device and backend; another one rounds differently, and training amplifies
the difference).

    python results/scripts/recreate_commands.py RUN_DIR [RUN_DIR ...] [--out-root runs]

For a run directory: the preset (fast or paper) that needs the fewest ``--set`` overrides,
those overrides, ``--model``, ``--seed``, ``--init`` and ``--steps``. A run with a time limit
(``train.max_seconds``), or without a target that stops it, is given the step it reached
(that of its checkpoint, else the last its train.log reports, else its last record's) and no
time limit, since a time limit would stop the recreated run somewhere else. For a sweep
directory (one with a summary.json): the ``ntm sweep`` command of its seeds. The recreated run
goes to ``OUT_ROOT/NAME`` (``NAME/seedS`` for a seed of a sweep), and an ``--init`` that names
a run under ``results/`` is rewritten to point there too.

Lines starting with ``#`` warn where one command cannot recreate the run: its metrics.jsonl
shows learning rates that its config's schedule does not give (the run was resumed with
another one; recreate it in pieces with ``ntm train --resume DIR --set optim....``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ntm.training import (
    PRESETS,
    RunConfig,
    preset_config,
    read_config,
    read_metrics,
    read_summary,
    scheduled_lr,
)
from ntm.training.checkpoint import STATE_FILE, read_counters

# Where the runs RESULTS.md cites lay before they left git: an --init naming one is rewritten.
_RESULTS_RUN = re.compile(r"^(?:\./)?results/(?:checkpoints|recipes|reliability)/(?P<rest>.+)$")


def run_name(run: Path) -> str:
    """``NAME``, or ``NAME/seedS`` for a seed's run inside a sweep's directory."""
    return f"{run.parent.name}/{run.name}" if re.fullmatch(r"seed\d+", run.name) else run.name


def reached_step(run: Path) -> int:
    """The last step the run trained: its checkpoint's, else the last that its ``train.log``
    (the output of ``ntm train``) reports, else that of its last record."""
    if (run / STATE_FILE).is_file():
        return read_counters(run / STATE_FILE)["step"]
    log = run / "train.log"
    reported = re.findall(r"^Step (\d+) ", log.read_text(encoding="utf-8"), re.MULTILINE) \
        if log.is_file() else []
    if reported:
        return int(reported[-1])
    records = read_metrics(run)
    return records[-1]["step"] if records else 0


def overrides(config: RunConfig) -> tuple[str, list[str]]:
    """The preset closest to ``config`` and the ``section.key=value`` overrides from it."""
    saved, best = config.to_dict(), None
    for preset in PRESETS:
        base = preset_config(config.task.name, config.model.kind, preset).to_dict()
        changed = [f"{section}.{key}={_value(value)}" for section, values in saved.items()
                   if section != "task" for key, value in values.items()
                   if base[section][key] != value]
        params = saved["task"]["params"]  # the preset's are empty: the task's defaults
        changed += [f"task.{key}={value if isinstance(value, str) else json.dumps(value)}"
                    for key, value in params.items()]
        if best is None or len(changed) < len(best[1]):
            best = (preset, changed)
    return best


def train_command(run: Path, out_root: str = "runs") -> str:
    """The ``ntm train`` command that recreates the run in ``run``."""
    config = read_config(run)
    preset, changed = overrides(config)
    train = config.train
    if train.max_seconds is not None or train.target_val_cost is None:
        steps = reached_step(run)  # a time limit would stop the recreated run elsewhere
    else:
        steps = train.steps  # it stops by its target at the same step
    skipped = ("train.steps", "train.seed", "train.init", "train.max_seconds")
    sets = [item for item in changed if item.split("=", 1)[0] not in skipped]
    words = ["ntm", "train", config.task.name]
    if config.model.kind != "ntm-lstm":
        words += ["--model", config.model.kind]
    if preset != "fast":
        words += ["--preset", preset]
    if train.init is not None:
        words += ["--init", recreated_path(train.init, out_root)]
    words += ["--seed", str(train.seed), "--steps", str(steps)]
    for item in sets:
        words += ["--set", item]
    if config.task.module is not None:
        words += ["--task-module", config.task.module]
    return " ".join(words + ["--out", f"{out_root}/{run_name(run)}"])


def sweep_command(sweep: Path, out_root: str = "runs") -> str:
    """The ``ntm sweep`` command that recreates the seeds summarised in ``sweep``."""
    summary = read_summary(sweep)
    seeds = ",".join(_ranges(sorted(run.seed for run in summary["runs"])))
    return " ".join(["ntm", "sweep", *summary["train_args"], "--seeds", seeds, "--target",
                     f"{summary['target']:g}", "--out", f"{out_root}/{sweep.name}"])


def schedule_warnings(run: Path) -> list[str]:
    """Where the learning rates in metrics.jsonl depart from the config's schedule."""
    config = read_config(run)
    world_size = (read_counters(run / STATE_FILE).get("world_size", 1)
                  if (run / STATE_FILE).is_file() else 1)
    per_step = config.train.batch_size * world_size
    records = read_metrics(run)
    unlogged = [record["step"] for record in records if "lr" not in record]
    # A record's rate is that of its interval's last update, made before it counted its batch.
    departed = [record for record in records if "lr" in record and not _same(
        record["lr"], scheduled_lr(config.optim, record["sequences"] - per_step))]
    notes = []
    if departed:
        first = departed[0]
        notes.append(f"# {run}: lr {first['lr']:g} at step {first['step']} is not what "
                     f"the config's schedule gives ({len(departed)} records): resumed with "
                     "another schedule")
    if unlogged and (departed or config.optim.lr_half_life is not None):
        notes.append(f"# {run}: records up to step {max(unlogged)} do not log the rate, so "
                     "a schedule changed by a resume before then cannot be seen")
    return notes


def recreated_path(init: str, out_root: str) -> str:
    """``init`` with a run under ``results/`` moved to ``out_root``."""
    match = _RESULTS_RUN.match(init)
    return f"{out_root}/{match['rest']}" if match else init


def _ranges(seeds: list[int]) -> list[str]:
    parts: list[list[int]] = []
    for seed in seeds:
        if parts and seed == parts[-1][1] + 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    return [f"{low}" if low == high else f"{low}-{high}" for low, high in parts]


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def _value(value) -> str:
    """``value`` as ``--set`` reads it back."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)  # None reads back as None


def _expand(runs: list[Path]) -> list[Path]:
    """``runs`` with a folder of seeds' runs (no config.json, no summary.json) replaced by its
    ``seedS`` folders, in the order of S."""
    expanded = []
    for run in runs:
        seeds = [] if (run / "config.json").is_file() or (run / "summary.json").is_file() else [
            folder for folder in run.glob("seed*") if re.fullmatch(r"seed\d+", folder.name)]
        expanded += sorted(seeds, key=lambda folder: int(folder.name[4:])) or [run]
    return expanded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, or sweep directories with a summary.json")
    parser.add_argument("--out-root", default="runs",
                        help="where the recreated runs go (default: runs)")
    args = parser.parse_args(argv)
    for run in _expand(args.runs):
        if (run / "summary.json").is_file():
            print(sweep_command(run, args.out_root))
            continue
        for note in schedule_warnings(run):
            print(note, file=sys.stderr)
        print(train_command(run, args.out_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
