"""The examples in docstrings run as doctests, and the documentation builds (when mkdocs is there).

Every module of the package is searched, so an example added anywhere is tested; the modules
the API reference leans on must keep theirs.
"""

import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ntm

ROOT = Path(__file__).resolve().parent.parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ntm.__path__, "ntm."):
        if info.name.endswith("__main__"):  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_documented_modules_have_examples():
    expected = {"ntm.model", "ntm.tasks", "ntm.tasks.base", "ntm.training", "ntm.pretrained"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "ntm.pretrained" and "copy-ntm-lstm" not in ntm.pretrained.list():
        pytest.skip("ntm.pretrained's example expects the shipped 'copy-ntm-lstm' model, and "
                    "none is shipped in this checkout")
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (above)"


def test_the_documentation_builds(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cli = (tmp_path / "cli" / "index.html").read_text()
    assert "ntm train --help" in cli and "--task-module" in cli  # the help hook ran
    assert "initial_state" in (tmp_path / "api" / "model" / "index.html").read_text()
