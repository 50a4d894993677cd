"""The model registry (ntm.models): entries, configs, hooks, and every old config.json still read.

Tests that register models do so in a private copy of the registry, restored afterwards.
"""

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

import ntm
from ntm import models
from ntm.errors import ConfigError
from ntm.models import LSTMConfig, NTMConfig, registry
from ntm.training import (
    MODEL_KINDS,
    PAPER_MODELS,
    ModelConfig,
    RunConfig,
    apply_overrides,
    preset_config,
)

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = ["ntm-lstm", "ntm-ff", "dnc", "dnc-ff", "lstm"]
# Every config.json in the repository: the shipped runs, the results, the test data. They were
# all written with the older flat ModelConfig.
CONFIG_FILES = sorted(
    path for pattern in ("src/ntm/pretrained/*/config.json", "results/**/config.json",
                         "tests/data/**/config.json")
    for path in ROOT.glob(pattern))


@pytest.fixture
def fresh_registry(monkeypatch):
    """A private copy of the model registry, restored after the test."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))


@dataclasses.dataclass
class TinyConfig:
    kind: str = "tiny"
    hidden_size: int = ntm.fields.bounded(4, min=1)


def _build_tiny(config, input_size, output_size, *, device=None, dtype=None):
    return ntm.LSTMBaseline(input_size, output_size, hidden_size=config.hidden_size,
                            num_layers=1, device=device, dtype=dtype)


# -- the registry -----------------------------------------------------------------------------


def test_the_builtin_models_come_first_in_registration_order():
    assert models.names()[:len(BUILTIN)] == BUILTIN
    assert list(MODEL_KINDS)[:len(BUILTIN)] == BUILTIN  # the older constant follows the registry
    for name in BUILTIN:
        entry = models.get(name)
        assert entry.name == name and entry.builtin and entry.description
        assert entry.default_config().kind == name


@pytest.mark.parametrize("kind, controller", [("ntm-lstm", "lstm"), ("ntm-ff", "feedforward")])
def test_make_builds_an_ntm_whose_name_fixes_the_controller(kind, controller):
    config = NTMConfig(kind=kind, memory_slots=10, memory_width=4, controller_size=6,
                       read_heads=2, backend="python")
    model = models.make(config, 5, 3, dtype=torch.float64)
    assert isinstance(model, ntm.NTM)
    assert type(model.cell.controller) is ntm.controllers.CONTROLLERS[controller]
    assert (model.cell.memory_slots, model.cell.memory_width, model.cell.read_heads) == (10, 4, 2)
    assert model.backend == "python"
    assert all(p.dtype == torch.float64 for p in model.parameters())
    logits, _ = model(torch.zeros(7, 2, 5, dtype=torch.float64))
    assert logits.shape == (7, 2, 3)


def test_make_builds_the_lstm_baseline():
    model = models.make(LSTMConfig(hidden_size=8, num_layers=2), 5, 3)
    assert isinstance(model, ntm.LSTMBaseline)
    assert sum(p.numel() for p in model.parameters()) == (
        ntm.baselines.lstm_baseline_parameter_count(5, 3, hidden_size=8, num_layers=2))


def test_make_refuses_a_mismatched_config_and_names_bad_sizes():
    with pytest.raises(ConfigError, match="model 'lstm' takes a LSTMConfig, got NTMConfig"):
        models.make(NTMConfig(kind="lstm"), 5, 3)
    with pytest.raises(ConfigError, match="unknown model 'gru'; valid models: ntm-lstm, "):
        models.make(TinyConfig(kind="gru"), 5, 3)
    with pytest.raises(ConfigError, match="^model: .*shift"):
        models.make(NTMConfig(memory_slots=2, shift_range=3), 5, 3)


def test_the_ntm_defaults_are_the_constructors():
    signature = inspect.signature(ntm.NTM).parameters
    for field in dataclasses.fields(NTMConfig)[1:]:
        assert field.default == signature[field.name].default, field.name
    signature = inspect.signature(ntm.LSTMBaseline).parameters
    for field in dataclasses.fields(LSTMConfig)[1:]:
        assert field.default == signature[field.name].default, field.name
    assert dataclasses.fields(NTMConfig)[0].name == "kind"  # kind first, in every config


def test_register_checks_its_arguments(fresh_registry):
    entry = models.register("tiny", _build_tiny, TinyConfig, description="a tiny LSTM")
    assert models.get("tiny") is entry and models.names()[-1] == "tiny"
    assert models.valid_keys("tiny") == ["kind", "module", "hidden_size"]
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        models.register("tiny", _build_tiny, TinyConfig)
    models.register("tiny", _build_tiny, TinyConfig, replace=True)  # a notebook cell again
    with pytest.raises(ValueError, match="'lstm' is already registered"):
        models.register("lstm", _build_tiny, TinyConfig, replace=True)  # built-ins stay

    @dataclasses.dataclass
    class KindSecond:
        size: int = 1
        kind: str = "x"

    @dataclasses.dataclass
    class WithModule:
        kind: str = "x"
        module: str = "m"

    with pytest.raises(ValueError, match="first field of KindSecond must be 'kind'"):
        models.register("x", _build_tiny, KindSecond)
    with pytest.raises(ValueError, match="may not have a field named 'module'"):
        models.register("x", _build_tiny, WithModule)
    with pytest.raises(ValueError, match="must be a dataclass"):
        models.register("x", _build_tiny, dict)
    with pytest.raises(ValueError, match="non-empty string"):
        models.register(" x", _build_tiny, TinyConfig)
    assert "x" not in models.names()


# -- configs ----------------------------------------------------------------------------------


def test_model_keys_are_checked_against_the_chosen_model():
    with pytest.raises(ConfigError, match="^unknown key 'model.memory_slots'; valid keys of "
                                          "model 'lstm': kind, module, hidden_size, num_layers$"):
        apply_overrides(preset_config("copy", "lstm"), ["model.memory_slots=12"])
    with pytest.raises(ConfigError, match="valid keys of model 'ntm-ff': kind, module, "
                                          "controller_size, .*, memory_init, backend$"):
        apply_overrides(preset_config("copy", "ntm-ff"), ["model.hidden_size=12"])
    config = apply_overrides(preset_config("copy", "lstm"), ["model.hidden_size=12"])
    assert config.model == LSTMConfig(hidden_size=12, num_layers=3)


@pytest.mark.parametrize("fused, backend", [("false", "autograd"), ("true", "auto"),
                                            ("0", "autograd")])
def test_fused_is_read_as_backend(fused, backend):
    config = apply_overrides(RunConfig(), [f"model.fused={fused}"])
    assert config.model.backend == backend and "fused" not in config.to_dict()["model"]
    assert RunConfig.from_dict({"model": {"fused": fused == "true"}}).model.backend == (
        "auto" if fused == "true" else "autograd")
    with pytest.raises(ConfigError, match="model.fused expects bool"):
        apply_overrides(RunConfig(), ["model.fused=maybe"])
    with pytest.raises(ConfigError, match="model.backend must be one of auto, kernel, python, "
                                          "autograd; got 'fast'"):
        apply_overrides(RunConfig(), ["model.backend=fast"])


def test_an_old_flat_model_section_reads_as_the_kinds_config():
    flat = {"kind": "lstm", "controller_size": 100, "controller_layers": 1, "memory_slots": 128,
            "memory_width": 20, "read_heads": 1, "write_heads": 1, "shift_range": 1,
            "memory_init": "constant", "fused": True, "hidden_size": 64, "num_layers": 2}
    assert RunConfig.from_dict({"model": flat}).model == LSTMConfig(hidden_size=64,
                                                                    num_layers=2)
    ntm_flat = {**flat, "kind": "ntm-ff", "memory_slots": 64, "fused": False}
    assert RunConfig.from_dict({"model": ntm_flat}).model == NTMConfig(
        kind="ntm-ff", memory_slots=64, backend="autograd")
    with pytest.raises(ConfigError, match="unknown key 'model.speed'; valid keys of model "
                                          "'lstm': "):
        RunConfig.from_dict({"model": {**flat, "speed": 3}})  # truly unknown keys stay errors
    with pytest.raises(ConfigError,
                       match="model.kind must be one of ntm-lstm, ntm-ff, dnc, dnc-ff, lstm"):
        RunConfig.from_dict({"model": {**flat, "kind": "gru"}})


def test_model_config_is_the_older_spelling():
    config = ModelConfig(kind="ntm-ff", memory_slots=64, fused=False, hidden_size=12)
    assert config == NTMConfig(kind="ntm-ff", memory_slots=64, backend="autograd")
    assert ModelConfig() == NTMConfig() and ModelConfig(kind="lstm") == LSTMConfig()
    assert isinstance(config, ModelConfig) and isinstance(LSTMConfig(), ModelConfig)
    assert not isinstance(object(), ModelConfig) and issubclass(NTMConfig, ModelConfig)
    assert dataclasses.replace(config, memory_slots=8).memory_slots == 8
    with pytest.raises(ConfigError, match="model.memory_slots must be at least 1"):
        ModelConfig(memory_slots=0)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_ever_written_still_reads(path):
    saved = json.loads(path.read_text())
    config = RunConfig.from_dict(saved)
    flat = saved["model"]
    entry = models.get(flat["kind"])
    assert isinstance(config.model, entry.config_type) and config.model.kind == flat["kind"]
    now = dataclasses.asdict(config.model)
    for key, value in now.items():  # every field the kind keeps has the value written
        if key == "backend" and "backend" not in flat:  # older files wrote model.fused
            assert value == ("auto" if flat["fused"] else "autograd")
        else:
            assert value == flat[key], key
    assert RunConfig.from_json(config.to_json()) == config  # and it round-trips, as is


@pytest.mark.parametrize("task, kind", sorted(PAPER_MODELS))
def test_the_paper_hook_turns_a_table_row_into_the_models_config(task, kind):
    cell, entry = PAPER_MODELS[(task, kind)], models.get(kind)
    expected = (LSTMConfig(hidden_size=cell.size, num_layers=cell.layers) if kind == "lstm" else
                NTMConfig(kind=kind, read_heads=cell.heads, write_heads=cell.heads,
                          controller_layers=cell.layers, controller_size=cell.size))
    assert entry.paper(cell.heads, cell.layers, cell.size) == expected
    assert preset_config(task, kind, "paper").model == expected


def test_memory_slots_and_the_resize_hook():
    config = NTMConfig(memory_slots=20)
    assert models.memory_slots(config) == 20 and models.memory_slots(LSTMConfig()) is None
    resized = models.get("ntm-lstm").resize_memory(config, 50)
    assert resized.memory_slots == 50 and config.memory_slots == 20  # a copy
    with pytest.raises(ConfigError, match="learned its initial memory"):
        models.get("ntm-lstm").resize_memory(NTMConfig(memory_init="learned"), 50)
    with pytest.raises(ConfigError, match="memory_slots must be at least 1, got 0"):
        models.get("ntm-ff").resize_memory(config, 0)
    assert models.get("lstm").resize_memory is None


def test_a_model_without_a_paper_hook_gets_its_defaults(fresh_registry):
    models.register("tiny", _build_tiny, TinyConfig)
    config = preset_config("copy", "tiny", "paper")
    assert config.model == TinyConfig() and config.optim.lr == 1e-4  # OptimConfig's default
    assert preset_config("copy", "tiny").train.batch_size == 32  # the fast recipe's default
