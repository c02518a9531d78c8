"""The command blocks of the README and of docs/*.md name commands, scripts and options that exist.

Every ``medsegdiff`` / ``torchrun ... -m medsegdiff_training`` line is parsed by the real
CLI parser (nothing runs), every script a block runs answers ``--help``, and every file a
block names is in the repository. The README's two commands are the launcher and the test
script, and its test command is the one CI (``.ci/run``) runs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(text: str) -> list[str]:
    """A page's bash blocks as logical lines (continuations joined, comments dropped)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(shlex.join(words))
    return lines


LINES = list(dict.fromkeys(line for page in PAGES for line in command_lines(page.read_text())))
CLI_LINES = [line for line in LINES if re.match(r"(\.venv/bin/)?medsegdiff |torchrun ", line)]
SCRIPTS = sorted(
    {
        match.group(1)
        for line in LINES
        for match in [re.search(r"(?:python|bash) ((?:scripts|benchmarks)/[\w./-]+)", line)]
        if match
    }
)


def test_the_docs_have_the_commands_this_test_reads():
    assert len(CLI_LINES) >= 15 and "scripts/train_default_model.py" in SCRIPTS
    assert any(" simulate-annotation " in line for line in CLI_LINES)


def test_the_readme_runs_the_launcher_and_the_tests_and_ci_runs_the_same_test_command():
    readme_lines = command_lines(README)
    assert "bash scripts/run-napari.sh" in readme_lines
    assert "bash scripts/test.sh" in readme_lines
    ci_commands = [
        line
        for line in command_lines(f"```bash\n{(ROOT / '.ci' / 'run').read_text()}```")
        if not line.startswith(("set ", "cd "))
    ]
    assert ci_commands == ["bash scripts/test.sh"]


@pytest.mark.parametrize("line", CLI_LINES)
def test_every_medsegdiff_command_parses(line: str) -> None:
    from medsegdiff_training.cli import build_parser, command_of

    words = shlex.split(line)
    if words[0] == "torchrun":
        words = words[words.index("medsegdiff_training") :]
    args = build_parser().parse_args(words[1:])  # argparse exits (SystemExit) on an unknown option
    assert callable(command_of(args))


@pytest.mark.slow  # each imports torch in a fresh interpreter
@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.endswith(".py")])
def test_every_python_script_answers_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.endswith(".sh")])
def test_every_shell_script_exists_and_parses(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / script)], timeout=60).returncode == 0
