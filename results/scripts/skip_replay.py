"""Replay a collapse from the checkpoint before it, once per ``optim.skip_above``.

Trains ``ntm train TASK --seed S`` to update ``--stop`` with ``optim.skip_above=1e9``, which
skips nothing (the run is the plain one, update for update) but keeps the window of gradient
norms that the rule judges by; then resumes a copy of it to ``--end`` once per factor (``1e9``
first: the plain run, which must collapse as it did). Writes ``OUT/base``, ``OUT/kK`` (the runs)
and ``OUT/replay.json``: each continuation's validations and skipped updates::

    python results/scripts/skip_replay.py priority_sort --seed 6 --stop 3250 --end 4500 \\
        --skip 20 100 --out runs/skip/ps6
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import ntm.training
from ntm.rundir import read_metrics
from ntm.training.checkpoint import STATE_FILE, read_counters

NEVER = 1e9  # a factor no gradient reaches: nothing skipped, the window kept


def replay(config, out: Path, stop: int, end: int, factors: list[float]) -> list[dict]:
    """The base run to ``stop``, then one continuation to ``end`` per factor."""
    if config.optim.schedule != "constant":  # it reads train.steps, which differs here
        raise SystemExit(f"optim.schedule={config.optim.schedule} decays over train.steps, "
                         "which the base run stops short of; replay constant schedules only")
    base, first = out / "base", _with(config, f"optim.skip_above={NEVER}", f"train.steps={stop}")
    if not (base / STATE_FILE).is_file():
        ntm.training.train(first, base, progress=False)
    saved = json.loads((base / "config.json").read_text())
    counters = read_counters(base / STATE_FILE)
    if saved != json.loads(first.to_json()) or counters["step"] != stop:
        raise SystemExit(f"{base} holds another run than this replay's base; remove it")
    if counters["skipped"]:  # a non-finite gradient, skipped at 1e9
        raise SystemExit(f"{base} skipped updates: it is not the plain run")
    rows = []
    for factor in (NEVER, *factors):
        run = out / f"k{factor:g}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(base, run)
        resumed = _with(config, f"optim.skip_above={factor}", f"train.steps={end}")
        ntm.training.train(resumed, run, resume=True, progress=False)
        records = [r for r in read_metrics(run) if r["step"] > stop]
        if factor == NEVER and any(r.get("skipped") for r in records):
            raise SystemExit(f"{run} skipped updates: it is not the plain run")
        rows.append({"skip_above": None if factor == NEVER else factor,
                     "skipped": sum(r.get("skipped", 0) for r in records),
                     "validations": {r["step"]: r["val_cost"] for r in records
                                     if "val_cost" in r}})
    return rows


def _with(config, *overrides: str):
    return ntm.training.apply_overrides(config, list(overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--model", default="ntm-lstm")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stop", type=int, required=True, help="the update to replay from")
    parser.add_argument("--end", type=int, required=True)
    parser.add_argument("--skip", type=float, nargs="+", required=True, metavar="K")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = ntm.training.apply_overrides(ntm.training.preset_config(args.task, args.model),
                                          [f"train.seed={args.seed}", *args.set])
    rows = replay(config, args.out, args.stop, args.end, args.skip)
    summary = {"task": args.task, "model": args.model, "seed": args.seed, "stop": args.stop,
               "end": args.end, "settings": args.set, "continuations": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay.json").write_text(json.dumps(summary, indent=1) + "\n")
    for row in rows:
        costs = " ".join(f"{step}:{cost:.1f}" for step, cost in row["validations"].items())
        print(f"skip_above={row['skip_above']}: {row['skipped']} skipped; {costs}")


if __name__ == "__main__":
    main()
