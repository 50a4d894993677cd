"""Run directories and their configs: the layer below training that reading a run needs.

A run's ``config.json`` is a :class:`RunConfig` (one typed dataclass per section: the model's
from :mod:`ntm.models`, the task, the optimiser, the training); :func:`load_run` builds its
model and loads its weights. :mod:`ntm.pretrained` and :mod:`ntm.training` both read runs
through this package, which imports neither.

>>> import ntm
>>> config = ntm.rundir.read_config("pretrained:copy-ntm-ff")
>>> config.model.kind, config.model.memory_slots, config.model.backend
('ntm-ff', 128, 'auto')
"""

from . import checkpoint, files
from .build import (
    build_model,
    build_task,
    import_model_module,
    import_task_module,
    task_defaults,
    validate_task,
)
from .checkpoint import BEST_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE
from .config import (
    SECTIONS,
    SEED_LIMIT,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_overrides,
)
from .directory import (
    DEFAULT_SHIPPED_MODEL,
    FLOAT_DTYPES,
    PRETRAINED_PREFIX,
    SHIPPED_DIR,
    available_devices,
    check_device,
    check_dtype,
    load_run,
    parse_metrics,
    read_config,
    read_metrics,
    resolve_run_dir,
    shipped_names,
    shipped_run_dir,
    weights_config,
    weights_file,
    weights_model_config,
)

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "DEFAULT_SHIPPED_MODEL",
    "FLOAT_DTYPES",
    "METRICS_FILE",
    "MODEL_FILE",
    "PRETRAINED_PREFIX",
    "SECTIONS",
    "SEED_LIMIT",
    "SHIPPED_DIR",
    "STATE_FILE",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "available_devices",
    "build_model",
    "build_task",
    "check_device",
    "check_dtype",
    "checkpoint",
    "files",
    "import_model_module",
    "import_task_module",
    "load_run",
    "parse_metrics",
    "read_config",
    "read_metrics",
    "resolve_run_dir",
    "shipped_names",
    "shipped_run_dir",
    "task_defaults",
    "validate_task",
    "weights_config",
    "weights_file",
    "weights_model_config",
]
