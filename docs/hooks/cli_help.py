"""MkDocs hook: replaces ``<!-- ntm-help -->`` with the ``--help`` of every ``ntm`` command."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

PLACEHOLDER = "<!-- ntm-help -->"


def _help(argv: list[str]) -> str:
    from ntm.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main([*argv, "--help"])
    return buffer.getvalue().rstrip()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    from ntm.cli import _parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; make the page stable
    commands = next(action.choices for action in _parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    sections = [f"```text\n$ ntm --help\n{_help([])}\n```"]
    sections += [f"### ntm {name}\n\n```text\n$ ntm {name} --help\n{_help([name])}\n```"
                 for name in commands]
    return markdown.replace(PLACEHOLDER, "\n\n".join(sections))
