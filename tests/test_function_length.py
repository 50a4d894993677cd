"""No function of the package is longer than :data:`MAX_LINES` lines (from its ``def`` to its
last line, docstring and comments included): a longer one does several things that want names.

Every module under ``src/ntm`` is walked, a new one included.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ntm"
MAX_LINES = 60

def long_functions(source: str, name: str, limit: int = MAX_LINES) -> list[str]:
    """``"name:line function (N lines)"`` for each function or method in ``source`` (nested
    ones too) longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    return sorted(found)


def test_no_function_is_longer_than_the_limit():
    modules = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))
    assert "core.py" in modules and "training/loop.py" in modules  # the walk finds the package
    too_long = [entry for module in modules
                for entry in long_functions((PACKAGE / module).read_text(encoding="utf-8"),
                                            module)]
    assert not too_long, f"split these into functions of at most {MAX_LINES} lines: {too_long}"


def test_functions_are_measured_from_def_to_their_last_line():
    source = ("def short():\n    return 1\n\n\nclass A:\n    @property\n    def long(self):\n"
              + "        x = 1\n" * 60 + "        return x\n")
    assert long_functions(source, "sample.py") == ["sample.py:7 long (62 lines)"]
    assert long_functions(source, "sample.py", limit=62) == []
