"""benchmarks/make_table.py, the script that writes the README's benchmark block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_table.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_help_prints_the_usage_and_touches_no_file(repository_root: Path) -> None:
    readme = repository_root / "README.md"
    before = readme.read_bytes(), readme.stat().st_mtime_ns
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: make_table.py") and "--check" in done.stdout
    assert (readme.read_bytes(), readme.stat().st_mtime_ns) == before


def test_it_rewrites_only_the_block_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n<!-- benchmarks:start -->\nold table\n<!-- benchmarks:end -->\n\n## After\n"
    )
    assert run("--readme", str(readme), "--check").returncode == 1  # out of date: says so, writes nothing
    assert "old table" in readme.read_text()
    done = run("--readme", str(readme))
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- benchmarks:start -->\n") and text.endswith(
        "<!-- benchmarks:end -->\n\n## After\n"
    )
    assert "old table" not in text and "| method | Dice |" in text
    assert run("--readme", str(readme), "--check").returncode == 0


@pytest.mark.parametrize("content", [None, "no markers here\n"])
def test_a_readme_without_the_block_is_one_line_and_exit_1(tmp_path: Path, content: str | None) -> None:
    readme = tmp_path / "README.md"
    if content is not None:
        readme.write_text(content)
    done = run("--readme", str(readme))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1


def test_the_readme_block_matches_the_results() -> None:
    done = run("--check")
    assert done.returncode == 0, done.stderr
