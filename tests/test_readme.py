"""The manual's examples stay true: Python blocks run as written, and every shell command parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from neuroalrnn.workflows.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks():
    for page in PAGES:
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)):
            yield pytest.param(page, code, id=f"{page.name}-block{i}")


def _commands():
    """Every `neuroalrnn ...` command in a fenced block, continuation lines joined."""
    for page in PAGES:
        for block in re.findall(r"```(?:bash|console|sh)?\n(.*?)```", page.read_text(), flags=re.DOTALL):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = re.sub(r"^\$\s*", "", line.strip())
                line = re.sub(r"^(\.venv/bin/|\$\(BIN\)/)", "", line)
                if line.startswith("neuroalrnn "):
                    yield pytest.param(line.split("#")[0].strip(), id=f"{page.name}:{line[:60]}")


PYTHON_BLOCKS = list(_python_blocks())
COMMANDS = list(_commands())


def test_manual_has_examples():
    assert any(param.values[0].name == "README.md" for param in PYTHON_BLOCKS)
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize(("page", "code"), PYTHON_BLOCKS)
def test_python_example_runs(page, code, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(page), "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("command", COMMANDS)
def test_shell_command_parses(command):
    words = shlex.split(command)[1:]
    if words and words[0] in {"train", "fit", "align", "evaluate", "analyze", "compare", "sweep", "sharing", "bench",
                             "tasks"}:
        build_parser().parse_args(words)  # exits (SystemExit) on an unknown option or a bad value
    else:
        pytest.fail(f"{command!r} is not a neuroalrnn command")
