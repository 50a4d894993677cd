"""Imports run one way: cli -> plots -> training -> rundir -> models -> model/core -> access ->
functional (docs/architecture.md). Checked on the source with ``ast``, late imports inside
functions included, and through every module reached (importing ``ntm.training.loop`` runs
``ntm/training/__init__.py`` too, so a package counts as imported with its modules).

``ntm/__init__.py`` re-exports the package and so imports everything: it is the one module not
followed, as every ``import ntm.X`` runs it first anyway.
"""

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ntm"
ROOT = "ntm"


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py")}


def _with_parents(module: str) -> set[str]:
    """``module`` and the packages above it that importing it runs, the root excepted."""
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(2, len(parts) + 1)} & set(MODULES)


def direct_imports(module: str) -> set[str]:
    """The package's modules that ``module``'s source imports anywhere in it."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = ".".join(part for part in (base, node.module) if part)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target == ROOT or target.startswith(ROOT + "."):
                found |= _with_parents(target)
    return found - {module}


@cache
def reached(module: str) -> frozenset[str]:
    """Every module of the package that importing ``module`` runs (the root not followed)."""
    seen, todo = set(), [module]
    while todo:
        for target in direct_imports(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset(seen - {module})


def _layer(module: str) -> str:
    """``ntm.training.loop`` -> ``training``; ``ntm.model`` -> ``model``."""
    return module.split(".")[1] if "." in module else module


# layer -> layers it must not reach
BELOW_TRAINING = ("training", "cli", "plots")
RULES = {
    "pretrained": BELOW_TRAINING,
    "rundir": (*BELOW_TRAINING, "pretrained"),
    "models": (*BELOW_TRAINING, "pretrained", "rundir"),
    **{layer: (*BELOW_TRAINING, "pretrained", "rundir", "models")
       for layer in ("core", "model", "access", "functional", "backends", "controllers",
                     "heads", "baselines", "tasks", "metrics", "addressing", "memory",
                     "lengths")},
    "training": ("cli", "plots"),
    "plots": ("cli",),
    "errors": tuple(_layer(name) for name in MODULES if name not in (ROOT, "ntm.errors")),
}


def test_the_walk_finds_the_layers_and_their_imports():
    assert {"ntm.cli", "ntm.models.registry", "ntm.rundir.directory", "ntm.pretrained",
            "ntm.training.loop"} <= set(MODULES)
    assert "ntm.rundir" in direct_imports("ntm.pretrained")
    assert {"ntm.training", "ntm.training.evaluate"} <= direct_imports("ntm.plots.runs")
    assert "ntm.plots" in direct_imports("ntm.cli")  # imported late, inside a function
    assert "ntm.models.registry" in reached("ntm.rundir.directory")


@pytest.mark.parametrize("module", sorted(name for name in MODULES if _layer(name) in RULES))
def test_imports_run_one_way(module):
    forbidden = sorted(target for target in reached(module)
                       if _layer(target) in RULES[_layer(module)])
    assert not forbidden, f"{module} imports {forbidden}, a layer above it"


def test_pretrained_does_not_import_training():
    assert not [target for target in reached("ntm.pretrained") if _layer(target) == "training"]


def test_nothing_imports_the_command_line():
    importers = sorted(name for name in MODULES if "ntm.cli" in direct_imports(name))
    assert importers == ["ntm.__main__"]  # python -m ntm


def test_fields_needs_only_the_errors():
    assert reached("ntm.fields") == {"ntm.errors"} and reached("ntm.errors") == set()


def test_matplotlib_is_imported_only_for_figures():
    code = ("import sys, ntm, ntm.cli; assert 'matplotlib' not in sys.modules, 'loaded'; "
            "import ntm.plots; assert 'matplotlib' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
