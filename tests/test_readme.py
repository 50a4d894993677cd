"""Every ```python block of README.md runs, as a user would paste it into a fresh interpreter.

Blocks are found anew at every run, so a block added to the README is tested without a change
here. Each runs in a process of its own (a fresh namespace: it must import what it uses), on one
thread, and must finish without error. A block that would take too long says so in itself with
a line ``# not run in tests: WHY``, and is skipped with that reason.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SKIP = re.compile(r"^\s*#\s*not run in tests:\s*(?P<reason>.+?)\s*$", re.MULTILINE)
TIMEOUT = 300  # seconds per block; the README's blocks take a few each


class Block(NamedTuple):
    """A ```python block: its code, the README line of its first code line, its section."""

    code: str
    line: int
    section: str


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of markdown ``text``, in order (other fences are passed over)."""
    blocks, section, fence, lines, start = [], "top", None, [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            elif line.startswith("```"):
                fence, lines, start = line[3:].strip(), [], number + 1
        elif line.startswith("```"):
            if fence == "python":
                blocks.append(Block("\n".join(lines) + "\n", start, section))
            fence = None
        else:
            lines.append(line)
    if fence is not None:
        raise ValueError(f"a ``` fence opened before line {start} is never closed")
    return blocks


def _block_id(block: Block) -> str:
    return f"line{block.line}-" + re.sub(r"[^a-z0-9]+", "-", block.section.lower()).strip("-")


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_its_python_blocks():
    sections = {block.section for block in BLOCKS}
    assert {"The module", "Tasks and metrics"} <= sections, sections


@pytest.mark.parametrize("block", BLOCKS, ids=_block_id)
def test_readme_block_runs(block, tmp_path):
    skip = SKIP.search(block.code)
    if skip:
        pytest.skip(skip.group("reason"))
    # Blank lines first, so that a traceback's line numbers are the README's.
    script = tmp_path / "readme.py"
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (f"README.md block at line {block.line} ({block.section}) "
                                    f"failed:\n{result.stderr[-3000:]}")


def test_blocks_are_found_with_their_lines_sections_and_skips():
    text = ("# Top\n\n```bash\nntm train copy\n```\n\n## Use\n\n```python\nimport ntm\nx = 1\n"
            "```\n\n```python\n# not run in tests: trains for an hour\nntm.train()\n```\n")
    blocks = python_blocks(text)
    assert blocks == [Block("import ntm\nx = 1\n", 10, "Use"),
                      Block("# not run in tests: trains for an hour\nntm.train()\n", 15, "Use")]
    assert SKIP.search(blocks[1].code).group("reason") == "trains for an hour"
    assert SKIP.search(blocks[0].code) is None
    with pytest.raises(ValueError, match="never closed"):
        python_blocks("```python\nx = 1\n")
