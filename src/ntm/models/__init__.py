"""Models by name: each is a config dataclass and a function that builds the module.

The package registers the Neural Turing Machine with an LSTM or a feedforward controller
(``"ntm-lstm"``, ``"ntm-ff"``, both configured by :class:`NTMConfig`), the Differentiable
Neural Computer likewise (``"dnc"``, ``"dnc-ff"``, :class:`DNCConfig`) and the paper's stacked
LSTM baseline (``"lstm"``, :class:`LSTMConfig`), then sparse access memory (``"sam"``,
``"sam-ff"``, :class:`SAMConfig`). A config's ``kind`` (its first field) picks
the model:

>>> import ntm
>>> ntm.models.names()[:5]  # the package's own; models registered later follow
['ntm-lstm', 'ntm-ff', 'dnc', 'dnc-ff', 'lstm']
>>> config = ntm.models.NTMConfig(kind="ntm-ff", memory_slots=64)
>>> model = ntm.models.make(config, input_size=9, output_size=8)
>>> type(model).__name__, model.cell.memory_slots
('NTM', 64)

Adding a model is one module with one :func:`register` call: its config dataclass (``kind``
first, each field typed, bounds by :func:`ntm.fields.bounded`) and a build function. Then
``ntm train copy --model NAME --model-module MODULE`` trains it, ``--set model.KEY=VALUE`` is
checked against its dataclass, and the run records the module, so that ``ntm eval RUN`` and
``--resume`` import it again::

    @dataclass
    class GRUConfig:
        kind: str = "gru"
        hidden_size: int = ntm.fields.bounded(64, min=1)

    def build(config, input_size, output_size, *, device=None, dtype=None):
        return MyGRU(input_size, output_size, config.hidden_size, device=device, dtype=dtype)

    ntm.models.register("gru", build, GRUConfig, description="a GRU")
"""

# isort: off
# Each module registers its models on import; the order is that of names() and of every
# "valid models" message: the NTMs, the DNCs, the baseline, then SAM.
from .ntm import NTMConfig
from .dnc import DNCConfig
from .lstm import LSTMConfig
from .sam import SAMConfig

# isort: on
from .registry import (
    DEFAULT_MODEL,
    LEGACY_FIELDS,
    Entry,
    default_config,
    from_dict,
    get,
    import_module,
    make,
    memory_slots,
    names,
    register,
    set_field,
    valid_keys,
)

__all__ = [
    "DEFAULT_MODEL",
    "LEGACY_FIELDS",
    "DNCConfig",
    "Entry",
    "LSTMConfig",
    "NTMConfig",
    "SAMConfig",
    "default_config",
    "from_dict",
    "get",
    "import_module",
    "make",
    "memory_slots",
    "names",
    "register",
    "set_field",
    "valid_keys",
]
