"""benchmarks/make_table.py, the script that writes the benchmark tables of docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_table.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_help_prints_the_usage_and_touches_no_file(repository_root: Path) -> None:
    pages = [repository_root / "docs" / "benchmarks.md", repository_root / "README.md"]
    before = [(page.read_bytes(), page.stat().st_mtime_ns) for page in pages]
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: make_table.py") and "--check" in done.stdout
    assert [(page.read_bytes(), page.stat().st_mtime_ns) for page in pages] == before


def test_it_rewrites_only_the_block_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Title\n\n<!-- benchmarks:start -->\nold table\n<!-- benchmarks:end -->\n\n## After\n")
    assert run("--page", str(page), "--check").returncode == 1  # out of date: says so, writes nothing
    assert "old table" in page.read_text()
    done = run("--page", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert text.startswith("# Title\n\n<!-- benchmarks:start -->\n") and text.endswith(
        "<!-- benchmarks:end -->\n\n## After\n"
    )
    assert "old table" not in text and "| method | Dice |" in text
    assert run("--page", str(page), "--check").returncode == 0


@pytest.mark.parametrize("content", [None, "no markers here\n"])
def test_a_page_without_the_block_is_one_line_and_exit_1(tmp_path: Path, content: str | None) -> None:
    page = tmp_path / "benchmarks.md"
    if content is not None:
        page.write_text(content)
    done = run("--page", str(page))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1


def test_the_benchmarks_page_block_matches_the_results(repository_root: Path) -> None:
    done = run("--check")  # the default page: docs/benchmarks.md
    assert done.returncode == 0, done.stderr
    assert "docs/benchmarks.md" in done.stdout
    assert "<!-- benchmarks:start -->" in (repository_root / "docs" / "benchmarks.md").read_text()
    assert "<!-- benchmarks:start -->" not in (repository_root / "README.md").read_text()


def test_a_three_task_block_gets_the_papers_rows_beside_ours(tmp_path: Path) -> None:
    page = tmp_path / "three-tasks.md"
    page.write_text("# Three\n\n<!-- three-tasks:start -->\nold\n<!-- three-tasks:end -->\n")
    done = run("--page", str(page))
    assert done.returncode == 0, done.stderr
    rows = [line for line in page.read_text().splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| optic cup, fundus",
        "| brain tumour, MRI",
        "| thyroid nodule, ultrasound",
    ]
    brain = rows[2]
    assert "BraTS-2021" in brain and "| 88.9 | 88.2 | 86.6 |" in brain and "lgg-flair" in brain
    ddti = json.loads((SCRIPT.parent / "results" / "quality_ddti.json").read_text())
    (ours,) = [r for r in ddti["results"] if (r["settings"]["steps"], r["settings"]["ensemble"]) == (3, 5)]
    per_cent = [100 * ours["summary"]["dice"], 100 * ddti["baselines"]["unet_same_budget"]["dice"]]
    blob = 100 * ddti["baselines"]["fixed_blob"]["dice"]
    # DDTI: ours at DDIM 3 x 5, the same-budget U-Net and the fixed blob, in per cent
    assert f"| **{per_cent[0]:.1f}** | {per_cent[1]:.1f} | fixed blob {blob:.1f} |" in rows[3]


def test_the_three_task_page_block_matches_the_results(repository_root: Path) -> None:
    done = run("--page", str(repository_root / "docs" / "three-tasks.md"), "--check")
    assert done.returncode == 0, done.stderr
