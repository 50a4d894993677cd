"""The ``ntm`` command line: train, evaluate, plot and demo. The only module that parses arguments.

Every command parses its options and calls the library (:mod:`ntm.training`, :mod:`ntm.plots`,
:mod:`ntm.bench`); what it prints is the library's results. Every user mistake (unknown task,
model or config key, a value of the wrong type, a missing or corrupt run directory, weights from
another model) and every file that cannot be written (a full disk, a read-only directory) ends
with one line ``ntm: error: ...`` on stderr and exit status 2, without a traceback. ``ntm sweep``
exits with 1 when some seed failed. Under ``torchrun``, every process runs ``ntm train`` and
rank 0 alone prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError

from . import __version__, models, tasks, training
from ._threads import torch_threads
from .errors import NTMError, TaskModuleError
from .training import PRESETS, apply_overrides, config_file, preset_config, ray_sweep
from .training.presets import DEMO, clear_demo, demo_config

PROG = "ntm"
EXIT_SOME_FAILED = 1  # ntm sweep: some seed's ntm train did not finish
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """argparse's complaint, re-raised so that ``main`` prints it like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 success, 2 error, 130 interrupted)."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = _parser().parse_args(argv)
            return _COMMANDS[args.command](args)
    except SystemExit as exit:  # --help
        return exit.code if isinstance(exit.code, int) else 0
    # SafetensorError: the library turns those of the files it reads and writes into its own;
    # any other is still a file's fault, not a bug to show a traceback for.
    except (NTMError, _UsageError, OSError, SafetensorError) as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# -- arguments --------------------------------------------------------------------------------


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]  # an empty item is an error
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


_TASK_MODULE_HELP = ("import MODULE first, for the tasks it registers (ntm.tasks.register); "
                     "searched on PYTHONPATH and in the working directory")
_MODEL_MODULE_HELP = ("import MODULE first, for the models it registers (ntm.models.register); "
                      "searched like --task-module")
_OVERRIDES = {"dest": "overrides", "action": "append", "default": [], "metavar": "KEY=VALUE"}
_CONFIG_HELP = ("a JSON file of dotted keys, e.g. {\"optim.lr\": 0.002} (ntm tune's "
                "OUT/best.json), applied before --set; its task.name and model.kind stand for "
                "TASK and --model")
_ADDRESS_HELP = ("join the Ray cluster whose head is at ADDR (HOST:PORT, as ray start --head "
                 "prints it; default: $RAY_ADDRESS if set, else a Ray started for this command "
                 "on 127.0.0.1)")


def _model_help() -> str:
    return (f"model ({', '.join(models.names())}, or one registered by --model-module; "
            f"default: {models.DEFAULT_MODEL})")


def _import_modules(args: argparse.Namespace) -> None:
    """Import the modules of ``--task-module`` and ``--model-module``, which register tasks
    and models.

    The working directory is searched too (as ``python -m`` does, but appended, so that its
    files cannot shadow installed packages): the ``ntm`` script's own directory is on
    ``sys.path`` instead. Runs that recorded ``task.module`` or ``model.module`` are loaded
    with the same search.
    """
    here = str(Path.cwd())
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)
    task_module = getattr(args, "task_module", None)
    if task_module:
        try:
            tasks.import_module(task_module)
        except ImportError as error:
            raise TaskModuleError(str(error)) from error
    if getattr(args, "model_module", None):
        models.import_module(args.model_module)


def _check_model(name: str | None) -> None:
    """``--model``: one of the registered models (after ``--model-module`` registered its)."""
    if name is not None and name not in models.names():
        raise _UsageError(f"argument --model: invalid choice: {name!r} (choose from "
                          f"{', '.join(models.names())}, or register one with --model-module)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Neural Turing Machines: train, evaluate, plot.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_add_train, _add_sweep, _add_tune, _add_eval, _add_plot, _add_demo,
                        _add_bench):
        add_command(commands)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model on a task", epilog="example: "
                                "ntm train copy --steps 3000 --set model.memory_slots=64. "
                                "Data-parallel on K processes (--batch-size is per process): "
                                "torchrun --nproc_per_node K -m ntm train copy")
    add = train.add_argument
    add("task", nargs="?", metavar="TASK",
        help=f"task ({', '.join(tasks.TASKS)}, or one registered by --task-module)")
    add("--task-module", metavar="MODULE", help=_TASK_MODULE_HELP)
    add("--model", metavar="MODEL", help=_model_help())
    add("--model-module", metavar="MODULE", help=_MODEL_MODULE_HELP)
    add("--steps", type=int, metavar="N", help="updates in total (default: the preset's)")
    add("--batch-size", type=_positive, metavar="B", help="sequences per update")
    add("--seed", type=int, metavar="S", help="seed of the weights and data (default: 1)")
    add("--out", metavar="DIR", help="run directory (default: runs/TASK-MODEL-seedS)")
    add("--preset", choices=PRESETS, help="recipe (default: fast)")
    add("--set", help="override a config value, e.g. model.memory_slots=64 or "
        "task.max_length=10 (repeatable)", **_OVERRIDES)
    add("--config", metavar="FILE", help=_CONFIG_HELP)
    add("--tensorboard", action="store_true", help="also write TensorBoard logs")
    add("--resume", metavar="DIR", help="continue the run in DIR")
    add("--init", metavar="WEIGHTS", help="start from trained weights (fine-tuning): a run "
        "directory or pretrained:NAME, whose model config is taken too, or a .safetensors file")
    add("--no-progress", action="store_true", help="no progress bar")


def _add_sweep(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="train several seeds at once, one process each, and summarise them",
        epilog="example: ntm sweep copy --seeds 1-10 --jobs 4 --out runs/copy-sweep. With Ray "
        "installed each seed is a Ray task (of train.threads CPUs, and a GPU for "
        "train.device=cuda), on a Ray started for the sweep or on a cluster (--address). Exit "
        "status: 0 if every seed finished, 1 if some failed (see the table), 2 on bad input.")
    add = sweep.add_argument
    add("task", metavar="TASK", nargs="?", help="task, as for ntm train")
    add("--seeds", required=True, metavar="LIST", help="seeds, e.g. 1-10, 1,3,5 or 1-3,7")
    add("--jobs", type=_positive, metavar="J",
        help=f"seeds trained at a time (default: the CPU cores, {training.cpu_cores()}; on a "
             "Ray cluster, as many as its CPUs hold)")
    add("--address", metavar="ADDR", help=_ADDRESS_HELP)
    add("--no-ray", action="store_true",
        help="train the seeds as processes of this command, as without Ray")
    add("--config", metavar="FILE", help=_CONFIG_HELP)
    add("--target", type=float, default=0.1, metavar="BITS",
        help="validation cost, in bits per sequence, that counts as converged (default: 0.1)")
    add("--out", metavar="DIR", help="parent of the run directories DIR/seedS "
        "(default: runs/TASK-MODEL-sweep)")
    _add_seed_options(sweep)


def _add_seed_options(parser) -> None:
    """The options of ``ntm train`` that ``ntm sweep`` and ``ntm tune`` give every seed."""
    add = parser.add_argument
    passed_on = [  # given to every seed's ntm train as they came
        add("--task-module", metavar="MODULE", help=_TASK_MODULE_HELP),
        add("--model", metavar="MODEL", help=_model_help()),
        add("--model-module", metavar="MODULE", help=_MODEL_MODULE_HELP),
        add("--steps", type=int, metavar="N", help="updates per seed (default: the preset's)"),
        add("--batch-size", type=_positive, metavar="B", help="sequences per update"),
        add("--preset", choices=PRESETS, help="recipe (default: fast)"),
        add("--set", help="override a config value of every seed (repeatable); each seed "
            "runs with train.threads=1 unless set here", **_OVERRIDES),
        add("--tensorboard", action="store_true", help="also write TensorBoard logs"),
    ]
    parser.set_defaults(passed_on=[(action.option_strings[0], action.dest)
                                   for action in passed_on])


def _add_tune(commands) -> None:
    tune = commands.add_parser(
        "tune", help="search config values on Ray Tune (TPE, ASHA) for the most seeds solved",
        epilog="example: ntm tune copy --space optim.lr=loguniform:1e-4:1e-2 --trials 8 "
        "--seeds 2 --steps 500 --out runs/copy-tune. Every trial trains its seeds at once "
        "(train.threads CPUs each) and ranks by the fraction of them under --target, then by "
        "the median sequences to get there. Writes OUT/trials.csv, OUT/best.json (ntm train "
        "--config OUT/best.json) and OUT/trials.png. Needs the cluster extra.")
    add = tune.add_argument
    add("task", metavar="TASK", nargs="?", help="task, as for ntm train")
    add("--space", action="append", default=[], metavar="KEY=DIST", required=True,
        help="a key to search and its distribution: loguniform:LO:HI, uniform:LO:HI, "
             "int:LO:HI (inclusive) or choice:A,B,C, e.g. optim.lr=loguniform:1e-4:1e-2 "
             "(repeatable)")
    add("--trials", type=_positive, required=True, metavar="N", help="trials in all")
    add("--seeds", default="2", metavar="S",
        help="seeds of every trial: a count S (seeds 1 to S) or a list such as 1-3,7 "
             "(default: 2)")
    add("--target", type=float, default=0.1, metavar="BITS",
        help="validation cost, in bits per sequence, under which a seed has solved the task "
             "(it stops there; default: 0.1)")
    add("--sampler-seed", type=int, default=0, metavar="N", help="seed of the TPE sampler")
    add("--out", metavar="DIR", help="directory of the trials (default: runs/TASK-MODEL-tune)")
    add("--address", metavar="ADDR", help=_ADDRESS_HELP)
    add("--config", metavar="FILE", help=_CONFIG_HELP)
    _add_seed_options(tune)


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="score a trained run")
    add = evaluate.add_argument
    add("run", metavar="RUN_DIR", help="run directory, or pretrained:TASK")
    add("--set", help="a task setting to test, e.g. task.min_length=120 "
        "(default: the training distribution and the generalisation tests)", **_OVERRIDES)
    add("--batches", type=_positive, default=8, metavar="K",
        help="batches per setting (default 8, so 256 sequences: RESULTS.md's numbers)")
    add("--batch-size", type=_positive, default=32, metavar="B", help="sequences per batch")
    add("--seed", type=int, default=0, metavar="S", help="seed of the test sequences")
    add("--best", action="store_true", help="use the weights of the best validation")
    add("--json", action="store_true", help="print JSON instead of a table")
    add("--memory-slots", type=_positive, metavar="N",
        help="test the model with a memory of N slots (default: the one it trained with; the "
             "NTM's weights fit any, except a learned initial memory)")
    add("--threads", type=_positive, default=1, metavar="T",
        help="torch CPU threads (default 1: on a busy machine more threads make every small "
             "operation wait for a core)")
    add("--task-module", metavar="MODULE", help=_TASK_MODULE_HELP)
    add("--model-module", metavar="MODULE", help=_MODEL_MODULE_HELP)


def _add_plot(commands) -> None:
    plot = commands.add_parser("plot", help="draw figures of one or more runs")
    add = plot.add_argument
    add("runs", metavar="RUN_DIR", nargs="+", help="run directories")
    add("--out", metavar="DIR",
        help="figure directory (default: RUN_DIR/figures for one run, ./figures for several)")
    add("--batches", type=_positive, default=2, metavar="K", help="batches per test setting")
    add("--batch-size", type=_positive, default=16, metavar="B", help="sequences per batch")
    add("--best", action="store_true", help="use the weights of the best validation")
    add("--curves-only", action="store_true",
        help="draw only the learning curves, from each run's metrics.jsonl: no weights are "
             "loaded and nothing is evaluated (fast; compares runs of different lengths)")
    add("--task-module", metavar="MODULE", help=_TASK_MODULE_HELP)
    add("--model-module", metavar="MODULE", help=_MODEL_MODULE_HELP)


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="train an NTM to copy on the CPU, test, draw")
    add = demo.add_argument
    add("--steps", type=int, metavar="N", help=f"update limit (default: {DEMO.steps})")
    add("--seconds", type=float, metavar="S",
        help=f"time limit in seconds (default: {DEMO.max_seconds:g})")
    add("--out", default="runs/demo", metavar="DIR", help="run directory (default: runs/demo)")
    add("--no-progress", action="store_true", help="no progress bar")


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="time training steps of the models (speed table)")
    add = bench.add_argument
    add("--model", default=models.DEFAULT_MODEL, metavar="MODEL,...",
        help="comma-separated registered models, each with its default sizes, timed "
             f"interleaved with the paths (default: {models.DEFAULT_MODEL}; e.g. ntm-lstm,dnc)")
    add("--batch-sizes", type=_int_list, default=[1, 8, 32, 128], metavar="B,B,...")
    add("--threads", type=_int_list, default=[1, 2], metavar="T,T,...")
    add("--paths", default="auto",
        help="comma-separated: auto (the default path: the C++ kernel on a CPU), kernel (CPU "
             "only), python (the fused node in Python), autograd, graph (CUDA graphs; CUDA "
             "only); fused and plain are the older names of auto and autograd")
    add("--device", default="cpu", help="cpu or cuda")
    add("--steps", type=_positive, default=20, metavar="N", help="timed steps per row")
    add("--json", metavar="FILE", help="also write the results as JSON")


# -- train ------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    _apply_config_file(args)
    _import_modules(args)
    if args.resume:
        config, out = _resume_config(args), Path(args.resume)
    else:
        if not args.task:
            raise _UsageError("the following arguments are required: task (or --resume DIR)")
        config = _new_config(args)
        out = Path(args.out or f"runs/{config.task.name}-{config.model.kind}-seed"
                               f"{config.train.seed}")
    return _report_training(config, out, resume=bool(args.resume), progress=not args.no_progress)


def _apply_config_file(args: argparse.Namespace) -> None:
    """``--config FILE``: its ``task.name``, ``model.kind`` and modules stand for TASK,
    ``--model``, ``--task-module`` and ``--model-module`` where those are not given (and must
    agree where they are); its other keys go before the ``--set`` overrides."""
    if getattr(args, "config", None) is None:
        return
    if getattr(args, "resume", None):
        raise _UsageError(f"--resume continues the run as configured in {args.resume}; "
                          f"--config {args.config} does not apply to it")
    choices, values = config_file.read_config_file(args.config)
    for key, dest, flag in (("task.name", "task", "TASK"), ("model.kind", "model", "--model"),
                            ("task.module", "task_module", "--task-module"),
                            ("model.module", "model_module", "--model-module")):
        given = getattr(args, dest)
        if key in choices and given is None:
            setattr(args, dest, choices[key])
        elif key in choices and given != choices[key]:
            raise _UsageError(f"{flag} {given} differs from {key}={choices[key]} in --config "
                              f"{args.config}: that file's values follow its preset")
    if getattr(args, "init", None) is not None:  # --init turns the recipe's restarts off
        # (_new_config); a file written from a run of that recipe (ntm tune's) carries them.
        values = {key: value for key, value in values.items()
                  if key not in ("train.restart_after", "train.restart_below")}
    args.overrides = config_file.file_overrides(values) + args.overrides
    args.config = None


def _new_config(args: argparse.Namespace) -> training.RunConfig:
    """The config of a new run from the options of ``ntm train`` (or ``ntm sweep``)."""
    for section, flag in (("task", "--task-module"), ("model", "--model-module")):
        if any(item.split("=", 1)[0].strip() == f"{section}.module" for item in args.overrides):
            # Set there, it would be recorded but never imported: the name is looked up first.
            raise _UsageError(f"name a {section} module with {flag} MODULE, not --set "
                              f"{section}.module=...: it is imported before the {section} is "
                              "looked up")
    _check_model(args.model)
    init = getattr(args, "init", None)
    source = _init_source(init, args.model)
    kind = args.model or (source.model.kind if source else models.DEFAULT_MODEL)
    config = preset_config(args.task, kind, args.preset or "fast")
    if source is not None:  # the weights fix the model; --set model.* may still change it
        config.model, config.model_module = source.model, source.model_module
    if init is not None:  # a recipe's restarts would throw the weights away: fine-tuning has none
        config.train.restart_after = config.train.restart_below = None
    flags = [("train.steps", args.steps), ("train.batch_size", args.batch_size),
             ("train.seed", getattr(args, "seed", None)),
             ("train.tensorboard", args.tensorboard or None), ("train.init", init),
             # Recorded, so that eval, plot and --resume import them.
             ("task.module", args.task_module), ("model.module", args.model_module)]
    return apply_overrides(config, args.overrides + [f"{k}={v}" for k, v in flags
                                                     if v is not None])


def _init_source(init: str | None, model: str | None) -> training.RunConfig | None:
    """The config of the run ``--init`` names (``None`` for a bare weights file)."""
    source = None if init is None else training.weights_config(init)
    if source is not None and model is not None and model != source.model.kind:
        raise _UsageError(f"--init {init} holds a {source.model.kind} model, not --model {model}")
    return source


def _resume_config(args: argparse.Namespace) -> training.RunConfig:
    """The saved config of the run to resume, with ``--steps``, ``--tensorboard`` and the
    ``--set`` of :func:`ntm.training.resumable_overrides` (device, time budget, learning-rate
    schedule, ...) changed."""
    config = training.read_config(args.resume)
    fixed = {"--model": args.model, "--batch-size": args.batch_size, "--seed": args.seed,
             "--preset": args.preset, "--out": args.out, "--init": args.init}
    given = [flag for flag, value in fixed.items() if value is not None]
    resumable = training.resumable_overrides()
    for override in args.overrides or []:
        if override.split("=", 1)[0].strip() not in resumable:
            given.append(f"--set {override}")
    if given:
        raise _UsageError(f"--resume continues the run as configured in {args.resume}; "
                          f"only --steps, --tensorboard and --set {', '.join(resumable)} may "
                          f"change, not {', '.join(given)}")
    if args.task and args.task != config.task.name:
        raise _UsageError(f"the run in {args.resume} trains {config.task.name!r}, "
                          f"not {args.task!r}")
    flags = [("train.steps", args.steps), ("train.tensorboard", args.tensorboard or None)]
    changes = [f"{k}={v}" for k, v in flags if v is not None] + list(args.overrides or [])
    return apply_overrides(config, changes)


def _report_training(config: training.RunConfig, out: Path, *, resume: bool,
                     progress: bool) -> int:
    processes, rank = training.distributed.launched()
    each = f" on each of {processes} processes" if processes > 1 else ""
    if rank == 0:  # under torchrun, rank 0 speaks for every rank
        print(f"{'Resuming' if resume else 'Training'} {config.task.name} with "
              f"{config.model.kind} for {config.train.steps} steps of "
              f"{config.train.batch_size} sequences{each} -> {out}", file=sys.stderr)
        if config.task.opening is not None:  # its validation rises meanwhile: say why
            opened = ", ".join(f"{k}={v}" for k, v in config.task.opening_params.items())
            print(f"Opening: the first {config.task.opening:,} training sequences with {opened} "
                  f"(validation on the task itself; --set task.opening=none removes it)",
                  file=sys.stderr)
    result = training.train(config, out, resume=resume, progress=progress)
    if rank != 0:
        return EXIT_INTERRUPTED if result.stopped == "interrupted" else 0
    print(_result_line(result))
    if result.stopped == "interrupted":
        print(f"Interrupted; checkpoint saved. Continue with: {PROG} train --resume {out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.resumed_from is not None and result.resumed_from == result.step:
        print(f"Nothing to train: the run is already at step {result.step}; continue it with "
              f"--steps above {result.step}.", file=sys.stderr)
    if result.best_step is not None and result.best_step != result.step:
        print(f"Best validation: {_number(result.best_val_cost)} bits per sequence at step "
              f"{result.best_step} ({training.BEST_FILE}; use --best with eval and plot).")
    print(f"Run directory: {out}   (then: {PROG} eval {out}; {PROG} plot {out})")
    return 0


def _result_line(result: training.TrainResult) -> str:
    """``Step N (why it stopped) (sequences, seconds): costs per sequence.``"""
    scores = f"cost {_number(result.cost)}"
    if result.val_cost is not None:
        scores += (f", validation cost {_number(result.val_cost)} and "
                   f"{_number(result.val_bit_errors)} bit errors")
    reason = {"time": " (time limit reached)",
              "target": " (validation cost under train.target_val_cost)"}.get(result.stopped, "")
    return (f"Step {result.step}{reason} ({result.sequences} sequences, {result.seconds:.0f} s): "
            f"{scores} per sequence.")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


# -- eval, plot, demo -------------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> int:
    _import_modules(args)
    model, config = training.load_run(args.run, best=args.best, memory_slots=args.memory_slots)
    with torch_threads(args.threads):
        rows = training.generalisation(model, config,
                                       settings=training.eval_settings(config, args.overrides),
                                       batches=args.batches, batch_size=args.batch_size,
                                       seed=args.seed)
    if args.json:
        print(json.dumps(training.eval_report(str(args.run), config, rows), indent=2))
    else:
        memory = f", memory of {args.memory_slots} slots" if args.memory_slots else ""
        print(f"{config.task.name}, {config.model.kind}{memory}, {args.run}: "
              f"{args.batches} x {args.batch_size} sequences per setting")
        print(training.results_table(rows))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from . import plots  # matplotlib, loaded only when figures are drawn

    _import_modules(args)
    out = Path(args.out or (Path(args.runs[0]) / "figures" if len(args.runs) == 1 else "figures"))
    if args.curves_only:
        print(plots.draw_curves(args.runs, out))
        return 0
    for path in plots.draw_runs(args.runs, out, batches=args.batches,
                                batch_size=args.batch_size, best=args.best):
        print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import plots

    flags = [("train.steps", args.steps), ("train.max_seconds", args.seconds)]
    config = apply_overrides(demo_config(), [f"{k}={v}" for k, v in flags if v is not None])
    out = Path(args.out)
    if clear_demo(out):
        print(f"Replacing the previous demo in {out}", file=sys.stderr)
    print(f"Training an NTM (LSTM controller) to copy sequences of 1 to 20 8-bit vectors, on "
          f"the CPU, for at most {config.train.steps} steps or {config.train.max_seconds:g} s.",
          file=sys.stderr)
    status = _report_training(config, out, resume=False, progress=not args.no_progress)
    if status != 0:
        return status
    # Validation cost can spike late in a run (RESULTS.md, repeat copy), so the demo shows
    # its best weights.
    model, config = training.load_run(out, best=True)
    print("\nThe best validated weights, on lengths past training (trained on 1 to 20):")
    rows = training.generalisation(model, config, batches=2, batch_size=16)
    print(training.results_table(rows))
    figures = plots.draw_runs([str(out)], out / "figures", batches=2, batch_size=16, best=True,
                              tests={plots.run_labels([str(out)])[0]: rows})
    print("\nFigures:\n  " + "\n  ".join(figures))
    print(f"Metrics: {out / training.METRICS_FILE}\nWeights: {out / training.BEST_FILE} "
          f"(best), {out / training.MODEL_FILE} (last)")
    return 0


# -- sweep, bench -----------------------------------------------------------------------------


def _sweep(args: argparse.Namespace) -> int:
    _apply_config_file(args)
    _import_modules(args)
    seeds = training.parse_seeds(args.seeds)
    if not args.target > 0:
        raise _UsageError(f"argument --target: expected a cost above 0, got {args.target}")
    if not args.task:
        raise _UsageError("the following arguments are required: TASK (or --config FILE)")
    config = _new_config(args)  # checked once here rather than failing once per seed
    out = Path(args.out or f"runs/{config.task.name}-{config.model.kind}-sweep")
    cluster = _sweep_cluster(args, config)
    training.check_sweep(_passed_on(args), seeds, out, args.target)  # before Ray starts
    ended: list[training.SeedRun] = []

    def report(run: training.SeedRun) -> None:
        ended.append(run)
        how = "finished" if run.finished else f"failed: {run.error or 'no output'}"
        print(f"[{len(ended)}/{len(seeds)}] seed {run.seed} {how}", file=sys.stderr)

    what = f"Training {len(seeds)} seeds of {config.task.name} with {config.model.kind}"
    if cluster is None:
        jobs = args.jobs or training.cpu_cores()
        print(f"{what}, at most {jobs} at a time -> {out}", file=sys.stderr)
        runs = training.run_sweep(_passed_on(args), seeds, out, jobs=jobs, target=args.target,
                                  report=report)
    else:
        address = ray_sweep.cluster_address(args.address)
        cpus = max(training.cpu_cores(), (args.jobs or 1) * cluster.threads)
        with ray_sweep.connect(address, cpus=cpus) as where:
            print(f"{what}, as Ray tasks of {cluster.threads} CPU(s)"
                  f"{' and a GPU' if cluster.gpus else ''} on {where} -> {out}", file=sys.stderr)
            runs = training.run_sweep(_passed_on(args), seeds, out, jobs=args.jobs,
                                      target=args.target, report=report, cluster=cluster)
    every = training.read_summary(out)  # with the seeds of earlier sweeps into this folder
    print(training.sweep_table(every["runs"] if every else runs, args.target))
    print(f"Summary: {out / training.SUMMARY_FILE}")
    return 0 if all(run.finished for run in runs) else EXIT_SOME_FAILED


def _sweep_cluster(args: argparse.Namespace,
                   config: training.RunConfig) -> ray_sweep.RayCluster | None:
    """Where a sweep's seeds train: None for processes here (``--no-ray``, or no Ray
    installed), else Ray tasks of the seed's threads (and a GPU for ``train.device=cuda``)."""
    if args.no_ray or not ray_sweep.available():
        if args.address:
            raise _UsageError("--address and --no-ray exclude each other" if args.no_ray else
                              f"--address needs Ray; {ray_sweep.INSTALL}")
        return None
    return ray_sweep.RayCluster(_seed_threads(args, config), int(config.train.device == "cuda"))


def _seed_threads(args: argparse.Namespace, config: training.RunConfig) -> int:
    """The threads of each seed of a sweep or a search: 1 unless ``--set train.threads``."""
    given = any(item.split("=", 1)[0].strip() == "train.threads" for item in args.overrides)
    return config.train.threads if given else 1


def _tune(args: argparse.Namespace) -> int:
    from .training import tune as tuning  # Ray Tune and Optuna, imported only to search

    missing = tuning.available()
    if missing:
        raise _UsageError(missing)
    _apply_config_file(args)
    _import_modules(args)
    if not args.task:
        raise _UsageError("the following arguments are required: TASK (or --config FILE)")
    if not args.target > 0:
        raise _UsageError(f"argument --target: expected a cost above 0, got {args.target}")
    seeds = (list(range(1, int(args.seeds) + 1)) if args.seeds.strip().isdigit()
             else training.parse_seeds(args.seeds))
    if not seeds:
        raise _UsageError("argument --seeds: expected at least 1 seed")
    space = tuning.parse_space(args.space)
    config = _new_config(args)
    tuning.check_space(space, config)  # before Ray starts
    out = Path(args.out or f"runs/{config.task.name}-{config.model.kind}-tune")
    tuning.check_new_search(out)
    threads, gpus = _seed_threads(args, config), int(config.train.device == "cuda")
    with ray_sweep.connect(ray_sweep.cluster_address(args.address),
                           cpus=max(training.cpu_cores(), len(seeds) * threads)) as where:
        print(f"Searching {', '.join(d.key for d in space)} for {config.task.name} with "
              f"{config.model.kind}: {args.trials} trials of {len(seeds)} seeds on {where} "
              f"-> {out}", file=sys.stderr)
        results = tuning.run_tune(_passed_on(args), space, seeds, out, trials=args.trials,
                                  base=config, target=args.target, threads=threads, gpus=gpus,
                                  sampler_seed=args.sampler_seed,
                                  report=lambda trial: print(_trial_line(trial), file=sys.stderr))
    return _report_tune(results, space, out, args.target)


def _trial_line(trial) -> str:
    values = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in trial.values.items())
    if trial.error:
        return f"trial {trial.number} ({values}) failed: {trial.error}"
    median = "-" if trial.median_sequences is None else f"{trial.median_sequences:.12g}"
    how = "stopped early" if trial.stopped_early else "ended"
    return (f"trial {trial.number} ({values}) {how}: {trial.solved} of {trial.seeds} seeds "
            f"solved, median sequences {median}")


def _report_tune(results, space, out: Path, target: float) -> int:
    from .plots import tune as tune_plots  # matplotlib, loaded only for figures
    from .training import tune as tuning

    print(tuning.trials_table(results, space, target))
    print(f"Trials: {out / tuning.TRIALS_FILE}")
    best = tuning.best_trial(results)
    if best is None:
        print("No trial trained a seed; see the logs under " + str(out), file=sys.stderr)
        return EXIT_SOME_FAILED
    print(f"Best: trial {best.number}; its config: {out / tuning.BEST_CONFIG_FILE} (train it "
          f"with: {PROG} train --config {out / tuning.BEST_CONFIG_FILE})")
    print(f"Figure: {tune_plots.draw_trials(results, space, out, target)}")
    return 0


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The arguments of every seed's ``ntm train``: TASK and the options given as they came."""
    train_args = [args.task]
    for flag, dest in args.passed_on:
        value = getattr(args, dest)
        if isinstance(value, list):  # --set, repeatable
            train_args += [item for setting in value for item in (flag, setting)]
        elif value is True:  # a switch
            train_args.append(flag)
        elif value not in (None, False):
            train_args += [flag, str(value)]
    return train_args


def _bench(args: argparse.Namespace) -> int:
    from . import bench  # timing code, loaded only for this command

    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise _UsageError(f"--device {args.device}: expected cpu or cuda (or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError(f"--device {args.device}: no CUDA device is available")
    paths = args.paths.split(",")
    try:
        bench.check_paths(paths)  # before anything is printed
    except ValueError as error:
        raise _UsageError(f"--paths: {error}") from None
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise _UsageError(f"--json {args.json}: its directory does not exist")
    bench.prepare(args.device, paths)
    print(bench.environment())
    print(bench.HEADER)
    try:
        results = bench.benchmark(args.batch_sizes, args.threads, paths,
                                  device=args.device, timed_steps=args.steps,
                                  model_kinds=args.model.split(","))
    except ValueError as error:
        raise _UsageError(str(error)) from None
    if args.json:
        bench.write_json(results, args.json)
        print(f"wrote {args.json}")
    return 0


_COMMANDS = {"train": _train, "sweep": _sweep, "tune": _tune, "eval": _eval, "plot": _plot,
             "demo": _demo, "bench": _bench}
