"""The task registry and the properties every task shares (formats: test_tasks_formats.py)."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import torch

from ntm import tasks
from ntm.tasks import registry

# Small parameters keep each draw cheap; the defaults are checked separately.
SMALL_PARAMS = {
    "copy": {"min_length": 1, "max_length": 6, "width": 4},
    "repeat_copy": {"min_length": 1, "max_length": 4, "min_repeats": 1, "max_repeats": 4},
    "associative_recall": {"min_items": 2, "max_items": 5},
    "ngrams": {"order": 3, "length": 30},
    "priority_sort": {"num_inputs": 7, "num_outputs": 5, "width": 4},
}


def draw(name: str, batch_size: int = 16, seed: int = 0, **overrides) -> tasks.Batch:
    task = tasks.make(name, **{**SMALL_PARAMS[name], **overrides})
    return task.sample(batch_size, generator=torch.Generator().manual_seed(seed))


def test_module_docstring_examples() -> None:
    assert doctest.testmod(tasks, verbose=False).failed == 0


def test_names_lists_the_paper_tasks() -> None:
    assert tasks.names() == sorted(tasks.TASKS)
    assert tasks.TASKS == ("copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort")


@pytest.mark.parametrize("name", tasks.TASKS)
def test_defaults_are_the_training_distribution(name: str) -> None:
    expected = {
        "copy": {"min_length": 1, "max_length": 20, "width": 8},
        "repeat_copy": {
            "min_length": 1,
            "max_length": 10,
            "min_repeats": 1,
            "max_repeats": 10,
            "width": 8,
        },
        "associative_recall": {"min_items": 2, "max_items": 6, "item_length": 3, "width": 6,
                               "near_items": 0.0, "near_bits": 3},
        "ngrams": {"order": 6, "length": 200},
        "priority_sort": {"num_inputs": 20, "num_outputs": 16, "width": 8},
    }[name]
    sizes = {
        "copy": (9, 8),
        "repeat_copy": (10, 9),
        "associative_recall": (8, 6),
        "ngrams": (1, 1),
        "priority_sort": (10, 8),
    }[name]
    task = tasks.make(name)
    assert task.name == name
    assert task.params == expected
    assert (task.input_size, task.output_size) == sizes


@pytest.mark.parametrize("name", tasks.TASKS)
def test_params_are_json_and_rebuild_the_task(name: str) -> None:
    task = tasks.make(name, **SMALL_PARAMS[name])
    params = json.loads(json.dumps(task.params))
    assert tasks.make(name, **params).params == task.params
    assert repr(task).startswith(type(task).__name__ + "(")


@pytest.mark.parametrize("name", tasks.TASKS)
def test_batch_shapes_and_dtypes(name: str) -> None:
    task = tasks.make(name, **SMALL_PARAMS[name])
    batch = task.sample(5, generator=torch.Generator().manual_seed(1))
    steps = batch.inputs.shape[0]
    assert batch.inputs.shape == (steps, 5, task.input_size)
    assert batch.targets.shape == (steps, 5, task.output_size)
    assert batch.mask.shape == (steps, 5)
    assert (batch.inputs.dtype, batch.targets.dtype, batch.mask.dtype) == (
        torch.float32,
        torch.float32,
        torch.bool,
    )
    assert all(t.device.type == "cpu" for t in batch)
    assert set(batch.targets.unique().tolist()) <= {0.0, 1.0}


# ngrams is left out: it scores every step and its input is the previous target, by design.
@pytest.mark.parametrize("name", [name for name in tasks.TASKS if name != "ngrams"])
def test_inputs_are_zero_while_the_answer_is_produced(name: str) -> None:
    batch = draw(name)
    assert batch.mask.any(0).all(), "every sequence has scored steps"
    assert (batch.inputs[batch.mask] == 0).all()


@pytest.mark.parametrize("name", tasks.TASKS)
def test_padding_is_zero_and_never_scored(name: str) -> None:
    batch = draw(name, batch_size=32)
    mask = batch.mask.numpy()
    steps = mask.shape[0]
    # Every paper task ends each sequence with its scored answer: after the last scored step
    # comes only padding. The longest sequence fills the batch exactly.
    last_scored = steps - 1 - np.argmax(mask[::-1], axis=0)  # (B,)
    assert last_scored.max() == steps - 1
    after_end = np.arange(steps)[:, None] > last_scored[None, :]  # (T, B)
    assert not mask[after_end].any()
    assert (batch.inputs.numpy()[after_end] == 0).all()
    assert (batch.targets.numpy()[after_end] == 0).all()
    # Targets are zero wherever they are not scored.
    assert (batch.targets.numpy()[~mask] == 0).all()


@pytest.mark.parametrize("name", tasks.TASKS)
def test_same_seed_same_batch_and_different_seed_different_batch(name: str) -> None:
    first, again, other = draw(name, seed=7), draw(name, seed=7), draw(name, seed=8)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert first.inputs.shape != other.inputs.shape or not torch.equal(first.inputs, other.inputs)


@pytest.mark.parametrize("name", tasks.TASKS)
def test_no_generator_uses_the_global_rng(name: str) -> None:
    task = tasks.make(name, **SMALL_PARAMS[name])
    torch.manual_seed(3)
    first = task.sample(4)
    torch.manual_seed(3)
    again = task.sample(4)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_batch_to_moves_every_tensor_but_the_lengths() -> None:
    batch = draw("copy", batch_size=2)
    moved = batch.to("meta")
    assert isinstance(moved, tasks.Batch)
    assert all(t.device.type == "meta" for t in moved[:3])
    assert moved.lengths is batch.lengths  # on the CPU, where the model plans the run
    assert [t.shape for t in moved] == [t.shape for t in batch]
    assert batch._replace(lengths=None).to("meta").lengths is None


def test_unknown_task_lists_the_valid_ones() -> None:
    message = (
        "unknown task 'cpy'; valid tasks: associative_recall, copy, ngrams, priority_sort, "
        "repeat_copy"
    )
    with pytest.raises(ValueError) as error:
        tasks.make("cpy")
    assert str(error.value) == message


def test_unknown_parameter_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'lenght' for task 'copy'") as error:
        tasks.make("copy", lenght=3)
    assert "valid parameters: max_length, min_length, width" in str(error.value)


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("copy", {"min_length": 5, "max_length": 4}, "min_length"),
        ("copy", {"min_length": 0}, "min_length"),
        ("copy", {"width": 0}, "width"),
        ("copy", {"max_length": 2.5}, "max_length"),
        ("copy", {"width": True}, "width"),
        ("repeat_copy", {"min_repeats": 3, "max_repeats": 2}, "min_repeats"),
        ("repeat_copy", {"max_length": -1}, "max_length"),
        ("associative_recall", {"min_items": 1}, "min_items"),
        ("associative_recall", {"min_items": 7, "max_items": 6}, "min_items"),
        ("associative_recall", {"item_length": 0}, "item_length"),
        ("ngrams", {"order": 0}, "order"),
        ("ngrams", {"length": 0}, "length"),
        ("priority_sort", {"num_inputs": 4, "num_outputs": 5}, "num_outputs"),
        ("priority_sort", {"num_outputs": 0}, "num_outputs"),
    ],
)
def test_invalid_values_name_the_parameter(name: str, params: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        tasks.make(name, **params)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_invalid_batch_size(batch_size) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        tasks.make("copy").sample(batch_size)


def test_numpy_integers_are_accepted() -> None:
    task = tasks.make("copy", max_length=np.int64(5))
    assert task.params["max_length"] == 5 and type(task.params["max_length"]) is int


class ConstantTask(tasks.Task):
    """A custom task: one step, the input bit copied to the target."""

    name = "constant"
    input_size = 1
    output_size = 1

    def __init__(self, *, value: int = 1) -> None:
        self.value = value

    @property
    def params(self) -> dict:
        return {"value": self.value}

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tasks.Batch:
        filled = torch.full((1, batch_size, 1), float(self.value))
        return tasks.Batch(filled, filled, torch.ones(1, batch_size, dtype=torch.bool))


def test_register_a_custom_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    tasks.register("constant", ConstantTask)
    assert "constant" in tasks.names()
    task = tasks.make("constant", value=0)
    assert task.params == {"value": 0}
    assert task.sample(3).inputs.shape == (1, 3, 1)
    with pytest.raises(ValueError, match="valid parameters: value"):
        tasks.make("constant", width=3)
    with pytest.raises(ValueError, match="already registered"):
        tasks.register("constant", ConstantTask)
    with pytest.raises(ValueError, match="already registered"):
        tasks.register("copy", ConstantTask)


def test_register_rejects_a_non_callable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    with pytest.raises(TypeError):
        tasks.register("broken", 3)
    with pytest.raises(ValueError):
        tasks.register("", ConstantTask)


def test_a_factory_taking_kwargs_checks_its_own_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    tasks.register("short_copy", lambda **params: tasks.make("copy", max_length=3, **params))
    assert tasks.make("short_copy", width=2).params["width"] == 2


def expected_steps(name: str, override: dict) -> int:
    if name == "copy":
        return 2 * override["max_length"] + 1
    if name == "repeat_copy":
        return override["max_length"] * (override["max_repeats"] + 1) + 2
    if name == "associative_recall":
        return 4 * override["max_items"] + 8
    return {"ngrams": 200, "priority_sort": 37}[name]


@pytest.mark.parametrize(
    ("name", "override"),
    [(name, setting) for name, settings in tasks.GENERALISATION.items() for setting in settings],
)
def test_generalisation_settings_build(name: str, override: dict) -> None:
    batch = tasks.make(name, **override).sample(2, generator=torch.Generator().manual_seed(0))
    assert batch.inputs.shape[0] == expected_steps(name, override)


def test_generalisation_settings_are_the_papers() -> None:
    settings = tasks.GENERALISATION
    assert set(settings) == set(tasks.TASKS)
    assert [s["max_length"] for s in settings["copy"]] == [10, 20, 30, 50, 120]
    assert [(s["max_length"], s["max_repeats"]) for s in settings["repeat_copy"]] == [
        (10, 20),
        (20, 10),
    ]
    assert [s["max_items"] for s in settings["associative_recall"]] == [6, 10, 12, 15, 20]
    assert settings["ngrams"] == [{}] and settings["priority_sort"] == [{}]
    for overrides in settings.values():
        for override in overrides:
            assert override.get("min_length") == override.get("max_length")
            assert override.get("min_items") == override.get("max_items")
            assert override.get("min_repeats") == override.get("max_repeats")
