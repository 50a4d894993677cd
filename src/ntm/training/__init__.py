"""Training, evaluation and run directories: the library behind the ``ntm`` command line.

Models come from the registry :mod:`ntm.models`; configs and the reading of run directories
live in :mod:`ntm.rundir`, below training, and are re-exported here under their older names.

>>> from ntm.training import apply_overrides, preset_config
>>> config = apply_overrides(preset_config("copy", "ntm-lstm"), ["model.memory_slots=64"])
>>> config.model.memory_slots, config.optim.name, config.train.batch_size
(64, 'rmsprop', 32)
"""

from typing import Any

from .. import models
from .build import build_model, build_task, resolve_device
from .checkpoint import BEST_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE
from .config import (
    LSTMConfig,
    ModelConfig,
    NTMConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_overrides,
)
from .distributed import World
from .errors import (
    ConfigError,
    ModelModuleError,
    NTMError,
    RunDirError,
    TaskModuleError,
    TrainingDiverged,
)
from .evaluate import (
    eval_report,
    eval_settings,
    evaluate,
    evaluate_batches,
    evaluation_config,
    generalisation,
    load_run,
    read_config,
    read_metrics,
    resolve_run_dir,
    results_table,
    setting_label,
    weights_config,
    weights_file,
    weights_model_config,
)
from .loop import (
    RESUMABLE_FIELDS,
    RESUMABLE_OPTIM_FIELDS,
    TIMING_FIELDS,
    TrainResult,
    resumable_overrides,
    train,
)
from .optim import build_optimizer, clip_gradients, scheduled_lr
from .presets import FAST, PAPER_MODELS, PRESETS, demo_config, preset_config
from .sweep import (
    SUMMARY_FILE,
    SeedRun,
    check_sweep,
    cpu_cores,
    parse_seeds,
    read_summary,
    run_sweep,
    sweep_table,
)

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "FAST",
    "METRICS_FILE",
    "MODEL_FILE",
    "MODEL_KINDS",  # noqa: F822 - served by __getattr__ below
    "PAPER_MODELS",
    "PRESETS",
    "RESUMABLE_FIELDS",
    "RESUMABLE_OPTIM_FIELDS",
    "STATE_FILE",
    "SUMMARY_FILE",
    "TIMING_FIELDS",
    "ConfigError",
    "LSTMConfig",
    "ModelConfig",
    "ModelModuleError",
    "NTMConfig",
    "NTMError",
    "OptimConfig",
    "RunConfig",
    "RunDirError",
    "SeedRun",
    "TaskConfig",
    "TaskModuleError",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "World",
    "apply_overrides",
    "build_model",
    "build_optimizer",
    "build_task",
    "check_sweep",
    "clip_gradients",
    "cpu_cores",
    "demo_config",
    "eval_report",
    "eval_settings",
    "evaluation_config",
    "evaluate",
    "evaluate_batches",
    "generalisation",
    "load_run",
    "parse_seeds",
    "preset_config",
    "read_config",
    "read_metrics",
    "read_summary",
    "resolve_device",
    "resolve_run_dir",
    "results_table",
    "resumable_overrides",
    "run_sweep",
    "scheduled_lr",
    "setting_label",
    "sweep_table",
    "train",
    "weights_config",
    "weights_file",
    "weights_model_config",
]


def __getattr__(name: str) -> Any:
    if name == "MODEL_KINDS":  # the older constant: the names registered now
        return tuple(models.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
